// What the package's tests share: the `tcodec` CLI cargo built, and keyrings under a local
// master key made with it.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

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
