#!/usr/bin/env python3
"""Turns one criterion run of `benches/benches/codec.rs` into BENCHMARKS.md's tables.

Every ratio compares two benchmarks of the same run (criterion's median estimates),
so a noisy machine moves both sides together.

    cargo bench -p tcodec-benches --bench codec | tee target/codec-bench.log
    python3 benches/report.py target/criterion target/codec-bench.log
"""

import json
import re
import sys
from pathlib import Path


def load(root: Path) -> dict:
    out = {}
    for bench in root.rglob("new/benchmark.json"):
        meta = json.loads(bench.read_text())
        est = json.loads((bench.parent / "estimates.json").read_text())
        out[meta["full_id"]] = est["median"]["point_estimate"]  # nanoseconds
    return out


def mbps(size: int, ns: float) -> float:
    return size / ns * 1e9 / 1e6


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")
    log = Path(sys.argv[2]) if len(sys.argv) > 2 else None
    t = load(root)
    if not t:
        print(f"no criterion results under {root}", file=sys.stderr)
        return 1
    sizes = [(64, "64B"), (1024, "1KiB"), (65536, "64KiB"), (1 << 20, "1MiB")]
    for op, raw_name, ours in (
        ("seal", "raw-ring-aes256gcm", "tcodec-encode"),
        ("open", "raw-ring-aes256gcm", "tcodec-decode"),
        ("open", "raw-ring-aes256gcm-in-place", "tcodec-decode-owned"),
    ):
        print(f"\n**{op}: `{ours}` (compression off) vs `{raw_name}`**\n")
        print("| size | raw MB/s | tcodec MB/s | ratio (tcodec/raw) | overhead per payload |")
        print("|---|---:|---:|---:|---:|")
        for size, label in sizes:
            raw = t.get(f"{op}/{label}/{raw_name}")
            tc = t.get(f"{op}/{label}/{ours}")
            if raw is None or tc is None:
                continue
            print(
                f"| {label} | {mbps(size, raw):,.0f} | {mbps(size, tc):,.0f} | "
                f"{raw / tc:.2f} | {(tc - raw) / 1000:+.2f} µs |"
            )
    impls = [(size, label, t.get(f"aes-gcm/{label}/ring"), t.get(f"aes-gcm/{label}/rustcrypto-aes-gcm"))
             for size, label in sizes]
    if any(r and c for _, _, r, c in impls):
        print("\n**AES-256-GCM seal, key set up per message: `ring` vs RustCrypto `aes-gcm`**\n")
        print("| size | ring MB/s | aes-gcm MB/s | ratio (aes-gcm/ring) |")
        print("|---|---:|---:|---:|")
        for size, label, r, c in impls:
            if r and c:
                print(f"| {label} | {mbps(size, r):,.0f} | {mbps(size, c):,.0f} | {r / c:.2f} |")
    sizes_seen = {}
    if log and log.exists():
        for m in re.finditer(r"json-size records=(\d+) plain=(\d+) sealed=(\d+)", log.read_text()):
            sizes_seen[m.group(2)] = (int(m.group(1)), int(m.group(2)), int(m.group(3)))
    print("\n**Realistic JSON (order records), compression on (zstd level 3) vs off**\n")
    print("| plain size | stored size (zstd) | size ratio | encode zstd/off time | decode zstd/off time | encode MB/s (zstd) | decode MB/s (zstd) |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for key in sorted({k.split("/")[-1] for k in t if k.startswith("json/")}, key=int):
        size = int(key)
        enc_on, enc_off = t.get(f"json/encode-zstd/{key}"), t.get(f"json/encode-off/{key}")
        dec_on, dec_off = t.get(f"json/decode-zstd/{key}"), t.get(f"json/decode-off/{key}")
        stored = sizes_seen.get(key, (0, size, 0))[2]
        ratio = f"{stored / size:.2f}" if stored else "n/a"
        print(
            f"| {size:,} B | {stored:,} B | {ratio} | {enc_on / enc_off:.2f}× | {dec_on / dec_off:.2f}× | "
            f"{mbps(size, enc_on):,.0f} | {mbps(size, dec_on):,.0f} |"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
