"""Servers on loopback ports picked free, for the Python tests (bindings/python/tests) and
benches; the Rust fixtures do the same in common.rs, the Node ones in ports.mjs.

A port picked free can be taken by another process (any outgoing connection takes one from the
same range) before the server meant for it binds it. So a server is waited for until it is
itself listening there, never until something answers, and started again on a fresh port when
it exits saying the address is in use.
"""

import os
import socket
import subprocess
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listens_on(pid: int, port: int) -> bool:
    """Whether process `pid` holds a socket listening on TCP `port` (Linux: the listening sockets
    in /proc/net/tcp{,6} matched to the process's descriptors)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                lines = f.read().splitlines()[1:]
        except OSError:
            continue
        for fields in (line.split() for line in lines):
            # local_address, state (0A: LISTEN), inode
            if len(fields) > 9 and fields[1].endswith(f":{port:04X}") and fields[3] == "0A":
                inodes.add(f"socket:[{fields[9]}]")
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") in inodes:
                return True
        except OSError:
            pass
    return False


def serve_on_free_port(what, log, command, ready=lambda port: True, **popen):
    """Starts the server `command(port)` on a port picked free, its output to `log`; returns
    (process, port) once the process itself listens there and `ready(port)` holds. Another process
    can take the port between the pick and the server's bind (any outgoing connection takes one
    from the same range): a server that exits saying so is started again on a fresh port."""
    for attempt in range(1, 6):
        port = free_port()
        with open(log, "w") as out:
            server = subprocess.Popen(command(port), stdout=out, stderr=subprocess.STDOUT, **popen)
        deadline = time.monotonic() + 120
        while server.poll() is None:
            if listens_on(server.pid, port) and ready(port):
                return server, port
            if time.monotonic() > deadline:
                server.kill()
                raise AssertionError(f"{what} did not start on port {port}: {log.read_text()}")
            time.sleep(0.05)
        text = log.read_text()
        if attempt == 5 or "address already in use" not in text.lower():
            raise AssertionError(f"{what} exited ({server.returncode}): {text}")
