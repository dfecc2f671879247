// Payloads per second of @tcodec/temporal's PayloadCodec (Rust behind Node-API) against a
// WebCrypto codec of the samples' encryption format (AES-256-GCM via crypto.subtle, written
// here as a TypeScript team would), in one run, alternating.
//
//   node benches/bindings/node_codec.mjs --keyring K --master-key-file M [--quick] [--threads N]
//
// Sizes 1 KiB and 64 KiB, batches of 1 and 100, JSON payloads (compressible like real records)
// and random bytes (incompressible). Medians of alternating rounds (tcodec also with compression off); --quick is the smoke run of
// scripts/test.sh (its numbers mean nothing).
import { randomBytes, webcrypto } from 'node:crypto';
import { parseArgs } from 'node:util';

import proto from '@temporalio/proto';
import { Codec, Keyring, PayloadCodec } from '@tcodec/temporal';

const { Payload } = proto.temporal.api.common.v1;
const { subtle } = webcrypto;
const enc = new TextEncoder();

/** The samples' format: data = 12-byte nonce || AES-256-GCM(serialized payload), no AAD. */
class WebCryptoCodec {
  constructor(key, keyId) {
    this.key = key;
    this.keyId = enc.encode(keyId);
  }

  static async create(keyId) {
    const key = await subtle.importKey('raw', randomBytes(32), 'AES-GCM', false, ['encrypt', 'decrypt']);
    return new WebCryptoCodec(key, keyId);
  }

  encode(payloads) {
    return Promise.all(payloads.map(async (p) => {
      const iv = webcrypto.getRandomValues(new Uint8Array(12));
      const sealed = new Uint8Array(await subtle.encrypt({ name: 'AES-GCM', iv }, this.key, Payload.encode(p).finish()));
      const data = new Uint8Array(12 + sealed.length);
      data.set(iv);
      data.set(sealed, 12);
      return { metadata: { encoding: enc.encode('binary/encrypted'), 'encryption-key-id': this.keyId }, data };
    }));
  }

  decode(payloads) {
    return Promise.all(payloads.map(async (p) => {
      const plain = await subtle.decrypt({ name: 'AES-GCM', iv: p.data.subarray(0, 12) }, this.key, p.data.subarray(12));
      return Payload.decode(new Uint8Array(plain));
    }));
  }
}

function jsonPayload(size, rng) {
  const records = [];
  let text = '[]';
  while (text.length < size) {
    records.push({ order_id: `ord-${rng().toString(16).slice(2, 14)}`, customer: `cust-${Math.floor(rng() * 1e6)}`,
      amount_cents: Math.floor(rng() * 1e6), currency: ['EUR', 'USD', 'GBP'][Math.floor(rng() * 3)],
      status: ['paid', 'pending', 'refunded'][Math.floor(rng() * 3)], sku: `SKU-${Math.floor(rng() * 1e5)}` });
    text = JSON.stringify(records);
  }
  return { metadata: { encoding: enc.encode('json/plain') }, data: enc.encode(JSON.stringify(text.slice(0, size))) };
}

const randomPayload = (size) => ({ metadata: { encoding: enc.encode('binary/plain') }, data: randomBytes(size) });

function seeded(seed) {
  return () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
}

async function rate(codec, batch, op, seconds) {
  const sealed = await codec.encode(batch);
  const work = op === 'encode' ? () => codec.encode(batch) : () => codec.decode(sealed);
  let done = 0;
  const start = performance.now();
  for (;;) {
    await work();
    done += batch.length;
    const elapsed = (performance.now() - start) / 1000;
    if (elapsed >= seconds) {
      return done / elapsed;
    }
  }
}

const same = (a, b) => a.length === b.length && a.every((p, i) => Buffer.compare(Buffer.from(p.data), Buffer.from(b[i].data)) === 0);
const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
const fmt = (x) => Math.round(x).toLocaleString('en-US');

const { values } = parseArgs({
  options: { keyring: { type: 'string' }, 'master-key-file': { type: 'string' }, quick: { type: 'boolean' }, threads: { type: 'string' } },
});
// --threads N: tcodec's threads a batch (default: the package's, the cores).
const threads = values.threads === undefined ? undefined : Number(values.threads);
const [rounds, seconds] = values.quick ? [1, 0.05] : [5, 0.6];
const keyring = Keyring.open(values.keyring, { masterKeyFile: values['master-key-file'] });
const ours = new PayloadCodec(new Codec(keyring, { threads }));
const plain = new PayloadCodec(new Codec(keyring, { compression: false, threads }));
const theirs = await WebCryptoCodec.create('bench-key');
const rng = seeded(7);
console.log('| data | size | batch | op | WebCrypto payloads/s | tcodec payloads/s | ratio | tcodec, compression off | ratio |');
console.log('|---|---:|---:|---|---:|---:|---:|---:|---:|');
for (const [kind, make] of [['JSON', jsonPayload], ['random', randomPayload]]) {
  for (const size of [1024, 64 * 1024]) {
    for (const n of [1, 100]) {
      const batch = Array.from({ length: n }, () => make(size, rng));
      if (!same(await ours.decode(await ours.encode(batch)), batch) || !same(await theirs.decode(await theirs.encode(batch)), batch)) {
        throw new Error('a codec did not round-trip');
      }
      for (const op of ['encode', 'decode']) {
        const [a, b, c] = [[], [], []];
        for (let r = 0; r < rounds; r += 1) {
          a.push(await rate(theirs, batch, op, seconds));
          b.push(await rate(ours, batch, op, seconds));
          c.push(await rate(plain, batch, op, seconds));
        }
        const [x, y, z] = [median(a), median(b), median(c)];
        console.log(`| ${kind} | ${size / 1024} KiB | ${n} | ${op} | ${fmt(x)} | ${fmt(y)} | ${(y / x).toFixed(2)} | ${fmt(z)} | ${(z / x).toFixed(2)} |`);
      }
    }
  }
}
