// The TypeScript worker of the three-language workflow (bindings/python/tests/test_polyglot.py):
// activities only, on task queue tcodec-polyglot-node, with @tcodec/temporal's data converter
// from the environment (TCODEC_KEYRING, TCODEC_MASTER_KEY_FILE; TEMPORAL_ADDRESS). It says,
// as the Rust reference worker does, which keyring revision and primary key it uses, at start
// and when a change to the keyring file arrives. With TCODEC_STORAGE_BUCKET (and the rest of
// the Rust worker's storage variables) it stores large payloads in S3 through the package's
// S3StorageDriver (bindings/python/tests/test_storage.py); TCODEC_NODE_TASK_QUEUE names
// another task queue.
import { Context } from '@temporalio/activity';
import { ApplicationFailure } from '@temporalio/common';
import { NativeConnection, Worker } from '@temporalio/worker';
import { Codec, dataConverter, externalStorageFromEnv } from '@tcodec/temporal';

const TASK_QUEUE = process.env.TCODEC_NODE_TASK_QUEUE || 'tcodec-polyglot-node';

const activities = {
  // Fails its first attempt with the customer's data in the message, as real errors do.
  async screen_customer(customer) {
    if (Context.current().info.attempt <= 1) {
      throw ApplicationFailure.retryable(
        `sanctions screening for ${customer.name} with card ${customer.card_number} timed out`,
      );
    }
    return `screened ${customer.name} <${customer.email}>: no match`;
  },
  // Gives a document back, annotated: as large as what came in.
  async annotate(document) {
    return `${document}\n-- annotated by the TypeScript worker`;
  },
  async welcome_letter(account) {
    return `Dear ${account.holder}, account ${account.account_id} is open; we will write to ${account.address}.`;
  },
};

const codec = Codec.fromEnv();
const { keyring } = codec;
let revision = -1;
const announce = () => {
  if (keyring.revision !== revision) {
    revision = keyring.revision;
    console.log(`keyring "${keyring.name}" revision ${revision} in use, primary key ${keyring.primary}`);
  }
};
announce();
setInterval(announce, 50).unref();

const externalStorage = externalStorageFromEnv();
if (externalStorage !== undefined) {
  const [driver] = externalStorage.drivers;
  console.log(`external storage: s3://${driver.bucket}/${driver.prefix} from ${externalStorage.payloadSizeThreshold} bytes`);
}

const connection = await NativeConnection.connect({ address: process.env.TEMPORAL_ADDRESS });
const worker = await Worker.create({
  connection,
  namespace: 'default',
  taskQueue: TASK_QUEUE,
  activities,
  dataConverter: dataConverter(codec, { externalStorage }),
});
for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => worker.shutdown());
}
console.log(`node worker polling task queue ${TASK_QUEUE}`);
await worker.run();
await connection.close();
