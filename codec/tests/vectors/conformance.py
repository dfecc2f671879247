#!/usr/bin/env python3
"""Runs FORMAT.md's vectors (format-v1.json) against any decoder: the conformance runner.

    conformance.py [--vectors FILE] -- DECODER COMMAND...

The decoder under test is a program that reads one JSON request per line on stdin and
writes one JSON answer per line on stdout, in order (README.md in this folder):

    request  {"name": ..., "keyring": [{"id": "k1", "key": "<hex>"}], "max_decoded_size": N,
              "payload": {"metadata": {"<key>": "<hex>"}, "data": "<hex>",
                          "external_payloads": [{"size_bytes": N}]}}
    answer   {"payload": {<the decoded payload, same shape>}}  or  {"error": "<class>"}

Every vector must come back as labelled: the decoded payload equal to the vector's `inner`,
or the error class equal to its `error`. Uses the standard library only.
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def normalized(payload: dict) -> dict:
    return {
        "metadata": {k: v.lower() for k, v in payload.get("metadata", {}).items()},
        "data": payload.get("data", "").lower(),
        "external_payloads": payload.get("external_payloads", []),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", default=str(HERE / "format-v1.json"))
    ap.add_argument("decoder", nargs=argparse.REMAINDER, help="-- then the decoder's command")
    args = ap.parse_args()
    command = args.decoder[1:] if args.decoder[:1] == ["--"] else args.decoder
    if not command:
        ap.error("name the decoder's command after --")
    vectors = json.loads(Path(args.vectors).read_text())["vectors"]
    proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    failures = []
    classes = set()
    for v in vectors:
        request = {k: v[k] for k in ("name", "keyring", "max_decoded_size", "payload")}
        proc.stdin.write(json.dumps(request) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            failures.append(f"{v['name']}: the decoder gave no answer")
            break
        answer = json.loads(line)
        if v["error"] is None:
            got = answer.get("payload")
            if got is None or normalized(got) != normalized(v["inner"]):
                failures.append(f"{v['name']}: expected the inner payload, got {answer}")
        else:
            classes.add(v["error"])
            if answer.get("error") != v["error"]:
                failures.append(f"{v['name']}: expected error {v['error']}, got {answer}")
    proc.stdin.close()
    proc.wait(timeout=60)
    for f in failures:
        print(f"FAIL {f}", file=sys.stderr)
    ok = len(vectors) - len(failures)
    print(f"{ok}/{len(vectors)} vectors as labelled ({len(classes)} error classes) by {' '.join(command)}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
