// The real Temporal Web UI (served by `temporal server start-dev --ui-codec-endpoint …`)
// decrypting through the tcodec codec server, in Debian's headless Chromium driven by
// playwright-core. Run by scripts/test.sh after the cargo build; run alone with
// `node --test tests/browser/` once `cargo build --workspace --all-targets --profile test`
// has built the binaries.
//
// Set TCODEC_UPDATE_SCREENSHOTS=1 to refresh the screenshots in docs/screenshots/;
// otherwise they go to target/browser/.

import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import {
  Processes, bin, freePort, launchChromium, listensOn, onFreePort, python, root, shots, startTemporal, stop, waitFor,
} from './support.mjs';

const SECRETS = ['4111 1111 1111 1111', 'Ada Lovelace', '12 Crescent Road', 'ada@example.com'];
const FAILURE = 'identity check for Ada Lovelace with card 4111 1111 1111 1111 timed out';
const WORKFLOW = 'onboarding-ui';
// Started by a Python worker with the samples' encryption codec, finished by tcodec's.
const MIGRATED = 'migrated-ui';

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'tcodec-ui-'));
const processes = new Processes(work);
const start = (...args) => processes.start(...args);
let codec;
let browser;
let ui;
let codecPort;
let temporalAddress;

const tcodecEnv = () => ({
  TCODEC_MASTER_KEY_FILE: path.join(work, 'master.key'),
  TCODEC_KEYRING: path.join(work, 'default.json'),
  TEMPORAL_ADDRESS: temporalAddress,
});

/** Starts `tcodec serve` allowing `origins` on codecPort, a port picked free the first time;
 * resolves once it is ready. */
async function startCodec(origins) {
  const launch = (port) => {
    const config = path.join(work, 'tcodec.toml');
    fs.writeFileSync(config, [
      `listen = "127.0.0.1:${port}"`,
      '[log]',
      'format = "json"',
      'level = "info,tcodec=debug"',
      '[cors]',
      `origins = ${JSON.stringify(origins)}`,
      '[kek]',
      `master_key_file = ${JSON.stringify(path.join(work, 'master.key'))}`,
      '[namespaces.default]',
      `keyring = ${JSON.stringify(path.join(work, 'default.json'))}`,
      // Histories from before the move to tcodec: the samples' format, under the imported key.
      'decode_allow = ["binary/encrypted"]',
    ].join('\n'));
    return start(`codec-${Date.now()}`, bin('tcodec'), ['serve', '--config', config]);
  };
  const ready = async (port) => (await fetch(`http://127.0.0.1:${port}/readyz`)).ok;
  if (codecPort === undefined) {
    const { child, port } = await onFreePort('the codec server', launch, ready);
    codecPort = port;
    return child;
  }
  // Again, on the port the Web UI asks.
  const child = launch(codecPort);
  await waitFor('the codec server', () => listensOn(child.pid, codecPort) && ready(codecPort));
  return child;
}

async function metric(name) {
  const text = await (await fetch(`http://127.0.0.1:${codecPort}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(name));
  return line ? Number(line.split(' ').pop()) : 0;
}

function audit(child) {
  return child.log().split('\n').filter(Boolean).map((l) => {
    try { return JSON.parse(l); } catch { return {}; }
  }).filter((l) => l.target === 'tcodec::audit');
}

/** Opens the workflow's page; returns the page text once `ready` holds. */
async function openWorkflow(page, ready, id = WORKFLOW) {
  await page.goto(`${ui}/namespaces/default/workflows/${id}`);
  return waitFor('the workflow page', async () => {
    const text = await page.innerText('body');
    return ready(text) ? text : null;
  });
}

before(async () => {
  const uiPort = await freePort();
  ui = `http://127.0.0.1:${uiPort}`;

  const key = execFileSync(bin('tcodec'), ['keys', 'new-master-key']);
  fs.writeFileSync(path.join(work, 'master.key'), key, { mode: 0o600 });
  execFileSync(bin('tcodec'), ['keys', 'init', '--name', 'default', '--kek', 'local'], { env: { ...process.env, ...tcodecEnv() } });

  codec = await startCodec([ui]);
  ({ address: temporalAddress } = await startTemporal(processes, { uiPort, codecPort }));

  // A team migrating from the samples' codec: a Python worker with it starts onboarding and
  // stops at the signal; the old key is imported; tcodec's worker (allowing the samples'
  // format) takes over.
  const samplesKey = path.join(work, 'samples.key');
  fs.writeFileSync(samplesKey, 'test-key-test-key-test-key-test!', { mode: 0o600 });
  execFileSync(python, [path.join(root, 'tests/support/samples_worker.py'),
    temporalAddress, MIGRATED, samplesKey, 'samples-2024'], { timeout: 120_000 });
  execFileSync(bin('tcodec'), ['keys', 'import-legacy', '--id', 'samples-2024', '--key-file', samplesKey],
    { env: { ...process.env, ...tcodecEnv() } });

  const worker = start('worker', bin('onboarding-worker'), [], { ...tcodecEnv(), TCODEC_DECODE_ALLOW: 'binary/encrypted' });
  const starterEnv = { env: { ...process.env, ...tcodecEnv() }, timeout: 120_000 };
  const result = execFileSync(bin('onboarding-starter'), ['run', WORKFLOW], starterEnv);
  assert.match(String(result), /Royal Crescent/);
  execFileSync(bin('onboarding-starter'), ['signal', MIGRATED], starterEnv);
  assert.match(String(execFileSync(bin('onboarding-starter'), ['result', MIGRATED], starterEnv)), /Ada Lovelace/);
  await stop(worker);

  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  await processes.stopAll();
  fs.rmSync(work, { recursive: true, force: true });
});

test('the UI shows the decrypted input, result and failure, asking tcodec with X-Namespace', async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const decodeCalls = [];
  page.on('request', (r) => {
    if (r.url().startsWith(`http://127.0.0.1:${codecPort}/`)) decodeCalls.push({ url: r.url(), method: r.method(), headers: r.headers() });
  });
  const preflightsBefore = await metric('tcodec_cors_preflights_total{allowed="true"}');

  const text = await openWorkflow(page, (t) => t.includes('4111 1111 1111 1111') && t.includes('Royal Crescent'));
  for (const secret of SECRETS) assert.ok(text.includes(secret), `the page lacks ${secret}`);
  assert.ok(text.includes('Welcome, Ada Lovelace!'), 'the result is decoded');
  await page.screenshot({ path: path.join(shots, 'ui-decoded.png') });

  // The retried activity's failure message: event 7 (ActivityTaskStarted, lastFailure) in the JSON view.
  await page.getByText('Event History').first().click();
  await page.getByRole('button', { name: 'JSON', exact: true }).click();
  const eventNumber = page.locator('input[type=number]');
  await eventNumber.fill('7');
  await eventNumber.press('Enter');
  await waitFor('the decoded failure message', async () => (await page.innerText('body')).includes(FAILURE));
  await page.screenshot({ path: path.join(shots, 'ui-decoded-failure.png') });

  // What the codec server saw: preflights from the UI's origin, /decode calls with X-Namespace.
  assert.ok(decodeCalls.length > 0, 'the UI called the codec server');
  for (const call of decodeCalls) {
    assert.equal(call.method, 'POST');
    assert.match(call.url, /\/decode(\?|$)/);
    assert.equal(call.headers['x-namespace'], 'default');
  }
  assert.ok(await metric('tcodec_cors_preflights_total{allowed="true"}') > preflightsBefore, 'preflights were answered');
  const decodes = audit(codec).filter((l) => l.endpoint === 'decode' && l.status === 200);
  assert.ok(decodes.length >= decodeCalls.length, `audit lines: ${decodes.length}, calls: ${decodeCalls.length}`);
  for (const line of decodes) assert.equal(line.namespace, 'default');
  const log = codec.log();
  for (const secret of SECRETS) assert.ok(!log.includes(secret), `the codec server's log holds ${secret}`);
  await page.close();
});

test('the UI shows a migrated history decoded: the samples\' input and tcodec\'s result', async () => {
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  // The input (12 Crescent Road) was sealed by the samples' codec in Python; the result
  // (Royal Crescent) by tcodec in Rust.
  const text = await openWorkflow(page, (t) => t.includes('12 Crescent Road') && t.includes('Royal Crescent'), MIGRATED);
  for (const secret of SECRETS) assert.ok(text.includes(secret), `the page lacks ${secret}`);
  assert.ok(!text.includes('binary/encrypted'), 'a samples-format payload was left undecoded');
  await page.screenshot({ path: path.join(shots, 'ui-migrated.png') });
  await page.close();
});

test('an origin not in the allow-list is refused and the UI shows no plaintext', async () => {
  await stop(codec);
  codec = await startCodec(['https://cloud.temporal.io']);
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const text = await openWorkflow(page, (t) => t.includes('Codec Server could not connect'));
  for (const secret of SECRETS) assert.ok(!text.includes(secret), `the page shows ${secret}`);
  assert.ok(await metric('tcodec_cors_preflights_total{allowed="false"}') > 0, 'the refused preflight was counted');
  assert.equal(audit(codec).filter((l) => l.status === 200).length, 0, 'nothing was decoded');
  await page.close();
});

test('with the codec server stopped the UI shows its error banner and no plaintext', async () => {
  await stop(codec);
  const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } });
  const text = await openWorkflow(page, (t) => t.includes('Codec Server could not connect'));
  for (const secret of SECRETS) assert.ok(!text.includes(secret), `the page shows ${secret}`);
  await page.screenshot({ path: path.join(shots, 'ui-codec-down.png') });
  await page.close();
});
