#!/usr/bin/env python3
"""Generates tcodec's test vectors from an implementation independent of the Rust code.

This is a second implementation of FORMAT.md, written only from the spec and the
`cryptography` package's AES and AES-GCM primitives, plus the official Temporal Python
SDK's `Payload` message. The Rust tests decode every vector it writes and re-seal the
"ok" ones byte for byte, so the two implementations must agree.

    generate.py            rewrite format-v1.json, legacy.json and temporal-proxy.json
    generate.py --check    fail if regenerating would change them
    generate.py --decode   a decoder written from FORMAT.md, for conformance.py

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


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field(tag: int, value: bytes) -> bytes:
    return _varint(tag << 3 | 2) + _varint(len(value)) + value


def serialize(payload: Payload) -> bytes:
    """FORMAT.md section 3.1, written out by hand rather than left to a protobuf library:
    metadata entries sorted by key bytes, each entry's key and value omitted when empty,
    `data` omitted when empty, then each ExternalPayloadDetails."""
    out = b""
    for key in sorted(payload.metadata, key=lambda k: k.encode("utf-8")):
        value = payload.metadata[key]
        entry = (_field(1, key.encode("utf-8")) if key else b"") + (_field(2, value) if value else b"")
        out += _field(1, entry)
    if payload.data:
        out += _field(2, payload.data)
    for ext in payload.external_payloads:
        out += _field(3, _varint(1 << 3) + _varint(ext.size_bytes) if ext.size_bytes else b"")
    # Any protobuf parser reads it back as the same message.
    assert Payload.FromString(out) == payload
    return out


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


MAX_DECODED_SIZE = 64 * 1024 * 1024  # FORMAT.md section 4, the default limit


def _zstd_frame(content: bytes, claimed: int, dict_id: int = 0) -> bytes:
    """A hand-made zstd frame (RFC 8878 section 3.1.1): single segment, a 4-byte
    Frame_Content_Size of `claimed`, a 1-byte Dictionary_ID if `dict_id`, one raw last
    block holding `content`."""
    descriptor = 0b1010_0000 | (1 if dict_id else 0)  # FCS 4 bytes, single segment
    dict_field = bytes([dict_id]) if dict_id else b""
    block_header = (len(content) << 3 | 0b001).to_bytes(3, "little")  # raw block, last
    return (ZSTD_MAGIC + bytes([descriptor]) + dict_field + claimed.to_bytes(4, "little")
            + block_header + content)


ZSTD_MAGIC = bytes.fromhex("28b52ffd")


def format_vectors() -> list:
    """FORMAT.md's vectors: section 9 documents every field and the harness."""
    out = []

    def vector(name, expect, key_id, key, nonce, inner_payload, zstd=False, mutate=None,
               keyring=None, error=None, plaintext=None, max_size=None, outer_ext=0, layers=1):
        serialized = serialize(inner_payload)
        if plaintext is None:
            plaintext = serialized
            if zstd:
                plaintext = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(serialized)
                assert len(plaintext) < len(serialized)
        data = tcodec_seal(key, key_id, nonce, plaintext, zstd)
        metadata = {"encoding": b"binary/tcodec", "tcodec-key-id": key_id.encode()}
        for _ in range(layers - 1):
            # Seal the sealed payload again, uncompressed, under the same key and nonce.
            wrapped = Payload(metadata=metadata, data=data)
            data = tcodec_seal(key, key_id, nonce, serialize(wrapped), False)
        if mutate:
            data, metadata = mutate(bytearray(data), dict(metadata))
        vec = {
            "name": name,
            "expect": expect,
            "error": error,
            "keyring": [{"id": i, "key": k.hex()} for i, k in (keyring if keyring is not None else [(key_id, key)])],
            "max_decoded_size": max_size or MAX_DECODED_SIZE,
            "key_id": key_id,
            "key": key.hex(),
            "nonce": nonce.hex(),
            "inner": payload_to_json(inner_payload),
            "inner_serialized": serialized.hex(),
            "zstd": zstd,
            "layers": layers,
            "plaintext": plaintext.hex(),
            "payload": {
                "metadata": {k: v.hex() for k, v in sorted(metadata.items())},
                "data": bytes(data).hex(),
            },
        }
        if outer_ext:
            vec["payload"]["external_payloads"] = [{"size_bytes": outer_ext}]
        assert (expect == "ok") == (error is None), name
        out.append(vec)

    json_in = inner("json/plain", b'{"name":"Ada Lovelace","card":"4111111111111111"}')
    nonce1 = bytes(range(100, 124))
    vector("small json, uncompressed", "ok", "k1", KEY_A, nonce1, json_in)
    vector(
        "empty data, extra metadata",
        "ok",
        "2026-11-24.1",
        KEY_B,
        bytes(24),
        inner("binary/null", b"", messageType=b"temporal.api.Example"),
    )
    big = inner(
        "json/plain",
        json.dumps([{"customer": i, "address": "1 Infinite Loop, Cupertino"} for i in range(40)]).encode(),
    )
    vector("compressible json, zstd", "ok", "k2", KEY_A, bytes(range(24)), big, zstd=True)

    # --- what an encoder must reproduce: section 3.1's serialization -------------------------
    odd_keys = Payload(
        metadata={"encoding": b"json/plain", "": b"", "k": b"", "Z": b"1", "a": b"2",
                  "\u00e9": b"3", "\uff5e": b"4", "\U0001d11e": b"5"},
        data=b"",
    )
    vector("metadata keys in byte order, empty key, empty values, empty data", "ok", "k1",
           KEY_A, nonce1, odd_keys)
    carried = Payload(metadata={"encoding": b"json/plain"}, data=b"{}")
    carried.external_payloads.add(size_bytes=3_000_000)
    vector("inner external payload details are carried, sealed", "ok", "k1", KEY_A, nonce1, carried)
    # --- how strictly the inner payload is parsed -------------------------------------------
    vector("inner payload with an unknown field: ignored", "ok", "k1", KEY_A, nonce1, json_in,
           plaintext=serialize(json_in) + bytes([15 << 3]) + _varint(7))
    vector("inner payload with a metadata key twice: the last wins", "ok", "k1", KEY_A, nonce1,
           json_in, plaintext=_field(1, _field(1, b"encoding") + _field(2, b"stale")) + serialize(json_in))
    vector("inner payload not a protobuf message", "inner_payload", "k1", KEY_A, nonce1, json_in,
           plaintext=b"\xff\xff\xff\xff", error="inner_payload")
    vector("inner metadata key not UTF-8", "inner_payload", "k1", KEY_A, nonce1, json_in,
           plaintext=_field(1, _field(1, b"\xffkey") + _field(2, b"v")), error="inner_payload")
    # --- layers: at most four ------------------------------------------------------------
    vector("four nested layers", "ok", "k1", KEY_A, nonce1, json_in, layers=4)
    vector("five nested layers", "too_deep", "k1", KEY_A, nonce1, json_in, layers=5, error="too_deep")
    # --- the size limit is "larger than": equal passes ------------------------------------
    plain_len = len(serialize(json_in))
    vector("plaintext exactly at the size limit", "ok", "k1", KEY_A, nonce1, json_in, max_size=plain_len)
    vector("plaintext one byte over the size limit", "too_large", "k1", KEY_A, nonce1, json_in,
           max_size=plain_len - 1, error="too_large")
    big_len = len(serialize(big))
    vector("zstd content size exactly at the limit", "ok", "k2", KEY_A, bytes(range(24)), big,
           zstd=True, max_size=big_len)
    vector("zstd content size over the limit", "too_large", "k2", KEY_A, bytes(range(24)), big,
           zstd=True, max_size=big_len - 1, error="too_large")
    # --- zstd: exactly one standard frame, with its content size, nothing after it ---------
    body = serialize(json_in)
    frame = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(body)
    no_size = zstandard.ZstdCompressor(level=3, write_content_size=False).compress(body)
    with_dict = _zstd_frame(body, len(body), dict_id=7)
    skippable = bytes.fromhex("502a4d18") + (4).to_bytes(4, "little") + b"skip"
    for label, packed in [
        ("zstd frame without a content size", no_size),
        ("two zstd frames", frame + frame),
        ("zstd frame and a trailing byte", frame + b"\x00"),
        ("zstd skippable frame before the frame", skippable + frame),
        ("zstd frame naming a dictionary", with_dict),
        ("zstd content size larger than the frame's output", _zstd_frame(body, len(body) + 1)),
        ("zstd content size smaller than the frame's output", _zstd_frame(body, len(body) - 1)),
        ("zstd data corrupt", b"\x28\xb5\x2f\xfd" + b"\x00" * 12),
    ]:
        vector(label, "compression", "k1", KEY_A, nonce1, json_in, zstd=True, plaintext=packed,
               error="compression")
    vector("hand-made zstd frame, content size right", "ok", "k1", KEY_A, nonce1, json_in,
           zstd=True, plaintext=_zstd_frame(body, len(body)))

    def flip(i):
        def m(d, meta):
            d[i] ^= 0x01
            return d, meta
        return m

    hdr_len = len(header("k1", False))
    vector("tampered ciphertext", "tampered", "k1", KEY_A, nonce1, json_in, mutate=flip(hdr_len + 24 + 3),
           error="decrypt")
    vector("tampered tag", "tampered", "k1", KEY_A, nonce1, json_in, mutate=flip(-1), error="decrypt")
    vector("tampered nonce", "tampered", "k1", KEY_A, nonce1, json_in, mutate=flip(hdr_len + 5), error="decrypt")
    vector("wrong key", "wrong_key", "k1", KEY_A, nonce1, json_in, keyring=[("k1", KEY_B)], error="decrypt")

    def set_byte(i, value):
        def m(d, meta):
            d[i] = value
            return d, meta
        return m

    # The header is AAD: claiming compression fails authentication.
    vector("compression flag flipped", "wrong_aad", "k1", KEY_A, nonce1, json_in, mutate=set_byte(2, FLAG_ZSTD),
           error="decrypt")

    def rename_key(d, meta):
        # Same length id, same key material, registered under the new id: only the AAD differs.
        d[4:6] = b"k9"
        meta["tcodec-key-id"] = b"k9"
        return d, meta

    vector("key id swapped (same key bytes)", "wrong_aad", "k1", KEY_A, nonce1, json_in, mutate=rename_key,
           keyring=[("k9", KEY_A)], error="decrypt")
    vector("key the keyring lacks", "unknown_key", "k1", KEY_A, nonce1, json_in, keyring=[("k2", KEY_A)],
           error="unknown_key")

    def meta(**changes):
        def m(d, md):
            for k, v in changes.items():
                k = k.replace("_", "-")
                if v is None:
                    md.pop(k, None)
                else:
                    md[k] = v
            return d, md
        return m

    vector("metadata key id differs from header", "malformed", "k1", KEY_A, nonce1, json_in,
           mutate=meta(tcodec_key_id=b"k2"), error="key_id_mismatch")
    vector("metadata key id missing", "malformed", "k1", KEY_A, nonce1, json_in,
           mutate=meta(tcodec_key_id=None), error="key_id_mismatch")
    vector("unexpected metadata", "malformed", "k1", KEY_A, nonce1, json_in,
           mutate=meta(note=b"added by someone"), error="unexpected_metadata")
    vector("external payloads on the outer payload", "malformed", "k1", KEY_A, nonce1, json_in,
           outer_ext=1234, error="external_payloads")

    def truncate(n):
        def m(d, md):
            return d[:n], md
        return m

    vector("truncated", "truncated", "k1", KEY_A, nonce1, json_in, mutate=truncate(hdr_len + 24 + 15),
           error="truncated")
    for n in range(4):
        vector(f"data of {n} bytes", "truncated", "k1", KEY_A, nonce1, json_in, mutate=truncate(n),
               error="truncated")

    def version(v):
        return set_byte(0, v)

    vector("unknown version", "unsupported_version", "k1", KEY_A, nonce1, json_in, mutate=version(2),
           error="unsupported_version")
    vector("version 0", "unsupported_version", "k1", KEY_A, nonce1, json_in, mutate=version(0),
           error="unsupported_version")
    vector("unknown algorithm", "malformed", "k1", KEY_A, nonce1, json_in, mutate=set_byte(1, 2),
           error="unsupported_algorithm")
    vector("unknown flag bit 1", "malformed", "k1", KEY_A, nonce1, json_in, mutate=set_byte(2, 0x02),
           error="unknown_flags")
    vector("unknown flag bit 7", "malformed", "k1", KEY_A, nonce1, json_in, mutate=set_byte(2, 0x80),
           error="unknown_flags")

    def key_id_bytes(raw: bytes, length=None):
        def m(d, md):
            body = d[hdr_len:]
            new = d[:3] + bytes([len(raw) if length is None else length]) + raw + body
            return new, md
        return m

    vector("key id of length 0", "malformed", "k1", KEY_A, nonce1, json_in, mutate=key_id_bytes(b""),
           error="invalid_key_id")
    vector("key id of 65 bytes", "malformed", "k1", KEY_A, nonce1, json_in, mutate=key_id_bytes(b"k" * 65),
           error="invalid_key_id")
    vector("key id with a space", "malformed", "k1", KEY_A, nonce1, json_in, mutate=key_id_bytes(b"k 1"),
           error="invalid_key_id")
    vector("key id not UTF-8", "malformed", "k1", KEY_A, nonce1, json_in, mutate=key_id_bytes(b"k\xff"),
           error="invalid_key_id")

    # --- the order of the checks (FORMAT.md section 4): each vector breaks two rules ------
    def both(*ms):
        def m(d, md):
            for f in ms:
                d, md = f(d, md)
            return d, md
        return m

    vector("three bytes of a version 2 header: length first", "truncated", "k1", KEY_A, nonce1, json_in,
           mutate=both(version(2), truncate(3)), error="truncated")
    vector("version 2 with other metadata: version before metadata", "unsupported_version", "k1", KEY_A,
           nonce1, json_in, mutate=both(version(2), meta(tcodec_key_id=None, v2_key=b"x")),
           error="unsupported_version")
    vector("version 2 with external payloads: version before external payloads", "unsupported_version",
           "k1", KEY_A, nonce1, json_in, mutate=version(2), outer_ext=99, error="unsupported_version")
    vector("unknown algorithm and unknown flags: algorithm first", "malformed", "k1", KEY_A, nonce1,
           json_in, mutate=both(set_byte(1, 9), set_byte(2, 0x40)), error="unsupported_algorithm")
    vector("unknown flags and a key id of length 0: flags first", "malformed", "k1", KEY_A, nonce1,
           json_in, mutate=both(key_id_bytes(b""), set_byte(2, 0x04)), error="unknown_flags")
    vector("a 64-byte key id the data is too short for: length before key id", "truncated", "k1",
           KEY_A, nonce1, json_in, mutate=both(truncate(hdr_len + 24), key_id_bytes(b"\x00" * 2, length=64)),
           error="truncated")
    vector("key id with a space and external payloads: key id first", "malformed", "k1", KEY_A, nonce1,
           json_in, mutate=key_id_bytes(b"k 1"), outer_ext=5, error="invalid_key_id")
    vector("external payloads and other metadata: external payloads first", "malformed", "k1", KEY_A,
           nonce1, json_in, mutate=meta(note=b"x"), outer_ext=5, error="external_payloads")
    vector("other metadata and a key id mismatch: metadata keys first", "malformed", "k1", KEY_A,
           nonce1, json_in, mutate=meta(note=b"x", tcodec_key_id=b"k2"), error="unexpected_metadata")
    vector("key id mismatch and a key the keyring lacks: mismatch first", "malformed", "k1", KEY_A,
           nonce1, json_in, mutate=meta(tcodec_key_id=b"k2"), keyring=[], error="key_id_mismatch")
    vector("unknown key and tampered data: key first", "unknown_key", "k1", KEY_A, nonce1, json_in,
           mutate=flip(-1), keyring=[], error="unknown_key")
    vector("tampered data over the size limit: authentication first", "tampered", "k1", KEY_A, nonce1,
           json_in, mutate=flip(-1), max_size=1, error="decrypt")
    vector("corrupt zstd over the size limit: the frame's claim first", "too_large", "k1", KEY_A,
           nonce1, json_in, zstd=True, plaintext=_zstd_frame(b"\x00" * 8, 1000), max_size=100,
           error="too_large")
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


# --- a decoder, from FORMAT.md section 4 alone, for the conformance runner --------------


class DecodeError(Exception):
    """A decoding failure, by its class (FORMAT.md section 4.2)."""


KEY_ID_CHARS = set(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-")
MAX_LAYERS = 4


def xaes_open(key: bytes, nonce: bytes, sealed: bytes, aad: bytes) -> bytes:
    from cryptography.exceptions import InvalidTag

    try:
        return AESGCM(_xaes_derive(key, nonce)).decrypt(nonce[12:], sealed, aad)
    except InvalidTag:
        raise DecodeError("decrypt") from None


def zstd_open(packed: bytes, limit: int) -> bytes:
    """Section 4.3: exactly one standard frame with its content size, no dictionary."""
    if packed[:4] != ZSTD_MAGIC:
        raise DecodeError("compression")
    try:
        params = zstandard.get_frame_parameters(packed)
    except zstandard.ZstdError:
        raise DecodeError("compression") from None
    if params.content_size == zstandard.CONTENTSIZE_UNKNOWN or params.dict_id != 0:
        raise DecodeError("compression")
    if params.content_size > limit:
        raise DecodeError("too_large")
    obj = zstandard.ZstdDecompressor().decompressobj()
    try:
        out = obj.decompress(packed)
    except zstandard.ZstdError:
        raise DecodeError("compression") from None
    if not obj.eof or obj.unused_data or len(out) != params.content_size:
        raise DecodeError("compression")
    return out


def decode_payload(p: Payload, keyring: dict, limit: int) -> Payload:
    for depth in range(MAX_LAYERS + 1):
        if p.metadata.get("encoding") != b"binary/tcodec":
            return p
        if depth == MAX_LAYERS:
            raise DecodeError("too_deep")
        p = open_layer(p, keyring, limit)
    raise AssertionError("unreachable")


def open_layer(p: Payload, keyring: dict, limit: int) -> Payload:
    d = p.data
    if len(d) < 4:
        raise DecodeError("truncated")
    version, algorithm, flags, id_len = d[0], d[1], d[2], d[3]
    if version != VERSION:
        raise DecodeError("unsupported_version")
    if algorithm != ALG_XAES_256_GCM:
        raise DecodeError("unsupported_algorithm")
    if flags & ~FLAG_ZSTD:
        raise DecodeError("unknown_flags")
    header_len = 4 + id_len
    if len(d) < header_len + 24 + 16:
        raise DecodeError("truncated")
    key_id = d[4:header_len]
    if not 1 <= len(key_id) <= 64 or not set(key_id) <= KEY_ID_CHARS:
        raise DecodeError("invalid_key_id")
    if len(p.external_payloads):
        raise DecodeError("external_payloads")
    if set(p.metadata) - {"encoding", "tcodec-key-id"}:
        raise DecodeError("unexpected_metadata")
    if p.metadata.get("tcodec-key-id") != key_id:
        raise DecodeError("key_id_mismatch")
    key = keyring.get(key_id.decode())
    if key is None:
        raise DecodeError("unknown_key")
    plaintext = xaes_open(key, d[header_len:header_len + 24], d[header_len + 24:], d[:header_len])
    if flags & FLAG_ZSTD:
        plaintext = zstd_open(plaintext, limit)
    elif len(plaintext) > limit:
        raise DecodeError("too_large")
    try:
        return Payload.FromString(plaintext)
    except Exception:  # the protobuf runtime's DecodeError, whichever runtime it is
        raise DecodeError("inner_payload") from None


def payload_from_json(j: dict) -> Payload:
    p = Payload(metadata={k: bytes.fromhex(v) for k, v in j["metadata"].items()}, data=bytes.fromhex(j["data"]))
    for ext in j.get("external_payloads", []):
        p.external_payloads.add(size_bytes=ext["size_bytes"])
    return p


def payload_to_json(p: Payload) -> dict:
    out = payload_json(p)
    if len(p.external_payloads):
        out["external_payloads"] = [{"size_bytes": e.size_bytes} for e in p.external_payloads]
    return out


def serve_decoder() -> int:
    """The conformance protocol (vectors/README.md): one JSON request per line on stdin,
    one JSON answer per line on stdout."""
    for line in sys.stdin:
        if not line.strip():
            continue
        req = json.loads(line)
        keyring = {k["id"]: bytes.fromhex(k["key"]) for k in req["keyring"]}
        try:
            decoded = decode_payload(payload_from_json(req["payload"]), keyring, req["max_decoded_size"])
            answer = {"payload": payload_to_json(decoded)}
        except DecodeError as e:
            answer = {"error": e.args[0]}
        print(json.dumps(answer), flush=True)
    return 0


def render(vectors: list, about: str) -> str:
    return json.dumps({"about": about, "vectors": vectors}, indent=2) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if the files would change")
    ap.add_argument("--decode", action="store_true",
                    help="act as a decoder for conformance.py (requests on stdin, answers on stdout)")
    args = ap.parse_args()
    if args.decode:
        return serve_decoder()
    _check_xaes_against_spec()
    files = {
        "format-v1.json": render(
            format_vectors(),
            "tcodec wire format v1 (FORMAT.md; fields and harness in vectors/README.md). "
            "Generated by generate.py; all bytes hex; metadata values hex. error: the class a "
            "decoder must report (null: decodes to inner). expect: the scenario.",
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
