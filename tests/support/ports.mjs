// Servers on loopback ports picked free, for the Node tests (tests/browser and
// bindings/node/tests); the Rust fixtures do the same in common.rs, the Python
// ones in bindings/python/tests/conftest.py.
//
// A port picked free can be taken by another process (any outgoing connection
// takes one from the same range) before the server meant for it binds it. So a
// server is waited for until it is itself listening there, never until
// something answers, and started again on a fresh port when it exits saying the
// address is in use.

import fs from 'node:fs';
import net from 'node:net';

/** A port on 127.0.0.1 nothing listens on right now. */
export function freePort() {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address();
      server.close(() => resolve(port));
    });
  });
}

/** Whether process `pid` holds a socket listening on TCP port `port` (Linux: the listening
 * sockets in /proc/net/tcp{,6} matched to the process's descriptors). */
export function listensOn(pid, port) {
  const local = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  const inodes = new Set();
  for (const table of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text;
    try {
      text = fs.readFileSync(table, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const fields = line.trim().split(/\s+/);
      // local_address, state (0A: LISTEN), inode
      if (fields.length > 9 && fields[1].endsWith(local) && fields[3] === '0A') inodes.add(`socket:[${fields[9]}]`);
    }
  }
  if (inodes.size === 0) return false;
  let fds;
  try {
    fds = fs.readdirSync(`/proc/${pid}/fd`);
  } catch {
    return false;
  }
  return fds.some((fd) => {
    try {
      return inodes.has(fs.readlinkSync(`/proc/${pid}/fd/${fd}`));
    } catch {
      return false;
    }
  });
}

const ATTEMPTS = 5;

/**
 * Starts a server told its port on its command line. `launch(port)` (may be async) starts it on a
 * port picked free and returns the child process with a `log()` method giving its output so far; `ready(port)`
 * (optional, may be async) is polled once the child listens there. Resolves `{ child, port }`;
 * when the child exits saying the address is in use, it is launched again on a fresh port.
 */
export async function onFreePort(what, launch, ready = async () => true, ms = 120_000) {
  for (let attempt = 1; ; attempt += 1) {
    const port = await freePort();
    const child = await launch(port);
    const exited = () => child.exitCode !== null || child.signalCode !== null;
    const deadline = Date.now() + ms;
    let up = false;
    while (!exited()) {
      if (!up) up = listensOn(child.pid, port);
      if (up) {
        try {
          if (await ready(port)) return { child, port };
        } catch {
          // not yet
        }
      }
      if (Date.now() > deadline) {
        child.kill('SIGKILL');
        throw new Error(`${what} did not start on port ${port}: ${child.log()}`);
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    const log = child.log();
    if (attempt >= ATTEMPTS || !/address already in use/i.test(log)) {
      throw new Error(`${what} exited (${child.exitCode ?? child.signalCode}): ${log}`);
    }
  }
}
