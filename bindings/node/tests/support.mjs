// What the package's tests share: the `tcodec` CLI cargo built, and keyrings under a local
// master key made with it.
import { execFileSync } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { onFreePort } from '../../../tests/support/ports.mjs';

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../../..');
export const TCODEC = join(ROOT, 'target/debug/tcodec');
export const MASTER_KEY = '000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f';
export const SECRET = 'Ada Lovelace, card 4111 1111 1111 1111';

/** Runs the tcodec CLI with `env`; returns its stdout, failing on a non-zero exit. */
export function cli(env, args, input) {
  if (!existsSync(TCODEC)) {
    throw new Error(`${TCODEC} is missing: cargo build -p tcodec-cli`);
  }
  return execFileSync(TCODEC, args, { env, input, encoding: 'utf8', stdio: ['pipe', 'pipe', 'pipe'] });
}

/** A new keyring "payments" (key k1) under a local master key, in a temporary directory. */
export function makeKeyring() {
  const dir = mkdtempSync(join(tmpdir(), 'tcodec-node-'));
  const master = join(dir, 'master.key');
  writeFileSync(master, MASTER_KEY, { mode: 0o600 });
  const path = join(dir, 'keyring.json');
  const env = { PATH: process.env.PATH, TCODEC_KEYRING: path, TCODEC_MASTER_KEY_FILE: master };
  cli(env, ['keys', 'init', '--name', 'payments', '--kek', 'local']);
  return { dir, path, master, env };
}

/** A json/plain payload of `value`, as the SDK's default converter makes it. */
export function jsonPayload(value) {
  return {
    metadata: { encoding: Buffer.from('json/plain') },
    data: Buffer.from(JSON.stringify(value)),
  };
}

/** Waits for `check()` to hold, polling every 20 ms for up to `seconds`. */
export async function until(what, check, seconds = 30) {
  const deadline = Date.now() + seconds * 1000;
  while (!check()) {
    if (Date.now() > deadline) {
      throw new Error(`gave up waiting for ${what}`);
    }
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A real KMS-protocol server (`moto_server` from the venv) on loopback with one KMS key:
 * { endpoint, keyId, aws (its AWS environment), stop() }. */
export async function startMoto() {
  const { spawn } = await import('node:child_process');
  const home = mkdtempSync(join(tmpdir(), 'tcodec-moto-'));
  const { child: server, port } = await onFreePort('moto_server', (p) => {
    const log = join(home, 'moto.log');
    // In its own directory: its request recorder writes a file there.
    const out = openSync(log, 'w');
    const child = spawn(join(ROOT, '.venv/bin/moto_server'), ['-H', '127.0.0.1', '-p', String(p)],
      { cwd: home, stdio: ['ignore', 'ignore', out] });
    closeSync(out);
    child.log = () => readFileSync(log, 'utf8');
    return child;
  }, undefined, 60_000);
  const endpoint = `http://127.0.0.1:${port}`;
  const aws = { AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing', AWS_REGION: 'us-east-1', AWS_ENDPOINT_URL: endpoint };
  const keyId = execFileSync(join(ROOT, '.venv/bin/python'), ['-c',
    `import boto3; print(boto3.client('kms', endpoint_url='${endpoint}', region_name='us-east-1', aws_access_key_id='testing', aws_secret_access_key='testing').create_key()['KeyMetadata']['KeyId'])`],
  { encoding: 'utf8' }).trim();
  return { endpoint, keyId, aws, stop: () => server.kill() };
}
