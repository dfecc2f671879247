#!/usr/bin/env python3
"""Generates tcodec's test vectors from an implementation independent of the Rust code.

This is a second implementation of FORMAT.md, written only from the spec and the
`cryptography` package's AES and AES-GCM primitives, plus the official Temporal Python
SDK's `Payload` message. The Rust tests decode every vector it writes and re-seal the
"ok" ones byte for byte, so the two implementations must agree.

    generate.py            rewrite format-v1.json, legacy.json and temporal-proxy.json
    generate.py --check    fail if regenerating would change them

Legacy vectors reproduce the official samples' codecs exactly: `binary/encrypted`
(12-byte nonce, AES-256-GCM of the serialized Payload, no AAD) and Go's `binary/zlib`;
temporal-proxy vectors its `binary/encrypted` with a KMS-wrapped data key.
"""

import argparse
import json
import sys
import zlib
from pathlib import Path

import zstandard
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio.api.common.v1 import Payload

HERE = Path(__file__).resolve().parent


# --- XAES-256-GCM (c2sp.org/XAES-256-GCM) ---------------------------------------------


def _aes_block(key: bytes, block: bytes) -> bytes:
    enc = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return enc.update(block) + enc.finalize()


def _xaes_derive(key: bytes, nonce: bytes) -> bytes:
    assert len(key) == 32 and len(nonce) == 24
    l_block = int.from_bytes(_aes_block(key, bytes(16)), "big")
    k1 = (l_block << 1) & ((1 << 128) - 1)
    if l_block >> 127:
        k1 ^= 0x87
    k1 = k1.to_bytes(16, "big")
    m1 = b"\x00\x01X\x00" + nonce[:12]
    m2 = b"\x00\x02X\x00" + nonce[:12]
    xor = lambda a, b: bytes(x ^ y for x, y in zip(a, b))  # noqa: E731
    return _aes_block(key, xor(m1, k1)) + _aes_block(key, xor(m2, k1))


def xaes_seal(key: bytes, nonce: bytes, plaintext: bytes, aad: bytes) -> bytes:
    return AESGCM(_xaes_derive(key, nonce)).encrypt(nonce[12:], plaintext, aad)


def _check_xaes_against_spec() -> None:
    ok1 = xaes_seal(b"\x01" * 32, b"ABCDEFGHIJKLMNOPQRSTUVWX", b"XAES-256-GCM", b"")
    assert ok1.hex() == "ce546ef63c9cc60765923609b33a9a1974e96e52daf2fcf7075e2271", ok1.hex()
    ok2 = xaes_seal(
        b"\x03" * 32, b"ABCDEFGHIJKLMNOPQRSTUVWX", b"XAES-256-GCM", b"c2sp.org/XAES-256-GCM"
    )
    assert ok2.hex() == "986ec1832593df5443a179437fd083bf3fdb41abd740a21f71eb769d", ok2.hex()


# --- tcodec v1 ---------------------------------------------------------------------------

VERSION = 1
ALG_XAES_256_GCM = 1
FLAG_ZSTD = 1


def header(key_id: str, zstd: bool, version: int = VERSION) -> bytes:
    kid = key_id.encode("ascii")
    return bytes([version, ALG_XAES_256_GCM, FLAG_ZSTD if zstd else 0, len(kid)]) + kid


def serialize(payload: Payload) -> bytes:
    # Deterministic: map entries sorted by key, as the Rust side writes them.
    return payload.SerializeToString(deterministic=True)


def tcodec_seal(key: bytes, key_id: str, nonce: bytes, plaintext: bytes, zstd: bool) -> bytes:
    hdr = header(key_id, zstd)
    return hdr + nonce + xaes_seal(key, nonce, plaintext, hdr)


def inner(encoding: str, data: bytes, **extra: bytes) -> Payload:
    meta = {"encoding": encoding.encode()}
    meta.update(extra)
    return Payload(metadata=meta, data=data)


def payload_json(p: Payload) -> dict:
    return {
        "metadata": {k: p.metadata[k].hex() for k in sorted(p.metadata)},
        "data": p.data.hex(),
    }


KEY_A = bytes(range(32))
KEY_B = bytes(range(32, 64))


def format_vectors() -> list:
    out = []

    def vector(name, expect, key_id, key, nonce, inner_payload, zstd, mutate=None, decrypt_key=None):
        serialized = serialize(inner_payload)
        plaintext = serialized
        if zstd:
            plaintext = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(serialized)
            assert len(plaintext) < len(serialized)
        data = tcodec_seal(key, key_id, nonce, plaintext, zstd)
        metadata = {"encoding": b"binary/tcodec", "tcodec-key-id": key_id.encode()}
        if mutate:
            data, metadata = mutate(bytearray(data), dict(metadata))
        out.append(
            {
                "name": name,
                "expect": expect,
                "key_id": key_id,
                "key": (decrypt_key or key).hex(),
                "nonce": nonce.hex(),
                "inner": payload_json(inner_payload),
                "inner_serialized": serialized.hex(),
                "zstd": zstd,
                "plaintext": plaintext.hex(),
                "payload": {
                    "metadata": {k: v.hex() for k, v in sorted(metadata.items())},
                    "data": bytes(data).hex(),
                },
            }
        )

    json_in = inner("json/plain", b'{"name":"Ada Lovelace","card":"4111111111111111"}')
    nonce1 = bytes(range(100, 124))
    vector("small json, uncompressed", "ok", "k1", KEY_A, nonce1, json_in, False)
    vector(
        "empty data, extra metadata",
        "ok",
        "2026-11-24.1",
        KEY_B,
        bytes(24),
        inner("binary/null", b"", messageType=b"temporal.api.Example"),
        False,
    )
    big = inner(
        "json/plain",
        json.dumps([{"customer": i, "address": "1 Infinite Loop, Cupertino"} for i in range(40)]).encode(),
    )
    vector("compressible json, zstd", "ok", "k2", KEY_A, bytes(range(24)), big, True)

    def flip(i):
        def m(d, meta):
            d[i] ^= 0x01
            return d, meta
        return m

    hdr_len = len(header("k1", False))
    vector("tampered ciphertext", "tampered", "k1", KEY_A, nonce1, json_in, False, flip(hdr_len + 24 + 3))
    vector("tampered tag", "tampered", "k1", KEY_A, nonce1, json_in, False, flip(-1))
    vector("tampered nonce", "tampered", "k1", KEY_A, nonce1, json_in, False, flip(hdr_len + 5))
    vector("wrong key", "wrong_key", "k1", KEY_A, nonce1, json_in, False, decrypt_key=KEY_B)

    def set_flag(d, meta):
        d[2] = FLAG_ZSTD  # claims compression: header is AAD, so authentication fails
        return d, meta

    vector("compression flag flipped", "wrong_aad", "k1", KEY_A, nonce1, json_in, False, set_flag)

    def rename_key(d, meta):
        # Same length id, same key material: only the AAD differs.
        d[4:6] = b"k9"
        meta["tcodec-key-id"] = b"k9"
        return d, meta

    vector("key id swapped (same key bytes)", "wrong_aad", "k1", KEY_A, nonce1, json_in, False, rename_key)

    def meta_id(d, meta):
        meta["tcodec-key-id"] = b"k2"
        return d, meta

    vector("metadata key id differs from header", "malformed", "k1", KEY_A, nonce1, json_in, False, meta_id)

    def extra_meta(d, meta):
        meta["note"] = b"added by someone"
        return d, meta

    vector("unexpected metadata", "malformed", "k1", KEY_A, nonce1, json_in, False, extra_meta)

    def truncate(d, meta):
        return d[: hdr_len + 24 + 15], meta

    vector("truncated", "truncated", "k1", KEY_A, nonce1, json_in, False, truncate)

    def version2(d, meta):
        d[0] = 2
        return d, meta

    vector("unknown version", "unsupported_version", "k1", KEY_A, nonce1, json_in, False, version2)
    return out


def legacy_vectors() -> list:
    out = []
    key = bytes(range(0x40, 0x60))
    key_id = "test-key-id"

    def encrypted(p: Payload, nonce: bytes, k: bytes = key, named: str = key_id) -> Payload:
        # The samples' EncryptionCodec.encode, with the nonce fixed for reproducibility.
        data = nonce + AESGCM(k).encrypt(nonce, p.SerializeToString(deterministic=True), None)
        return Payload(
            metadata={"encoding": b"binary/encrypted", "encryption-key-id": named.encode()}, data=data
        )

    def zlibbed(p: Payload) -> Payload:
        # Go's ZlibCodec.Encode.
        return Payload(metadata={"encoding": b"binary/zlib"}, data=zlib.compress(p.SerializeToString(deterministic=True)))

    plain = inner("json/plain", b'"Hello, Temporal!"')
    nonce = bytes(range(12))

    def add(name, expect, payload, decoded, k=key):
        out.append(
            {
                "name": name,
                "expect": expect,
                "key_id": key_id,
                "key": k.hex(),
                "payload": payload_json(payload),
                "decoded": payload_json(decoded),
            }
        )

    add("samples encryption codec", "ok", encrypted(plain, nonce), plain)
    add("go zlib codec", "ok", zlibbed(plain), plain)
    add("zlib then encryption (go samples' compress option)", "ok", encrypted(zlibbed(plain), nonce), plain)
    add("legacy wrong key", "wrong_key", encrypted(plain, nonce), plain, k=bytes(32))
    tampered = encrypted(plain, nonce)
    tampered.data = tampered.data[:-1] + bytes([tampered.data[-1] ^ 0x80])
    add("legacy tampered tag", "tampered", tampered, plain)
    truncated = encrypted(plain, nonce)
    truncated.data = truncated.data[:27]
    add("legacy truncated (shorter than nonce and tag)", "truncated", truncated, plain)
    extra = encrypted(plain, nonce)
    extra.metadata["encryption-algorithm"] = b"AES-256-GCM"
    add("legacy with metadata the format lacks", "unexpected_metadata", extra, plain)
    missing = encrypted(plain, nonce)
    del missing.metadata["encryption-key-id"]
    add("legacy without its encryption-key-id", "missing_key_id", missing, plain)
    add("legacy under a key id the keyring lacks", "unknown_key", encrypted(plain, nonce, named="retired-2023"), plain)
    return out


def proxy_vectors() -> list:
    """temporal-proxy's payloads (its internal/proxy/encryption.go and pkg/crypto/dek.go, as
    published): metadata encoding=binary/encrypted, encryption-key-id=<KEK URI>,
    encryption-dek=<base64 KMS ciphertext of the data key>; data = 12-byte nonce || AES-256-GCM
    of the serialized Payload (no AAD) under the data key. The KMS wrapping needs a live KMS, so
    a vector gives the data key (`dek`) and the test wraps it with the KMS it runs against, under
    the allowed KEK or (`kek: "not_allowed"`) under another, then adds both metadata entries."""
    out = []
    dek = bytes(range(0x80, 0xA0))
    other = bytes(range(0xA0, 0xC0))
    plain = inner("json/plain", b'{"customer":"Ada Lovelace","card":"4111 1111 1111 1111"}')
    nonce = bytes(range(0x10, 0x1C))

    def sealed(k: bytes = dek) -> bytes:
        return nonce + AESGCM(k).encrypt(nonce, plain.SerializeToString(deterministic=True), None)

    def add(name, expect, data, kek="allowed", extra=None):
        metadata = {"encoding": b"binary/encrypted"}
        metadata.update(extra or {})
        out.append(
            {
                "name": name,
                "expect": expect,
                "dek": dek.hex(),
                "kek": kek,
                "payload": payload_json(Payload(metadata=metadata, data=data)),
                "decoded": payload_json(plain),
            }
        )

    add("temporal-proxy payload", "ok", sealed())
    flipped = bytearray(sealed())
    flipped[20] ^= 0x01
    add("temporal-proxy tampered ciphertext", "tampered", bytes(flipped))
    add("temporal-proxy data sealed under another data key", "wrong_key", sealed(other))
    add("temporal-proxy KEK the deployment does not allow", "unknown_kek", sealed(), kek="not_allowed")
    add("temporal-proxy truncated (shorter than nonce and tag)", "truncated", sealed()[:27])
    add("temporal-proxy with metadata the format lacks", "unexpected_metadata", sealed(),
        extra={"encryption-key-version": b"1"})
    return out


def local_kek_vectors() -> list:
    """The local master key's wrapping of data keys (keys/src/kek/local.rs)."""
    import hashlib

    master = bytes(range(0xA0, 0xC0))
    fingerprint = hashlib.sha256(b"tcodec local master key fingerprint v1\n" + master).digest()[:8].hex()

    def context(keyring: str, key_id: str) -> bytes:
        return f"tcodec:key-id={key_id}\ntcodec:keyring={keyring}\n".encode()

    def wrap(dek: bytes, keyring: str, key_id: str, nonce: bytes) -> bytes:
        aad = b"tcodec-dek-v1\n" + context(keyring, key_id)
        return b"\x01" + nonce + AESGCM(master).encrypt(nonce, dek, aad)

    dek = bytes(range(0x10, 0x30))
    nonce = bytes(range(0xF0, 0xFC))
    good = wrap(dek, "payments", "k1", nonce)
    out = []

    def add(name, expect, wrapped, keyring="payments", key_id="k1", fp=fingerprint):
        out.append(
            {
                "name": name,
                "expect": expect,
                "master_key": master.hex(),
                "fingerprint": fp,
                "keyring": keyring,
                "key_id": key_id,
                "dek": dek.hex(),
                "wrapped": wrapped.hex(),
            }
        )

    add("wrapped data key", "ok", good)
    add("other key id in the context", "wrong_context", good, key_id="k2")
    add("other keyring in the context", "wrong_context", good, keyring="billing")
    add("tampered tag", "tampered", good[:-1] + bytes([good[-1] ^ 1]))
    add("unknown wrapping version", "tampered", b"\x02" + good[1:])
    add("truncated", "tampered", good[:-3])
    add("keyring names another master key", "wrong_master_key", good, fp="0123456789abcdef")
    return out


def render(vectors: list, about: str) -> str:
    return json.dumps({"about": about, "vectors": vectors}, indent=2) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the files would change")
    args = ap.parse_args()
    _check_xaes_against_spec()
    files = {
        "format-v1.json": render(
            format_vectors(),
            "tcodec wire format v1 (FORMAT.md). Generated by generate.py; all bytes hex; "
            "metadata values hex. expect: ok | tampered | wrong_key | wrong_aad | malformed | "
            "truncated | unsupported_version.",
        ),
        "legacy.json": render(
            legacy_vectors(),
            "Official Temporal samples' binary/encrypted and binary/zlib payloads, made with "
            "Python cryptography and zlib by generate.py. expect: ok | wrong_key | tampered | "
            "truncated | unexpected_metadata | missing_key_id | unknown_key (the payload names a key other "
            "than key_id, which the test registers).",
        ),
        "temporal-proxy.json": render(
            proxy_vectors(),
            "temporal-proxy's binary/encrypted payloads, made with Python cryptography by "
            "generate.py. The test wraps `dek` with the KMS it runs against (kek: allowed | "
            "not_allowed) and adds encryption-key-id (the KEK's awskms:// URI) and encryption-dek. "
            "expect: ok | tampered | wrong_key | unknown_kek | truncated | unexpected_metadata.",
        ),
    }
    keys_dir = HERE.parent.parent.parent / "keys" / "tests" / "vectors"
    keys_dir.mkdir(parents=True, exist_ok=True)
    files[keys_dir / "local-kek.json"] = render(
        local_kek_vectors(),
        "Local master key wrapping of data keys (keys/src/kek/local.rs), made with Python "
        "cryptography by codec/tests/vectors/generate.py. expect: ok | wrong_context | tampered | "
        "wrong_master_key.",
    )
    stale = []
    for name, text in files.items():
        path = HERE / name
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(name)
        else:
            path.write_text(text)
            print(f"wrote {Path(path).resolve().relative_to(HERE.parent.parent.parent)}")
    if stale:
        print(f"stale vector files (run generate.py): {', '.join(map(str, stale))}", file=sys.stderr)
        return 1
    if args.check:
        print("vector files match their generator")
    return 0


if __name__ == "__main__":
    sys.exit(main())
