#!/usr/bin/env python3
"""Prints a workflow history as the Temporal server stores it beside the same
history decoded through the tcodec codec server.

    demo_show.py RAW.json DECODED.json

Both files are `temporal workflow show --output json` output; DECODED was made
with --codec-endpoint. Each payload is one row: where it is, what the server
holds (the start of it), and what an authorized reader sees.
"""

import base64
import json
import sys
import textwrap


def payloads(node, path=""):
    """Yields (path, payload) for every payload in a history."""
    if isinstance(node, dict):
        if "metadata" in node and isinstance(node.get("metadata"), dict) and "encoding" in node["metadata"]:
            yield path, node
            return
        for key, value in node.items():
            yield from payloads(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from payloads(value, f"{path}[{i}]")


def label(event, path):
    kind = event["eventType"].removeprefix("EVENT_TYPE_").lower()
    field = path.split(".")[1] if "." in path else path
    field = field.split("[")[0]
    return f"{event['eventId']:>2} {kind} {field}"


def text(payload):
    meta = {k: base64.b64decode(v).decode(errors="replace") for k, v in payload["metadata"].items()}
    data = base64.b64decode(payload.get("data", "")).decode(errors="replace")
    return meta, data


def main():
    raw = json.load(open(sys.argv[1]))["events"]
    decoded = json.load(open(sys.argv[2]))["events"]
    width = 58
    print(f"{'EVENT':<44} {'WHAT THE TEMPORAL SERVER STORES':<{width}} WHAT AN AUTHORIZED READER SEES")
    for r_event, d_event in zip(raw, decoded):
        r_list = list(payloads(r_event))
        d_list = list(payloads(d_event))
        for (path, r_payload), (_, d_payload) in zip(r_list, d_list):
            r_meta, _ = text(r_payload)
            stored = f"{r_meta.get('encoding')} key={r_meta.get('tcodec-key-id', '-')} {r_payload.get('data', '')[:18]}…"
            d_meta, d_data = text(d_payload)
            seen = textwrap.shorten(f"{d_meta.get('encoding')} {d_data}", 110)
            print(f"{label(r_event, path):<44} {stored:<{width}} {seen}")


if __name__ == "__main__":
    main()
