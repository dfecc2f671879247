// Compiled by `tsc --noEmit --strict` in codec.test.mjs: the package's declarations fit the
// Temporal SDK's interfaces. Nothing here runs.
import { ExternalStorage } from '@temporalio/common';
import type { DataConverter, Payload, PayloadCodec as TemporalPayloadCodec, StorageDriver } from '@temporalio/common';
import { Codec, CodecError, Keyring, PayloadCodec, S3StorageDriver, dataConverter, externalStorageFromEnv } from '@tcodec/temporal';

export async function typed(): Promise<void> {
  const keyring: Keyring = Keyring.open('/etc/tcodec/payments.json', { kmsKeys: ['alias/tcodec'], kmsRegion: 'eu-west-1' });
  const codec = new Codec(keyring, { decodeAllow: '', compression: true });
  const fromEnv: Codec = Codec.fromEnv();
  const payloadCodec: TemporalPayloadCodec = new PayloadCodec(codec);
  const converter: DataConverter = dataConverter(fromEnv);
  const driver: StorageDriver = new S3StorageDriver({ bucket: 'payloads', namespace: 'payments', region: 'eu-west-1' });
  const stored: DataConverter = dataConverter(codec, { externalStorage: new ExternalStorage({ drivers: [driver] }) });
  const fromEnvStorage: ExternalStorage | undefined = externalStorageFromEnv();
  const envDriver: S3StorageDriver | null = S3StorageDriver.fromEnv();
  void stored;
  void fromEnvStorage;
  void envDriver;
  const sealed: Payload[] = await payloadCodec.encode([{ metadata: {}, data: new Uint8Array() }]);
  const name: string = keyring.name;
  const primary: string | null = codec.keyring.primary;
  try {
    await codec.decode(sealed);
  } catch (err) {
    if (err instanceof CodecError) {
      const message: string = err.message;
      void message;
    }
  }
  void converter;
  void name;
  void primary;
}
