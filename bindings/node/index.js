'use strict';
// @tcodec/temporal: tcodec for TypeScript Temporal workers. The codec, keyring and KEKs are
// tcodec's Rust code (the Node-API module built from this directory's crate); this file gives
// them the Temporal TypeScript SDK's shapes: a PayloadCodec, a DataConverter, an External
// Storage driver for S3, and CodecError.

const { ExternalStorage, StorageDriverClaim } = require('@temporalio/common');
const { temporal } = require('@temporalio/proto');
const native = require('./native.js');

const { Payload, Payloads } = temporal.api.common.v1;
const ERROR_PREFIX = 'TCODEC_ERROR: ';

/** A batch could not be encoded or decoded, or a keyring not opened. The message names the
 * payload's index and the key id, never key material or payload contents. */
class CodecError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CodecError';
  }
}

// The native module's errors carry a prefix; they become CodecErrors without it. Anything else
// (a wrong argument type, say) is passed on as it is.
function rethrow(err) {
  if (err instanceof Error && typeof err.message === 'string' && err.message.startsWith(ERROR_PREFIX)) {
    throw new CodecError(err.message.slice(ERROR_PREFIX.length));
  }
  throw err;
}

function call(fn) {
  try {
    return fn();
  } catch (err) {
    return rethrow(err);
  }
}

/** A keyring file, watched (every 2 s) and reloaded when it changes, with its KEKs. */
class Keyring {
  #native;

  constructor(handle) {
    if (!(handle instanceof native.Keyring)) {
      throw new TypeError('use Keyring.open(path, options) or Keyring.fromEnv()');
    }
    this.#native = handle;
  }

  /** Opens the keyring file at `path`; `options`: masterKeyFile, kmsKeys, kmsEndpoint, kmsRegion. */
  static open(path, options) {
    return new Keyring(call(() => native.Keyring.open(path, options)));
  }

  /** Opens the keyring the environment names (TCODEC_KEYRING, TCODEC_MASTER_KEY_FILE or
   * TCODEC_MASTER_KEY, TCODEC_KMS_KEYS, the AWS configuration chain), as the Rust worker does. */
  static fromEnv() {
    return new Keyring(call(() => native.Keyring.fromEnv()));
  }

  get name() {
    return this.#native.name;
  }

  get revision() {
    return this.#native.revision;
  }

  get primary() {
    return this.#native.primary;
  }

  get path() {
    return this.#native.path;
  }

  /** Re-reads the file if it changed; returns whether it did. */
  reload() {
    return call(() => this.#native.reload());
  }

  /** @internal */
  static handle(keyring) {
    return keyring.#native;
  }
}

/** tcodec's codec over a keyring: encodes and decodes batches of Temporal payloads, a batch
 * crossing into Rust once and worked on libuv's thread pool, off the event loop. */
class Codec {
  #native;
  #keyring;

  /** `options.decodeAllow`: the decode policy's exceptions, as TCODEC_DECODE_ALLOW names them
   * (empty, the default, refuses every payload tcodec did not seal); `options.compression`:
   * false turns zstd off; `options.threads`: the most threads the compression of a batch of
   * 256 KiB or more is split across (default: the process's cores). */
  constructor(keyring, options) {
    if (!(keyring instanceof Keyring)) {
      throw new TypeError('new Codec(keyring): keyring must come from Keyring.open or Keyring.fromEnv');
    }
    this.#keyring = keyring;
    this.#native = new native.Codec(Keyring.handle(keyring), options);
  }

  /** The codec the environment names: Keyring.fromEnv() and TCODEC_DECODE_ALLOW. */
  static fromEnv() {
    return new Codec(Keyring.fromEnv(), { decodeAllow: process.env.TCODEC_DECODE_ALLOW ?? '' });
  }

  get keyring() {
    return this.#keyring;
  }

  /** Seals `payloads` under the keyring's primary key; resolves to the sealed payloads, in order. */
  encode(payloads) {
    return this.#run(payloads, Op.encode);
  }

  /** Decodes `payloads`; resolves to them decoded, in order. All or nothing: the first payload
   * that fails rejects the batch with a CodecError naming its index. */
  decode(payloads) {
    return this.#run(payloads, Op.decode);
  }

  // Payloads of OBJECTS_FROM bytes or more on average cross as they are (the native side
  // copies metadata here and reads each payload's data in place on the pool's thread) and come
  // back packed in one buffer, sliced here: no serialization on the event loop. Smaller ones,
  // where reading objects through Node-API costs more than protobufjs's serialization, and a
  // batch with anything else in it cross serialized, protobufjs reading what it accepts and the
  // native side carrying External Storage details through (references, which the SDK's own
  // storage handles before and after the codec, so rare here; or protobufjs's empty data, an
  // empty array).
  async #run(payloads, op) {
    if (payloads.length === 0) {
      return [];
    }
    try {
      if (asObjects(payloads)) {
        return unpack(await this.#native[op.objects](payloads));
      }
      const bytes = Payloads.encode({ payloads }).finish();
      const out = await this.#native[op.serialized](Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
      return Payloads.decode(out).payloads;
    } catch (err) {
      return rethrow(err);
    }
  }
}

// The average payload size (data bytes) from which a batch crosses as objects: below it the
// serialized way is as fast or faster (measured with benches/bindings/node_codec.mjs; see
// BENCHMARKS.md).
const OBJECTS_FROM = 2048;

function asObjects(payloads) {
  let bytes = 0;
  for (const payload of payloads) {
    if (!crossesAsIs(payload)) {
      return false;
    }
    bytes += payload.data == null ? 0 : payload.data.length;
  }
  return bytes >= OBJECTS_FROM * payloads.length;
}

// A payload the native side reads as it is: no External Storage details, data and metadata
// values Uint8Arrays (Buffers are).
function crossesAsIs(payload) {
  if (payload.externalPayloads != null && payload.externalPayloads.length > 0) {
    return false;
  }
  if (payload.data != null && !(payload.data instanceof Uint8Array)) {
    return false;
  }
  for (const key in payload.metadata) {
    if (!(payload.metadata[key] instanceof Uint8Array)) {
      return false;
    }
  }
  return true;
}

const Op = {
  encode: { objects: 'encodePayloads', serialized: 'encode' },
  decode: { objects: 'decodePayloads', serialized: 'decode' },
};

// A metadata key: short ASCII ones (all the SDKs' and tcodec's) read here, which is cheaper than
// a call out to Buffer's decoder, the others by it.
function key(bytes, start, end) {
  if (end - start <= 32) {
    let text = '';
    for (let i = start; i < end; i++) {
      const c = bytes[i];
      if (c >= 0x80) {
        return bytes.toString('utf8', start, end);
      }
      text += String.fromCharCode(c);
    }
    return text;
  }
  return bytes.toString('utf8', start, end);
}

// The native side's packed batch as payload objects. 32-bit little-endian words: the count of
// layout words, then for each payload its number of metadata entries, each entry's key and value
// as (offset, length) in `bytes`, its data's (offset, length), its number of External Storage
// details and each one's size (low, high); then the parts. Values and data are views of `bytes`,
// not copies.
function unpack(bytes) {
  const end = 4 + 4 * bytes.readUInt32LE(0);
  const payloads = [];
  let i = 4;
  const next = () => {
    const word = bytes.readUInt32LE(i);
    i += 4;
    return word;
  };
  const part = () => {
    const at = next();
    return bytes.subarray(at, at + next());
  };
  while (i < end) {
    const metadata = {};
    for (let entries = next(); entries > 0; entries--) {
      const at = next();
      metadata[key(bytes, at, at + next())] = part();
    }
    const payload = { metadata, data: part() };
    const details = next();
    if (details > 0) {
      payload.externalPayloads = [];
      for (let d = 0; d < details; d++) {
        const low = next();
        payload.externalPayloads.push({ sizeBytes: next() * 2 ** 32 + low });
      }
    }
    payloads.push(payload);
  }
  return payloads;
}

/** A PayloadCodec for the Temporal TypeScript SDK: seals every payload the SDK sends and opens
 * what it receives. A payload tcodec did not seal is refused unless the codec's decode policy
 * allows it. */
class PayloadCodec {
  constructor(codec) {
    if (!(codec instanceof Codec)) {
      throw new TypeError('new PayloadCodec(codec): codec must be a tcodec Codec');
    }
    this.codec = codec;
  }

  encode(payloads) {
    return this.codec.encode(payloads);
  }

  decode(payloads) {
    return this.codec.decode(payloads);
  }
}

// The name (the routing key references carry) and type the official S3 drivers give
// themselves: references this driver writes are read by theirs, and theirs by this one.
const S3_DRIVER = 'aws.s3driver';

// The SDK writes references with @temporalio/proto's message types through @temporalio/common's
// protobufjs; where npm installed a copy of protobufjs for each, that fails on every store with
// "type must be a Type". Said once, at configuration, with the fix.
function checkOneProtobufjs() {
  const { dirname } = require('node:path');
  const { realpathSync } = require('node:fs');
  const from = (pkg) => realpathSync(require.resolve('protobufjs', { paths: [dirname(require.resolve(`${pkg}/package.json`))] }));
  const [common, proto] = [from('@temporalio/common'), from('@temporalio/proto')];
  if (common !== proto) {
    throw new CodecError(
      `External Storage needs @temporalio/common and @temporalio/proto to share one protobufjs, and this install has two (${common}, ${proto}): the SDK could not write references. Add "protobufjs": "^8" to your package.json's dependencies and reinstall (npm ls protobufjs then shows one copy).`,
    );
  }
}

function serialized(payload) {
  const bytes = Payload.encode(payload).finish();
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** An External Storage driver (`StorageDriver` of `@temporalio/common`) for S3: the SDK hands it
 * payloads already sealed by the codec; it stores each under `<prefix>d/sha256/<hex>` (the
 * SHA-256 of the object, a conditional write: a retry stores nothing twice) and reads back only
 * from its bucket and prefix, each object checked against its claim's SHA-256. tcodec's Rust S3
 * code does the work, off the event loop; references are in the official S3 drivers' shape. */
class S3StorageDriver {
  #native;

  /** `options`: bucket (required), namespace (default 'default': objects under
   * `v0/ns/<namespace>/`, where the official drivers write), prefix (in place of the
   * namespace's), endpoint, region, maxObjectBytes, timeoutMs. Credentials come from the AWS
   * default chain. */
  constructor(options) {
    checkOneProtobufjs();
    // (fromEnv passes the store it made.)
    this.#native = options instanceof native.S3Store ? options : call(() => new native.S3Store(options));
    this.name = S3_DRIVER;
    this.type = S3_DRIVER;
  }

  /** The driver the environment names, read by the same Rust code as the Rust worker's:
   * TCODEC_STORAGE_BUCKET (none: returns null), TCODEC_STORAGE_PREFIX, TCODEC_STORAGE_ENDPOINT,
   * TCODEC_STORAGE_REGION, TCODEC_STORAGE_THRESHOLD, TEMPORAL_NAMESPACE. */
  static fromEnv() {
    const store = call(() => native.S3Store.fromEnv());
    return store == null ? null : new S3StorageDriver(store);
  }

  get bucket() {
    return this.#native.bucket;
  }

  /** Payloads of at least this many bytes (sealed) are to be stored: TCODEC_STORAGE_THRESHOLD
   * for a driver from the environment, else 256 KiB (the SDK's default). */
  get threshold() {
    return this.#native.threshold;
  }

  get prefix() {
    return this.#native.prefix;
  }

  async store(_context, payloads) {
    let claims;
    try {
      claims = await this.#native.store(payloads.map(serialized));
    } catch (err) {
      rethrow(err);
    }
    return claims.map((claim) => new StorageDriverClaim(claim));
  }

  async retrieve(_context, claims) {
    let objects;
    try {
      objects = await this.#native.retrieve(claims.map((claim) => ({ ...claim.claimData })));
    } catch (err) {
      rethrow(err);
    }
    return objects.map((object) => Payload.decode(object));
  }
}

/** The SDK's ExternalStorage over `S3StorageDriver.fromEnv()`, with its threshold
 * (TCODEC_STORAGE_THRESHOLD, in bytes; default the SDK's 256 KiB); undefined without a bucket. */
function externalStorageFromEnv() {
  const driver = S3StorageDriver.fromEnv();
  if (driver === null) {
    return undefined;
  }
  return new ExternalStorage({ drivers: [driver], payloadSizeThreshold: driver.threshold });
}

/** The SDK's DataConverter with tcodec as its payload codec and failure messages and stack
 * traces moved into encoded (so sealed) attributes. For clients and workers alike (a worker
 * bundling workflows loads the failure converter by its path). `options.externalStorage`: the
 * SDK's ExternalStorage (payloads over its threshold are stored after sealing), e.g.
 * `externalStorageFromEnv()` or `new ExternalStorage({ drivers: [new S3StorageDriver(...)] })`. */
function dataConverter(codec, options = {}) {
  const converter = {
    payloadCodecs: [new PayloadCodec(codec)],
    failureConverterPath: require.resolve('./failure-converter.js'),
  };
  if (options.externalStorage !== undefined) {
    converter.externalStorage = options.externalStorage;
  }
  return converter;
}

module.exports = {
  Codec,
  CodecError,
  Keyring,
  PayloadCodec,
  S3StorageDriver,
  dataConverter,
  externalStorageFromEnv,
};
