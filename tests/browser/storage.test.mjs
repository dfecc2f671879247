// External Storage end to end: the reference onboarding worker (Rust) with
// TCODEC_STORAGE_BUCKET on the real dev server, S3 from moto on loopback, and the real
// Web UI in Chromium. A customer sends a 5 MiB identity document scan: the workflow
// input is larger than Temporal accepts, so the worker seals it and stores it in S3;
// the history holds references only, S3 holds ciphertext only, the `temporal` CLI
// shows the input through the codec server, and the UI shows it decoded, fetched
// through the codec server's /download.
//
// Needs the binaries (`cargo build --workspace --all-targets --profile test`).
// TCODEC_UPDATE_SCREENSHOTS=1 writes the screenshot to docs/screenshots/.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  Processes, bin, freePort, launchChromium, onFreePort, python, root, shots, startTemporal, temporalBin, waitFor,
} from './support.mjs';

const BUCKET = 'onboarding-payloads';
const WORKFLOW = 'onboarding-large-document';
const SECRETS = ['4111 1111 1111 1111', 'Ada Lovelace', '12 Crescent Road', 'ada@example.com'];
const AWS = {
  AWS_ACCESS_KEY_ID: 'testing',
  AWS_SECRET_ACCESS_KEY: 'testing',
  AWS_REGION: 'us-east-1',
  AWS_EC2_METADATA_DISABLED: 'true',
};

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tcodec-storage-ui-'));
const processes = new Processes(work);
const start = (...args) => processes.start(...args);
let browser;
let ui;
let codecPort;
let temporalAddress;
let s3Endpoint;
let scanBase64;
let result;
let codecServer;

/** Runs boto3 code with `s3`, a client of moto's S3; returns stdout. */
function s3(code) {
  const script = `import boto3, base64, json\ns3 = boto3.client('s3', endpoint_url='${s3Endpoint}', `
    + `region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing')\n${code}`;
  return String(execFileSync(python, ['-c', script]));
}

const tcodecEnv = () => ({
  ...AWS,
  TCODEC_MASTER_KEY_FILE: path.join(work, 'master.key'),
  TCODEC_KEYRING: path.join(work, 'default.json'),
  TEMPORAL_ADDRESS: temporalAddress,
  TCODEC_STORAGE_BUCKET: BUCKET,
  TCODEC_STORAGE_ENDPOINT: s3Endpoint,
  TCODEC_STORAGE_REGION: 'us-east-1',
});

function history(codecEndpoint) {
  const args = ['workflow', 'show', '--workflow-id', WORKFLOW, '--address', temporalAddress, '--output', 'json'];
  if (codecEndpoint) args.push('--codec-endpoint', codecEndpoint);
  return JSON.parse(String(execFileSync(temporalBin, args, { maxBuffer: 256 << 20 })));
}

/** Every payload in `value` (objects with metadata and data). */
function payloads(value, out = []) {
  if (Array.isArray(value)) value.forEach((v) => payloads(v, out));
  else if (value && typeof value === 'object') {
    if (value.metadata && typeof value.metadata === 'object' && 'encoding' in value.metadata) out.push(value);
    Object.values(value).forEach((v) => payloads(v, out));
  }
  return out;
}

const text = (b64) => Buffer.from(b64 ?? '', 'base64').toString('latin1');

before(async () => {
  const uiPort = await freePort();
  ui = `http://127.0.0.1:${uiPort}`;
  const s3Port = (await onFreePort('moto_server', (port) => start('moto', path.join(root, '.venv/bin/moto_server'),
    ['-H', '127.0.0.1', '-p', String(port)]))).port;
  s3Endpoint = `http://127.0.0.1:${s3Port}`;
  s3(`s3.create_bucket(Bucket='${BUCKET}')`);

  const key = execFileSync(bin('tcodec'), ['keys', 'new-master-key']);
  fs.writeFileSync(path.join(work, 'master.key'), key, { mode: 0o600 });
  execFileSync(bin('tcodec'), ['keys', 'init', '--name', 'default', '--kek', 'local'], { env: { ...process.env, ...tcodecEnv() } });

  const config = path.join(work, 'tcodec.toml');
  const writeConfig = (port) => fs.writeFileSync(config, [
    `listen = "127.0.0.1:${port}"`,
    '[log]',
    'format = "json"',
    '[cors]',
    `origins = ${JSON.stringify([ui])}`,
    '[kek]',
    `master_key_file = ${JSON.stringify(path.join(work, 'master.key'))}`,
    '[namespaces.default]',
    `keyring = ${JSON.stringify(path.join(work, 'default.json'))}`,
    '[namespaces.default.storage]',
    `bucket = "${BUCKET}"`,
    `endpoint = "${s3Endpoint}"`,
    'region = "us-east-1"',
    'max_object_bytes = 16777216',
    '[limits]',
    'max_body_bytes = 16777216',
  ].join('\n'));
  ({ child: codecServer, port: codecPort } = await onFreePort('the codec server', (port) => {
    writeConfig(port);
    return start('codec', bin('tcodec'), ['serve', '--config', config], AWS);
  }, async (port) => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok));

  ({ address: temporalAddress } = await startTemporal(processes, { uiPort, codecPort }));

  // A 5 MiB scan (random bytes: compression cannot shrink it under the server's limit).
  const scan = path.join(work, 'passport-scan.bin');
  const bytes = crypto.randomBytes(5 << 20);
  fs.writeFileSync(scan, bytes);
  scanBase64 = bytes.toString('base64');

  start('worker', bin('onboarding-worker'), [], tcodecEnv());
  const out = execFileSync(bin('onboarding-starter'), ['run', WORKFLOW, '--document', scan],
    { env: { ...process.env, ...tcodecEnv() }, timeout: 180_000 });
  result = JSON.parse(String(out));

  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await processes.stopAll();
  fs.rmSync(work, { recursive: true, force: true });
});

test('a 5 MiB input completes with the Rust worker; the history holds references, S3 ciphertext', () => {
  const sha = crypto.createHash('sha256').update(scanBase64).digest('hex');
  assert.equal(result.document_sha256, sha, 'open_account saw the whole document');
  assert.equal(result.holder, 'Ada Lovelace');

  const raw = history();
  const all = payloads(raw.events);
  const encodings = new Set(all.map((p) => text(p.metadata.encoding)));
  assert.deepEqual([...encodings].sort(), ['binary/tcodec', 'json/protobuf']);
  const references = all.filter((p) => text(p.metadata.encoding) === 'json/protobuf');
  for (const r of references) {
    assert.equal(text(r.metadata.messageType), 'temporal.api.sdk.v1.ExternalStorageReference');
    assert.equal(JSON.parse(text(r.data)).claimData.bucket, BUCKET);
    assert.ok(Number(r.externalPayloads[0].sizeBytes) > 2_000_000, 'only what is over the threshold');
  }
  const input = raw.events[0].workflowExecutionStartedEventAttributes.input.payloads[0];
  assert.equal(text(input.metadata.encoding), 'json/protobuf', 'the workflow input is a reference');
  // The input, and the customer passed to both activities.
  assert.ok(references.length >= 3, `${references.length} references`);
  const rawText = JSON.stringify(raw);
  for (const secret of SECRETS) assert.ok(!rawText.includes(secret) && !all.some((p) => text(p.data).includes(secret)));
  assert.ok(!all.some((p) => text(p.data).includes(scanBase64.slice(0, 64))));

  // S3 holds one object per reference (the ciphertext's hash names it), none with plaintext.
  const objects = JSON.parse(s3(`out = []
for o in s3.list_objects_v2(Bucket='${BUCKET}')['Contents']:
    body = s3.get_object(Bucket='${BUCKET}', Key=o['Key'])['Body'].read()
    out.append({'key': o['Key'], 'tcodec': b'binary/tcodec' in body,
                'plain': any(s.encode() in body for s in ${JSON.stringify([...SECRETS, scanBase64.slice(0, 64)])})})
print(json.dumps(out))`));
  const keys = new Set(references.map((r) => JSON.parse(text(r.data)).claimData.key));
  assert.deepEqual(objects.map((o) => o.key).sort(), [...keys].sort());
  assert.ok(objects.every((o) => o.tcodec && !o.plain), JSON.stringify(objects));

  // `tcodec history check`, with no key, follows every reference into the bucket
  // (TCODEC_STORAGE_*) and finds each object sealed; it exits non-zero otherwise.
  const check = JSON.parse(String(execFileSync(bin('tcodec'), ['history', 'check', '--json'], {
    input: JSON.stringify(raw), env: { ...process.env, ...tcodecEnv() }, maxBuffer: 256 << 20,
  })));
  assert.ok(check.sealed, JSON.stringify(check));
  assert.equal(check.stored, references.length);
  assert.equal(check.stored_checked, references.length);
  assert.deepEqual(Object.keys(check.sealed_by_format_and_key), ['binary/tcodec']);
});

test('the temporal CLI shows the stored input decoded through the codec server', () => {
  const decoded = history(`http://127.0.0.1:${codecPort}`);
  const input = decoded.events[0].workflowExecutionStartedEventAttributes.input.payloads[0];
  assert.equal(text(input.metadata.encoding), 'json/plain');
  const customer = JSON.parse(Buffer.from(input.data, 'base64').toString('utf8'));
  assert.equal(customer.name, 'Ada Lovelace');
  assert.equal(customer.id_document, scanBase64);
});

test('the Web UI shows the reference, and its download is the input decoded through /download', async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
  const calls = [];
  page.on('request', (r) => {
    if (r.url().startsWith(`http://127.0.0.1:${codecPort}/`) && r.method() === 'POST') calls.push(r.url());
  });
  await page.goto(`${ui}/namespaces/default/workflows/${WORKFLOW}`);
  // The history is shown through /decode?preserveStorageRefs=true: the input as the
  // reference it is (driver, bucket, key, hash) with its size, the result decoded.
  const body = await waitFor('the page', async () => {
    const t = await page.innerText('body');
    return t.includes('aws.s3driver') && t.includes('Royal Crescent') ? t : null;
  });
  assert.ok(body.includes(BUCKET) && body.includes('5 MB'), body);
  assert.ok(calls.length > 0 && calls.every((u) => u.endsWith('/decode?preserveStorageRefs=true')), calls.join('\n'));
  await page.screenshot({ path: path.join(shots, 'ui-external-storage.png') });

  // Its size is the download button: the UI asks /download, which fetches the object,
  // checks it and decodes it, and the browser saves the payload decoded.
  const [download] = await Promise.all([
    page.waitForEvent('download'),
    page.getByRole('button', { name: '5 MB' }).first().click(),
  ]);
  const saved = JSON.parse(fs.readFileSync(await download.path(), 'utf8'));
  assert.equal(saved.name, 'Ada Lovelace');
  assert.equal(saved.card_number, '4111 1111 1111 1111');
  assert.equal(saved.id_document, scanBase64);
  assert.ok(calls.some((u) => u.endsWith('/download?preserveStorageRefs=true')), calls.join('\n'));
  const fetched = codecServer.log().split('\n').filter(Boolean).map((l) => JSON.parse(l))
    .filter((l) => l.target === 'tcodec::audit' && l.operation === 'fetch' && l.endpoint === 'download');
  assert.equal(fetched.length, 1, codecServer.log());
  assert.equal(fetched[0].bucket, BUCKET);
  await page.close();
});
