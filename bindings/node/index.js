'use strict';
// @tcodec/temporal: tcodec for TypeScript Temporal workers. The codec, keyring and KEKs are
// tcodec's Rust code (the Node-API module built from this directory's crate); this file gives
// them the Temporal TypeScript SDK's shapes: a PayloadCodec, a DataConverter, and CodecError.

const { temporal } = require('@temporalio/proto');
const native = require('./native.js');

const { Payloads } = temporal.api.common.v1;
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
   * false turns zstd off. */
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
    return this.#run(payloads, (batch) => this.#native.encode(batch));
  }

  /** Decodes `payloads`; resolves to them decoded, in order. All or nothing: the first payload
   * that fails rejects the batch with a CodecError naming its index. */
  decode(payloads) {
    return this.#run(payloads, (batch) => this.#native.decode(batch));
  }

  async #run(payloads, op) {
    if (payloads.length === 0) {
      return [];
    }
    const bytes = Payloads.encode({ payloads }).finish();
    let out;
    try {
      out = await op(Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength));
    } catch (err) {
      rethrow(err);
    }
    return Payloads.decode(out).payloads;
  }
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

/** The SDK's DataConverter with tcodec as its payload codec and failure messages and stack
 * traces moved into encoded (so sealed) attributes. For clients and workers alike (a worker
 * bundling workflows loads the failure converter by its path). */
function dataConverter(codec) {
  return {
    payloadCodecs: [new PayloadCodec(codec)],
    failureConverterPath: require.resolve('./failure-converter.js'),
  };
}

module.exports = { Codec, CodecError, Keyring, PayloadCodec, dataConverter };
