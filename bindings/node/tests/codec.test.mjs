// @tcodec/temporal against the real keyring file, the `tcodec` CLI (built by cargo) and the
// Temporal TypeScript SDK's converter: what a TypeScript worker sends, every tcodec reader
// opens, and the other way round.
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';

import { ApplicationFailure } from '@temporalio/common';
import proto from '@temporalio/proto';
import { encodeErrorToFailure, decodeOptionalFailureToOptionalError } from '@temporalio/common/lib/internal-non-workflow/codec-helpers.js';
import { loadDataConverter } from '@temporalio/common/lib/internal-non-workflow/data-converter-helpers.js';
import {
  Codec, CodecError, Keyring, PayloadCodec, S3StorageDriver, dataConverter, externalStorageFromEnv,
} from '@tcodec/temporal';

import { MASTER_KEY, ROOT, SECRET, cli, jsonPayload, makeKeyring, startMoto, until } from './support.mjs';

// Sets (or, for undefined, removes) environment variables in place, so that the native module
// sees them; returns what puts the old values back.
function setEnv(vars) {
  const old = Object.fromEntries(Object.keys(vars).map((k) => [k, process.env[k]]));
  const apply = (values) => {
    for (const [k, v] of Object.entries(values)) {
      if (v === undefined) delete process.env[k];
      else process.env[k] = v;
    }
  };
  apply(vars);
  return () => apply(old);
}

const codecOf = (ring, options) => new Codec(Keyring.open(ring.path, { masterKeyFile: ring.master }), options);
const text = (bytes) => Buffer.from(bytes).toString('latin1');
const b64 = (bytes) => Buffer.from(bytes).toString('base64');

test('sealed payloads hide everything and round-trip', async () => {
  const ring = makeKeyring();
  const codec = new PayloadCodec(codecOf(ring));
  const payloads = [jsonPayload({ customer: SECRET }), jsonPayload('x'.repeat(4000))];
  const sealed = await codec.encode(payloads);
  assert.equal(sealed.length, 2);
  for (const p of sealed) {
    assert.deepEqual(Object.keys(p.metadata).sort(), ['encoding', 'tcodec-key-id']);
    assert.equal(text(p.metadata.encoding), 'binary/tcodec');
    assert.equal(text(p.metadata['tcodec-key-id']), 'k1');
    assert.ok(!text(p.data).includes('Ada') && !text(p.data).includes('json/plain'));
  }
  assert.ok(sealed[1].data.length < 200, 'the repetitive payload was compressed');
  const opened = await codec.decode(sealed);
  assert.deepEqual(opened.map((p) => text(p.data)), payloads.map((p) => text(p.data)));
  assert.deepEqual(opened.map((p) => text(p.metadata.encoding)), ['json/plain', 'json/plain']);
  assert.deepEqual(await codec.encode([]), []);
});

test('payloads of every shape the SDK makes cross as they are, and External Storage details are carried', async () => {
  const ring = makeKeyring();
  const codec = new PayloadCodec(codecOf(ring));
  const { Payload } = proto.temporal.api.common.v1;
  const enc = new TextEncoder();
  // Incompressible filler, so that each batch's payloads average over the 2 KiB from which they
  // cross as objects, sealed as well as plain.
  const filler = randomBytes(12 << 10).toString('base64');
  const record = `"${SECRET} ${filler}"`;
  const shapes = [
    // No data, as the SDK's converter makes `binary/null`.
    { metadata: { encoding: enc.encode('binary/null') } },
    // Plain Uint8Arrays (the SDK's converters), a view into a larger buffer, a non-ASCII key.
    { metadata: { encoding: enc.encode('json/plain'), 'clé-ü': Uint8Array.of(0, 255) }, data: Buffer.from(`xx${record}yy`).subarray(2, -2) },
    { metadata: {}, data: new Uint8Array(0) },
  ];
  const sealed = await codec.encode(shapes);
  assert.equal(sealed.length, 3);
  assert.ok(sealed.every((p) => text(p.metadata.encoding) === 'binary/tcodec' && !text(p.data).includes('Ada')));
  const opened = await codec.decode(sealed);
  assert.deepEqual(opened.map((p) => text(p.data)), ['', record, '']);
  assert.deepEqual(opened.map((p) => Object.keys(p.metadata).sort()), [['encoding'], ['clé-ü', 'encoding'], []]);
  assert.deepEqual([...opened[1].metadata['clé-ü']], [0, 255]);
  // A payload carrying External Storage details (a reference) keeps them through both ways.
  const reference = Payload.create({
    metadata: { encoding: enc.encode('json/plain') }, data: enc.encode(record), externalPayloads: [{ sizeBytes: 4096 }],
  });
  const [sealedRef] = await codec.encode([reference]);
  assert.equal(text(sealedRef.metadata.encoding), 'binary/tcodec');
  assert.ok(!sealedRef.externalPayloads?.length, 'the details are sealed inside, not beside, the data');
  const [openedRef] = await codec.decode([sealedRef]); // (no details outside: crosses as it is)
  assert.equal(Number(openedRef.externalPayloads[0].sizeBytes), 4096);
  assert.equal(text(openedRef.data), record);
  // Small payloads cross serialized: the same answers.
  const small = [jsonPayload({ customer: SECRET }), { metadata: { 'clé-ü': Uint8Array.of(1) }, data: enc.encode('x') }];
  const shape = (p) => [text(p.data), Object.entries(p.metadata).map(([k, v]) => [k, text(v)]).sort()];
  assert.deepEqual((await codec.decode(await codec.encode(small))).map(shape), small.map(shape));
  // protobufjs gives a decoded payload without data an empty array for it: read as empty.
  const decoded = Payload.decode(Payload.encode({ metadata: { encoding: enc.encode('binary/null') } }).finish());
  const [openedEmpty] = await codec.decode(await codec.encode([decoded]));
  assert.equal(text(openedEmpty.metadata.encoding), 'binary/null');
  assert.equal(openedEmpty.data.length, 0);
});

test('a large batch compressed across threads reads the same; a failing payload is named', async () => {
  const ring = makeKeyring();
  // 16 payloads of 64 KiB: their compression split into runs on up to four threads, or kept on
  // one. Payloads 9 and 13 tampered: the first failure named is 9's.
  const payloads = Array.from({ length: 16 }, () => jsonPayload(randomBytes(48 << 10).toString('base64')));
  for (const threads of [1, 4]) {
    const codec = new PayloadCodec(codecOf(ring, { threads }));
    const sealed = await codec.encode(payloads);
    assert.equal(new Set(sealed.map((p) => b64(p.data))).size, 16);
    assert.deepEqual((await codec.decode(sealed)).map((p) => b64(p.data)), payloads.map((p) => b64(p.data)));
    for (const i of [9, 13]) {
      const data = Buffer.from(sealed[i].data);
      data[data.length - 1] ^= 1;
      sealed[i] = { ...sealed[i], data };
    }
    await assert.rejects(codec.decode(sealed), (err) => err instanceof CodecError && /^payload 9\b/.test(err.message));
  }
  assert.throws(() => codecOf(ring, { threads: 'four' }), /threads|Number/);
});

test('the Rust CLI reads what Node sealed, and Node reads what the CLI sealed', async () => {
  const ring = makeKeyring();
  const codec = codecOf(ring);
  const [sealed] = await codec.encode([jsonPayload(SECRET)]);
  const body = {
    payloads: [{
      metadata: Object.fromEntries(Object.entries(sealed.metadata).map(([k, v]) => [k, b64(v)])),
      data: b64(sealed.data),
    }],
  };
  const decoded = JSON.parse(cli(ring.env, ['decode'], JSON.stringify(body)));
  assert.equal(Buffer.from(decoded.payloads[0].data, 'base64').toString(), JSON.stringify(SECRET));

  const plain = { payloads: [{ metadata: { encoding: b64('json/plain') }, data: b64('"from rust"') }] };
  const byRust = JSON.parse(cli(ring.env, ['encode'], JSON.stringify(plain))).payloads[0];
  const [out] = await codec.decode([{
    metadata: Object.fromEntries(Object.entries(byRust.metadata).map(([k, v]) => [k, Buffer.from(v, 'base64')])),
    data: Buffer.from(byRust.data, 'base64'),
  }]);
  assert.equal(text(out.data), '"from rust"');
});

test('unsealed payloads are refused unless the decode policy allows them', async () => {
  const ring = makeKeyring();
  const plain = jsonPayload('forged by whoever runs the server');
  const [sealed] = await codecOf(ring).encode([jsonPayload('fine')]);
  await assert.rejects(codecOf(ring).decode([sealed, plain]), (err) => {
    assert.ok(err instanceof CodecError, String(err));
    assert.match(err.message, /payload 1/);
    assert.match(err.message, /json\/plain/);
    assert.match(err.message, /TCODEC_DECODE_ALLOW/);
    assert.ok(!err.message.includes('forged') && !err.message.includes('TCODEC_ERROR'));
    return true;
  });
  const [allowed] = await codecOf(ring, { decodeAllow: 'json/plain' }).decode([plain]);
  assert.equal(text(allowed.data), text(plain.data));
});

test('errors name the payload and the key, never key material', async () => {
  const ring = makeKeyring();
  const sealed = await codecOf(ring).encode([jsonPayload(SECRET)]);
  const other = join(ring.dir, 'other.key');
  writeFileSync(other, 'ff'.repeat(32), { mode: 0o600 });
  await assert.rejects(new Codec(Keyring.open(ring.path, { masterKeyFile: other })).decode(sealed), (err) => {
    assert.ok(err instanceof CodecError);
    assert.match(err.message, /payload 0/);
    assert.match(err.message, /k1/);
    for (const secret of [MASTER_KEY, 'ffff', 'Ada']) {
      assert.ok(!err.message.includes(secret), err.message);
    }
    return true;
  });
  await assert.rejects(codecOf(ring).decode([{ metadata: { encoding: Buffer.from('binary/tcodec') }, data: Buffer.from([1, 2]) }]),
    (err) => err instanceof CodecError && /payload 0/.test(err.message));
  assert.throws(() => Keyring.open(join(ring.dir, 'missing.json'), { masterKeyFile: ring.master }),
    (err) => err instanceof CodecError && err.message.includes('missing.json'));
  const shared = join(ring.dir, 'shared.key');
  writeFileSync(shared, MASTER_KEY, { mode: 0o644 });
  assert.throws(() => Keyring.open(ring.path, { masterKeyFile: shared }),
    (err) => err instanceof CodecError && !err.message.includes(MASTER_KEY));
  assert.throws(() => new Codec({}), TypeError);
});

test('a KMS keyring opens only for the KMS keys the deployment lists', async (t) => {
  const moto = await startMoto();
  t.after(() => moto.stop());
  t.after(setEnv(moto.aws));
  const path = join(mkdtempSync(join(tmpdir(), 'tcodec-node-kms-')), 'keyring.json');
  const env = { PATH: process.env.PATH, TCODEC_KEYRING: path, TCODEC_KMS_KEYS: moto.keyId, ...moto.aws };
  cli(env, ['keys', 'init', '--name', 'payments', '--kek', `aws-kms:${moto.keyId}`]);
  const kms = (kmsKeys) => new Codec(Keyring.open(path, { kmsKeys, kmsEndpoint: moto.endpoint, kmsRegion: 'us-east-1' }));
  const [sealed] = await kms([moto.keyId]).encode([jsonPayload(SECRET)]);
  assert.equal(text(sealed.metadata['tcodec-key-id']), 'k1');
  const body = { payloads: [{ metadata: Object.fromEntries(Object.entries(sealed.metadata).map(([k, v]) => [k, b64(v)])), data: b64(sealed.data) }] };
  const decoded = JSON.parse(cli(env, ['decode'], JSON.stringify(body)));
  assert.equal(Buffer.from(decoded.payloads[0].data, 'base64').toString(), JSON.stringify(SECRET));
  // Listed nowhere: refused before the key is unwrapped, and the message says what to set.
  await assert.rejects(kms([]).decode([sealed]), (err) => {
    assert.ok(err instanceof CodecError);
    assert.match(err.message, /payload 0/);
    assert.match(err.message, /not one of the KMS keys allowed here/);
    assert.match(err.message, /TCODEC_KMS_KEYS/);
    assert.ok(!err.message.includes('Ada'));
    return true;
  });
});

test('a rotation reaches an open codec without reopening it', async () => {
  const ring = makeKeyring();
  const codec = codecOf(ring);
  assert.equal(codec.keyring.primary, 'k1');
  cli(ring.env, ['keys', 'rotate']);
  await until('the watcher to take the new revision', () => codec.keyring.primary === 'k2');
  const [sealed] = await codec.encode([jsonPayload('after')]);
  assert.equal(text(sealed.metadata['tcodec-key-id']), 'k2');
});

test('fromEnv reads the Rust worker\'s variables', async (t) => {
  const ring = makeKeyring();
  t.after(setEnv({ TCODEC_KEYRING: undefined, TCODEC_MASTER_KEY_FILE: undefined, TCODEC_DECODE_ALLOW: undefined }));
  assert.throws(() => Codec.fromEnv(), (err) => err instanceof CodecError && /no keyring/.test(err.message));
  setEnv({ TCODEC_KEYRING: ring.path, TCODEC_MASTER_KEY_FILE: ring.master, TCODEC_DECODE_ALLOW: 'json/plain' });
  const codec = Codec.fromEnv();
  assert.equal(codec.keyring.name, 'payments');
  const [out] = await codec.decode([jsonPayload('migrating')]);
  assert.equal(text(out.data), '"migrating"');
});

test('S3StorageDriver.fromEnv and externalStorageFromEnv read the Rust worker\'s storage variables', (t) => {
  const names = ['TCODEC_STORAGE_BUCKET', 'TCODEC_STORAGE_PREFIX', 'TCODEC_STORAGE_ENDPOINT', 'TCODEC_STORAGE_REGION',
    'TCODEC_STORAGE_THRESHOLD', 'TEMPORAL_NAMESPACE'];
  t.after(setEnv(Object.fromEntries(names.map((name) => [name, undefined]))));
  assert.equal(S3StorageDriver.fromEnv(), null);
  assert.equal(externalStorageFromEnv(), undefined);

  setEnv({ TCODEC_STORAGE_BUCKET: 'payloads', TEMPORAL_NAMESPACE: 'payments' });
  const byDefault = S3StorageDriver.fromEnv();
  assert.deepEqual([byDefault.bucket, byDefault.prefix, byDefault.threshold], ['payloads', 'v0/ns/payments/', 256 * 1024]);

  setEnv({ TCODEC_STORAGE_PREFIX: 'tcodec/', TCODEC_STORAGE_THRESHOLD: '65536' });
  const storage = externalStorageFromEnv();
  const [driver] = storage.drivers;
  assert.ok(driver instanceof S3StorageDriver);
  assert.deepEqual([driver.prefix, storage.payloadSizeThreshold], ['tcodec/', 65536]);

  setEnv({ TCODEC_STORAGE_THRESHOLD: '64k' });
  for (const read of [() => S3StorageDriver.fromEnv(), externalStorageFromEnv]) {
    assert.throws(read, (err) => err instanceof CodecError
      && err.message === 'TCODEC_STORAGE_THRESHOLD: "64k" is not a number of bytes');
  }
});

test('the data converter seals failure messages and stack traces', async () => {
  const ring = makeKeyring();
  const converter = loadDataConverter(dataConverter(codecOf(ring)));
  const failure = await encodeErrorToFailure(converter, ApplicationFailure.nonRetryable(`declined for ${SECRET}`));
  assert.equal(failure.message, 'Encoded failure');
  assert.equal(failure.stackTrace, '');
  assert.equal(text(failure.encodedAttributes.metadata.encoding), 'binary/tcodec');
  assert.ok(!text(proto.temporal.api.failure.v1.Failure.encode(failure).finish()).includes('Ada'));
  const error = await decodeOptionalFailureToOptionalError(converter, failure);
  assert.ok(error.message.includes(SECRET));
});

test('the codec works off the event loop', async () => {
  const ring = makeKeyring();
  const codec = codecOf(ring);
  // 64 incompressible payloads of 256 KiB: milliseconds of work on libuv's pool, during which
  // the event loop goes on (a codec working on the loop would resolve before the check phase).
  const payloads = Array.from({ length: 64 }, () => ({ metadata: { encoding: Buffer.from('binary/plain') }, data: randomBytes(256 * 1024) }));
  let turned = false;
  setImmediate(() => { turned = true; });
  const sealed = await codec.encode(payloads);
  assert.ok(turned, 'the event loop did not turn while the batch was encoded');
  turned = false;
  setImmediate(() => { turned = true; });
  const opened = await codec.decode(sealed);
  assert.ok(turned, 'the event loop did not turn while the batch was decoded');
  assert.ok(opened.every((p, i) => Buffer.compare(p.data, payloads[i].data) === 0));
});

// --skipLibCheck: the SDK's own declarations need @types/ms; ours are checked where used.
test('the package\'s types compile against the SDK\'s PayloadCodec and DataConverter (tsc)', () => {
  const tsc = join(ROOT, 'node_modules/.bin/tsc');
  execFileSync(tsc, ['--noEmit', '--strict', '--skipLibCheck', '--module', 'nodenext', '--moduleResolution', 'nodenext',
    '--target', 'es2022', join(ROOT, 'bindings/node/tests/types.ts')], { cwd: ROOT, encoding: 'utf8' });
});

test('S3StorageDriver stores sealed payloads under their SHA-256 and reads back only what its claims name, checked', async (t) => {
  const moto = await startMoto();
  t.after(() => moto.stop());
  t.after(setEnv({ ...moto.aws, AWS_EC2_METADATA_DISABLED: 'true' }));
  // boto3 (from the venv) for what the test does to the bucket behind the driver's back.
  const s3 = (code) => execFileSync(join(ROOT, '.venv/bin/python'), ['-c',
    `import boto3, sys; s3 = boto3.client('s3', endpoint_url='${moto.endpoint}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n${code}`],
  { encoding: 'utf8' }).trim();
  s3("s3.create_bucket(Bucket='node-payloads')");
  const driver = new S3StorageDriver({ bucket: 'node-payloads', namespace: 'payments', endpoint: moto.endpoint, region: 'us-east-1' });
  assert.equal(driver.name, 'aws.s3driver');
  assert.equal(driver.prefix, 'v0/ns/payments/');
  const codec = codecOf(makeKeyring());
  const sealed = await codec.encode([jsonPayload({ customer: SECRET, notes: 'x'.repeat(300_000) }), jsonPayload('small')]);

  const claims = await driver.store({}, sealed);
  assert.equal(claims.length, 2);
  const [claim] = claims;
  assert.deepEqual(Object.keys(claim.claimData).sort(), ['bucket', 'hash_algorithm', 'hash_value', 'key']);
  assert.equal(claim.claimData.key, `v0/ns/payments/d/sha256/${claim.claimData.hash_value}`);
  const object = Buffer.from(s3(`sys.stdout.write(s3.get_object(Bucket='node-payloads', Key='${claim.claimData.key}')['Body'].read().hex())`), 'hex');
  assert.equal(createHash('sha256').update(object).digest('hex'), claim.claimData.hash_value);
  assert.ok(text(object).includes('binary/tcodec') && !text(object).includes('4111'), 'the object is ciphertext');
  // Content-addressed: storing the same sealed payload again names the same object.
  assert.deepEqual((await driver.store({}, [sealed[0]]))[0].claimData, claim.claimData);
  assert.equal(s3("print(s3.list_objects_v2(Bucket='node-payloads')['KeyCount'])"), '2');

  // Read back (one claim twice) and opened by the codec.
  const back = await driver.retrieve({}, [claim, claims[1], claim]);
  const opened = await codec.decode(back);
  assert.equal(JSON.parse(Buffer.from(opened[0].data).toString()).customer, SECRET);
  assert.equal(JSON.parse(Buffer.from(opened[1].data).toString()), 'small');
  assert.deepEqual(Buffer.from(opened[2].data), Buffer.from(opened[0].data));

  // A claim is attacker data: another bucket or another namespace's prefix is refused before
  // any request; a missing object and an altered one are errors naming the payload.
  const rejects = (claimData, pattern) => assert.rejects(driver.retrieve({}, [claim, { claimData }]), (err) => {
    assert.ok(err instanceof CodecError, String(err));
    assert.match(err.message, /^payload 1: /);
    assert.match(err.message, pattern);
    return true;
  });
  await rejects({ ...claim.claimData, bucket: 'someone-elses' }, /reference refused: bucket "someone-elses" is not configured/);
  await rejects({ ...claim.claimData, key: `v0/ns/billing/d/sha256/${claim.claimData.hash_value}` }, /not under the configured prefix/);
  await rejects({ ...claim.claimData, endpoint: 'http://169.254.169.254' }, /malformed/);
  const zeros = '0'.repeat(64);
  await rejects({ ...claim.claimData, key: `v0/ns/payments/d/sha256/${zeros}`, hash_value: zeros }, /does not exist/);
  s3(`s3.put_object(Bucket='node-payloads', Key='${claims[1].claimData.key}', Body=b'altered')`);
  await rejects({ ...claims[1].claimData }, /does not have the SHA-256 its reference names/);
  assert.throws(() => new S3StorageDriver({ bucket: '' }), CodecError);
});
