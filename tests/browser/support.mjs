// What the browser tests share: the repository's binaries and tools, child processes with
// their logs, polling, the Temporal dev server with its Web UI, and Chromium.

import assert from 'node:assert/strict';
import { execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { freePort, listensOn, onFreePort } from '../support/ports.mjs';

export { freePort, listensOn, onFreePort };

export const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** A binary cargo built with the test profile. */
export const bin = (name) => {
  const p = path.join(root, 'target/debug', name);
  assert.ok(fs.existsSync(p), `${p} is missing: run cargo build --workspace --all-targets --profile test`);
  return p;
};

export const python = path.join(root, '.venv/bin/python');
export const temporalBin = path.join(root, '.venv/bin/temporal');

/** Where screenshots go: docs/screenshots/ with TCODEC_UPDATE_SCREENSHOTS=1, else target/browser/. */
export const shots = process.env.TCODEC_UPDATE_SCREENSHOTS === '1'
  ? path.join(root, 'docs/screenshots')
  : path.join(root, 'target/browser');
fs.mkdirSync(shots, { recursive: true });

/** Polls `check` (sync or async) until it returns a truthy value, or fails after `ms`. */
export async function waitFor(what, check, ms = 60_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try {
      const value = await check();
      if (value) return value;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Stops a child process (SIGTERM); resolves once it has exited. */
export function stop(child) {
  return new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) return resolve();
    child.once('exit', resolve);
    child.kill('SIGTERM');
  });
}

/** The child processes of one test file, each logging to a file in `work`. */
export class Processes {
  constructor(work) {
    this.work = work;
    this.children = new Set();
  }

  start(name, command, args, env = {}) {
    const log = path.join(this.work, `${name}.log`);
    const out = fs.openSync(log, 'w');
    const child = spawn(command, args, { env: { ...process.env, ...env }, cwd: this.work, stdio: ['ignore', out, out] });
    this.children.add(child);
    child.on('exit', () => this.children.delete(child));
    child.log = () => fs.readFileSync(log, 'utf8');
    return child;
  }

  stopAll() {
    return Promise.all([...this.children].map(stop));
  }
}

/** Starts `temporal server start-dev` with the Web UI on `uiPort` asking the codec server on
 * `codecPort`, on ports of its own picked free; resolves `{ child, address }` once both answer.
 * (Started again on fresh ports when one was taken before it bound it; `uiPort`, which the codec
 * server's CORS origins already name, stays.) */
export async function startTemporal(processes, { uiPort, codecPort }) {
  const { child, port } = await onFreePort('the Temporal dev server', async (port) => processes.start('temporal', temporalBin, [
    'server', 'start-dev', '--ip', '127.0.0.1', '--port', String(port),
    '--http-port', String(await freePort()), '--metrics-port', String(await freePort()),
    '--ui-ip', '127.0.0.1', '--ui-port', String(uiPort), '--ui-disable-news-fetch',
    '--ui-codec-endpoint', `http://127.0.0.1:${codecPort}`, '--log-level', 'warn',
  ]), (port) => {
    execFileSync(temporalBin, ['operator', 'namespace', 'describe', '--namespace', 'default',
      '--address', `127.0.0.1:${port}`], { stdio: 'ignore' });
    return true;
  });
  await waitFor('the Web UI', async () => listensOn(child.pid, uiPort)
    && (await fetch(`http://127.0.0.1:${uiPort}`)).ok);
  return { child, address: `127.0.0.1:${port}` };
}

/** Debian's Chromium, headless, through playwright-core. */
export function launchChromium() {
  return chromium.launch({
    executablePath: '/usr/bin/chromium',
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', '--disable-quic', '--no-first-run'],
  });
}
