// Compiled by `tsc --noEmit --strict` in codec.test.mjs: the package's declarations fit the
// Temporal SDK's interfaces. Nothing here runs.
import type { DataConverter, Payload, PayloadCodec as TemporalPayloadCodec } from '@temporalio/common';
import { Codec, CodecError, Keyring, PayloadCodec, dataConverter } from '@tcodec/temporal';

export async function typed(): Promise<void> {
  const keyring: Keyring = Keyring.open('/etc/tcodec/payments.json', { kmsKeys: ['alias/tcodec'], kmsRegion: 'eu-west-1' });
  const codec = new Codec(keyring, { decodeAllow: '', compression: true });
  const fromEnv: Codec = Codec.fromEnv();
  const payloadCodec: TemporalPayloadCodec = new PayloadCodec(codec);
  const converter: DataConverter = dataConverter(fromEnv);
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
