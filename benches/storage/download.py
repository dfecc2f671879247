"""`/download` of a 5 MiB stored payload against fetching the same object from S3 alone, in one
run, alternating, over the same HTTP client (urllib, one connection each, as the UI's browser
would open): moto's S3 on loopback, `tcodec serve` with the namespace's bucket. Also the codec
server's peak RSS (VmHWM) after the run, against the object's size.

    .venv/bin/python benches/storage/download.py [--tcodec target/release/tcodec] [--rounds 30]
    .venv/bin/python benches/storage/download.py --quick     # smoke run (scripts/test.sh)
    .venv/bin/python benches/storage/download.py --s3-mbps 100   # S3 as over a network

Also: the answer's size and the time to read it, and so the floor any codec server has here: it
cannot answer before it has the whole object (nothing is released before the AEAD tag verifies),
and its answer, the payload as base64 in the protocol's JSON, is larger than the object.
"""

import argparse
import base64
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "support"))
from ports import serve_on_free_port  # noqa: E402

BUCKET = "bench-payloads"


class Throttle:
    """A TCP forwarder on loopback to `target` ("host:port") passing at most `rate` bytes a second
    each way on each connection: S3 a network away instead of on loopback."""

    def __init__(self, target, rate):
        host, port = target.rsplit(":", 1)
        self.target, self.rate = (host, int(port)), rate
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            client, _ = self.listener.accept()
            server = socket.create_connection(self.target)
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self.pump, args=(a, b), daemon=True).start()

    def pump(self, source, sink):
        free = time.perf_counter()
        try:
            while chunk := source.recv(64 << 10):
                # Rate shaping: the link is busy for this chunk's time at the rate, counted from when
                # it was last free (an idle pooled connection earns no burst); handing the chunk to
                # the receiver happens within that time, as a network's buffers would let it.
                free = max(free, time.perf_counter()) + len(chunk) / self.rate
                sink.sendall(chunk)
                time.sleep(max(0.0, free - time.perf_counter()))
            sink.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def post(url, body, namespace="bench", reads=None):
    """The answer's body; with `reads`, appends the time reading it took once its headers were in."""
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "X-Namespace": namespace})
    with urllib.request.urlopen(request, timeout=120) as answer:
        started = time.perf_counter()
        data = answer.read()
        if reads is not None:
            reads.append(time.perf_counter() - started)
        return data


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--tcodec", default=str(ROOT / "target/debug/tcodec"))
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--size", type=int, default=5 << 20, help="random bytes in the document")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--s3-mbps", type=float,
                        help="reach S3 (the bare GET and the codec server alike) through a forwarder passing at "
                             "most this many MB/s per connection, as over a network")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.size = 2, 256 << 10
    import boto3

    work = Path(tempfile.mkdtemp(prefix="tcodec-storage-bench-"))
    procs = []
    try:
        moto, s3_port = serve_on_free_port(
            "moto_server", work / "moto.log",
            lambda port: [str(ROOT / ".venv/bin/moto_server"), "-H", "127.0.0.1", "-p", str(port)], cwd=work)
        procs.append(moto)
        endpoint = f"http://127.0.0.1:{s3_port}"
        if args.s3_mbps:
            endpoint = f"http://127.0.0.1:{Throttle(f'127.0.0.1:{s3_port}', args.s3_mbps * 1e6).port}"
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                          aws_secret_access_key="testing")
        s3.create_bucket(Bucket=BUCKET)

        master = work / "master.key"
        master.write_text(os.urandom(32).hex())
        master.chmod(0o600)
        keyring = work / "keyring.json"
        env = {"PATH": os.environ["PATH"], "TCODEC_KEYRING": str(keyring), "TCODEC_MASTER_KEY_FILE": str(master)}
        subprocess.run([args.tcodec, "keys", "init", "--name", "bench", "--kek", "local"], env=env, check=True,
                       capture_output=True)
        config = work / "tcodec.toml"

        def serve(port):
            config.write_text(
                f'listen = "127.0.0.1:{port}"\n[log]\nformat = "json"\n[kek]\nmaster_key_file = "{master}"\n'
                f'[limits]\nmax_body_bytes = 16777216\n'
                f'[namespaces.bench]\nkeyring = "{keyring}"\n'
                f'[namespaces.bench.storage]\nbucket = "{BUCKET}"\nendpoint = "{endpoint}"\nregion = "us-east-1"\n'
                f'max_object_bytes = 16777216\n')
            return [args.tcodec, "serve", "--config", str(config)]

        server, port = serve_on_free_port(
            "tcodec serve", work / "serve.log", serve,
            env={**env, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                 "AWS_EC2_METADATA_DISABLED": "true"})
        procs.append(server)
        url = f"http://127.0.0.1:{port}"

        # A document of random bytes (as a scan is): compression leaves it about as large.
        document = base64.b64encode(os.urandom(args.size)).decode()
        payload = {"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                   "data": base64.b64encode(json.dumps(document).encode()).decode()}
        [reference] = json.loads(post(url + "/encode", json.dumps({"payloads": [payload]}).encode()))["payloads"]
        claim = json.loads(base64.b64decode(reference["data"]))["claimData"]
        # A presigned GET: the same urllib client as /download, and a signed request.
        object_url = s3.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": claim["key"]},
                                               ExpiresIn=3600)
        object_size = int(reference["externalPayloads"][0]["sizeBytes"])
        body = json.dumps({"payloads": [reference]}).encode()

        def fetch_alone():
            with urllib.request.urlopen(object_url, timeout=120) as answer:
                return len(answer.read())

        reads = []

        def download():
            # The whole answer received, as the S3 GET's; parsing it is the client's business.
            # Also timed: reading the body once the headers are in (the server has it all by then).
            return len(post(url + "/download", body, reads=reads))

        def hwm_mib():
            status = Path(f"/proc/{server.pid}/status").read_text()
            return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024

        started_mib = hwm_mib()
        # Both work, and /download gives back the document.
        assert fetch_alone() == object_size
        [decoded] = json.loads(post(url + "/download", body))["payloads"]
        assert json.loads(base64.b64decode(decoded["data"])) == document
        one_mib = hwm_mib()

        times = {"s3": [], "download": []}
        for _ in range(args.rounds):
            for name, call in (("s3", fetch_alone), ("download", download)):
                start = time.perf_counter()
                call()
                times[name].append(time.perf_counter() - start)
        s3_ms = statistics.median(times["s3"]) * 1e3
        dl_ms = statistics.median(times["download"]) * 1e3
        print(f"object {object_size / 2**20:.2f} MiB (sealed), rounds {args.rounds}, alternating")
        print(f"S3 GET alone      median {s3_ms:8.1f} ms  (min {min(times['s3']) * 1e3:.1f})")
        print(f"/download         median {dl_ms:8.1f} ms  (min {min(times['download']) * 1e3:.1f})")
        print(f"ratio /download : S3   {dl_ms / s3_ms:.2f}x   (target <= 1.2x)")
        read_ms = statistics.median(reads) * 1e3
        answer_size = download()
        print(f"  the answer: {answer_size / 2**20:.2f} MiB ({answer_size / object_size:.2f}x the object), read in "
              f"{read_ms:.1f} ms once its headers are in; a server that only fetched the object and sent this answer "
              f"would take >= {s3_ms + read_ms:.1f} ms, {(s3_ms + read_ms) / s3_ms:.2f}x")
        # The server's own account (its audit lines): the S3 fetch inside /download, and the whole request.
        audit = [json.loads(line) for line in (work / "serve.log").read_text().splitlines() if '"tcodec::audit"' in line]
        fetches = [a["latency_ms"] for a in audit if a.get("operation") == "fetch" and a.get("status", 200) == 200]
        requests = [a["latency_ms"] for a in audit if a.get("endpoint") == "download" and "operation" not in a]
        print(f"  in the server: S3 fetch median {statistics.median(fetches):.1f} ms of "
              f"{statistics.median(requests):.1f} ms per /download request")
        print(f"codec server peak RSS (VmHWM): {started_mib:.1f} MiB after /encode, {one_mib:.1f} MiB after one "
              f"/download, {hwm_mib():.1f} MiB after {args.rounds + 1}; the object is {object_size / 2**20:.1f} MiB")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=30)
        subprocess.run(["rm", "-rf", str(work)])


if __name__ == "__main__":
    main()
