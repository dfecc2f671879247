"""Payloads per second of tcodec's Python PayloadCodec (`tcodec.temporal.PayloadCodec`, Rust
behind PyO3) against a pure-Python codec of the samples' encryption format (AES-256-GCM from
`cryptography`, written here as the Temporal samples write theirs), in one run, alternating.

    .venv/bin/python benches/bindings/python_codec.py --keyring K --master-key-file M [--quick] [--threads N] [--inline-bytes N]

Sizes 1 KiB and 64 KiB, batches of 1 and 100, JSON payloads (what the SDK's default converter
makes; compressible like real records) and random bytes (incompressible). Each cell runs the
codecs (tcodec also with compression off) in alternating rounds and reports medians; `--quick` is the smoke run of scripts/test.sh
(one short round: it checks the bench works, its numbers mean nothing). A last table, alone
with `--floor`, puts zstd's compression rate at several levels beside AES-256-GCM's.
`--inline-bytes` sets the PayloadCodec's bound for running a batch on the event loop's thread
(0: every batch through the executor).
"""

import argparse
import asyncio
import json
import os
import random
import statistics
import time

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload
import temporalio.converter

import tcodec


class SamplesCodec(temporalio.converter.PayloadCodec):
    """The samples' format: data = 12-byte nonce || AES-256-GCM(serialized payload), no AAD."""

    def __init__(self, key: bytes, key_id: str) -> None:
        self.aes = AESGCM(key)
        self.key_id = key_id.encode()

    async def encode(self, payloads):
        out = []
        for p in payloads:
            nonce = os.urandom(12)
            out.append(Payload(metadata={"encoding": b"binary/encrypted", "encryption-key-id": self.key_id},
                               data=nonce + self.aes.encrypt(nonce, p.SerializeToString(), None)))
        return out

    async def decode(self, payloads):
        out = []
        for p in payloads:
            if p.metadata.get("encoding") != b"binary/encrypted":
                out.append(p)
                continue
            if p.metadata.get("encryption-key-id") != self.key_id:
                raise ValueError("unknown key id")
            out.append(Payload.FromString(self.aes.decrypt(p.data[:12], p.data[12:], None)))
        return out


def json_payload(size: int, rng: random.Random) -> Payload:
    records, text = [], "[]"
    while len(text) < size:
        records.append({"order_id": f"ord-{rng.getrandbits(48):012x}", "customer": f"cust-{rng.randrange(10**6)}",
                        "amount_cents": rng.randrange(100, 10**6), "currency": rng.choice(["EUR", "USD", "GBP"]),
                        "status": rng.choice(["paid", "pending", "refunded"]), "sku": f"SKU-{rng.randrange(10**5)}"})
        text = json.dumps(records)
    return temporalio.converter.DataConverter.default.payload_converter.to_payloads([text[:size]])[0]


def random_payload(size: int, rng: random.Random) -> Payload:
    return Payload(metadata={"encoding": b"binary/plain"}, data=rng.randbytes(size))


async def rate(codec, batch, op: str, seconds: float) -> float:
    """Payloads per second of `op` ("encode" or "decode") over `batch` for about `seconds`."""
    sealed = await codec.encode(batch)
    work = (lambda: codec.encode(batch)) if op == "encode" else (lambda: codec.decode(sealed))
    done, start = 0, time.perf_counter()
    while True:
        await work()
        done += len(batch)
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return done / elapsed


async def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--keyring", required=True)
    ap.add_argument("--master-key-file", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--floor", action="store_true", help="only the compression-against-encryption table")
    ap.add_argument("--threads", type=int, help="tcodec's threads a batch (default: the package's, the cores)")
    ap.add_argument("--inline-bytes", type=int, default=tcodec.temporal.INLINE_BYTES,
                    help="largest batch run on the event loop's thread (default: the package's)")
    args = ap.parse_args()
    rounds, seconds = (1, 0.05) if args.quick else (5, 0.6)
    # glibc raises its mmap and trim thresholds the first time a large block is freed, and
    # from then on small allocations stop faulting pages in and out (BENCHMARKS.md measured
    # both codecs twice as fast at 100 x 64 KiB). A long-running worker has freed one long
    # ago; free one now, so every row runs in that state whichever codec frees one first.
    block = bytearray(16 << 20)
    del block
    if args.floor:
        floor(random.Random(7), seconds)
        return
    keyring = tcodec.Keyring.open(args.keyring, master_key_file=args.master_key_file)
    ours = tcodec.temporal.PayloadCodec(tcodec.Codec(keyring, threads=args.threads),
                                        inline_bytes=args.inline_bytes)
    plain = tcodec.temporal.PayloadCodec(tcodec.Codec(keyring, compression=False, threads=args.threads),
                                         inline_bytes=args.inline_bytes)
    samples = SamplesCodec(os.urandom(32), "bench-key")
    rng = random.Random(7)
    print("| data | size | batch | op | samples (Python) payloads/s | tcodec payloads/s | ratio | "
          "tcodec, compression off | ratio |")
    print("|---|---:|---:|---|---:|---:|---:|---:|---:|")
    for kind, make in (("JSON", json_payload), ("random", random_payload)):
        for size in (1024, 64 * 1024):
            for n in (1, 100):
                batch = [make(size, rng) for _ in range(n)]
                assert await ours.decode(await ours.encode(batch)) == batch
                assert await samples.decode(await samples.encode(batch)) == batch
                for op in ("encode", "decode"):
                    theirs, mine, off = [], [], []
                    for _ in range(rounds):
                        theirs.append(await rate(samples, batch, op, seconds))
                        mine.append(await rate(ours, batch, op, seconds))
                        off.append(await rate(plain, batch, op, seconds))
                    a, b, c = (statistics.median(x) for x in (theirs, mine, off))
                    print(f"| {kind} | {size // 1024} KiB | {n} | {op} | {a:,.0f} | {b:,.0f} | {b / a:.2f} | "
                          f"{c:,.0f} | {c / a:.2f} |", flush=True)


    # What compression alone costs (the same zstd library, level 3, tcodec's default): the floor
    # under tcodec's rows for compressible data, whatever the rest of the codec does.

    floor(rng, seconds)


def floor(rng: random.Random, seconds: float) -> None:
    """Compression alone against encryption alone, on one core, at each size: AES-256-GCM from
    `cryptography` (the samples' codec's whole cryptographic work) and zstd (the `zstandard`
    package: the C library tcodec uses) at tcodec's level 3, at level 1 and at zstd's fast
    (negative) levels, with the share of its input each level's output keeps. A codec that
    compresses cannot encode faster than its compressor."""
    import zstandard

    def rate(work) -> float:
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            work()
            done += 1
        return done / (time.perf_counter() - start)

    levels = (3, 1, -1, -5, -20)
    aes = AESGCM(os.urandom(32))
    print()
    print("| JSON | AES-256-GCM alone, payloads/s | "
          + " | ".join(f"zstd {level} compress, payloads/s (size kept)" for level in levels)
          + " | zstd 3 decompress, payloads/s |")
    print("|---|---:|" + "---:|" * (len(levels) + 1))
    for size in (1024, 64 * 1024):
        data = json_payload(size, rng).SerializeToString()
        cells = [f"{rate(lambda: aes.encrypt(os.urandom(12), data, None)):,.0f}"]
        for level in levels:
            packer = zstandard.ZstdCompressor(level=level)
            kept = len(packer.compress(data)) / len(data)
            cells.append(f"{rate(lambda: packer.compress(data)):,.0f} ({kept:.0%})")
        packed = zstandard.ZstdCompressor(level=3).compress(data)
        unpacker = zstandard.ZstdDecompressor()
        cells.append(f"{rate(lambda: unpacker.decompress(packed)):,.0f}")
        print(f"| {size // 1024} KiB | " + " | ".join(cells) + " |")


asyncio.run(main())
