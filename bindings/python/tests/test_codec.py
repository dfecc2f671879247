"""The Python package against the real keyring file, the `tcodec` CLI (built by cargo) and
the Temporal Python SDK's converter: what a Python worker sends, every tcodec reader opens,
and the other way round."""

import asyncio
import base64
import json
import os
import time

import pytest
import temporalio.converter
from temporalio.api.common.v1 import Payload

import tcodec

from conftest import MASTER_KEY, SECRET, cli


def json_payload(value) -> Payload:
    return temporalio.converter.DataConverter.default.payload_converter.to_payloads([value])[0]


def codec_of(keyring, **kw):
    path, master, _ = keyring
    return tcodec.Codec(tcodec.Keyring.open(path, master_key_file=master), **kw)


def run(coro):
    return asyncio.run(coro)


def test_sealed_payloads_hide_everything_and_round_trip(keyring):
    payload_codec = tcodec.temporal.PayloadCodec(codec_of(keyring))
    payloads = [json_payload({"customer": SECRET}), json_payload("x" * 4000)]
    sealed = run(payload_codec.encode(payloads))
    for p in sealed:
        assert set(p.metadata) == {"encoding", "tcodec-key-id"}
        assert p.metadata["encoding"] == b"binary/tcodec"
        assert p.metadata["tcodec-key-id"] == b"k1"
        assert b"Ada" not in p.SerializeToString() and b"json/plain" not in p.SerializeToString()
    assert run(payload_codec.decode(sealed)) == payloads


def test_the_rust_cli_reads_what_python_sealed_and_python_reads_what_the_cli_sealed(keyring):
    _, _, env = keyring
    codec = codec_of(keyring)
    sealed = [Payload.FromString(b) for b in codec.encode([json_payload(SECRET).SerializeToString()])]
    body = {"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in p.metadata.items()},
                          "data": base64.b64encode(p.data).decode()} for p in sealed]}
    decoded = json.loads(cli(env, "decode", stdin=json.dumps(body)))
    assert base64.b64decode(decoded["payloads"][0]["data"]).decode() == json.dumps(SECRET)

    plain = {"payloads": [{"metadata": {"encoding": base64.b64encode(b"json/plain").decode()},
                           "data": base64.b64encode(b'"from rust"').decode()}]}
    by_rust = json.loads(cli(env, "encode", stdin=json.dumps(plain)))["payloads"][0]
    payload = Payload(metadata={k: base64.b64decode(v) for k, v in by_rust["metadata"].items()},
                      data=base64.b64decode(by_rust["data"]))
    out = Payload.FromString(codec.decode([payload.SerializeToString()])[0])
    assert out.data == b'"from rust"'


def test_unsealed_payloads_are_refused_unless_the_policy_allows_them(keyring):
    plain = json_payload("forged by whoever runs the server")
    sealed = codec_of(keyring).encode([json_payload("fine").SerializeToString()])
    with pytest.raises(tcodec.CodecError) as err:
        codec_of(keyring).decode([sealed[0], plain.SerializeToString()])
    message = str(err.value)
    assert "payload 1" in message and "json/plain" in message and "TCODEC_DECODE_ALLOW" in message
    assert "forged" not in message
    allowed = codec_of(keyring, decode_allow="json/plain").decode([plain.SerializeToString()])
    assert Payload.FromString(allowed[0]) == plain


def test_every_shape_of_payload_decodes_to_what_was_sealed(keyring):
    # Decoding reads a payload in the shape SDKs write where it lies and hands back the bytes
    # it opened; other shapes take the general way. One batch of each, in both calls.
    many_keys = Payload(metadata={f"key-{i}": f"value-{i}".encode() for i in range(12)}, data=b"12 keys")
    with_details = Payload(metadata={"encoding": b"binary/plain"}, data=b"a reference's details")
    with_details.external_payloads.add(size_bytes=1234)
    shapes = [
        json_payload({"customer": SECRET}),           # small: sealed uncompressed
        json_payload("x" * 4000),                     # compressed
        many_keys,                                    # more metadata than a view holds
        Payload(),                                    # nothing at all
        with_details,                                 # External Storage details
        Payload(metadata={"encoding": b"binary/plain"}, data=os.urandom(70_000)),
    ]
    codec = codec_of(keyring, decode_allow="json/plain")
    sealed = codec.encode([p.SerializeToString() for p in shapes])
    plain = json_payload("allowed plaintext").SerializeToString()
    batch = sealed[:3] + [plain] + sealed[3:]
    expected = shapes[:3] + [Payload.FromString(plain)] + shapes[3:]
    for decode in (codec.decode, codec.try_decode):
        assert [Payload.FromString(b) for b in decode(batch)] == expected
    # A sealed payload never carries details outside its ciphertext (FORMAT.md): one that
    # does, read the general way, is refused and named.
    outer = Payload.FromString(sealed[4])
    outer.external_payloads.add(size_bytes=99)
    for decode in (codec.decode, codec.try_decode):
        with pytest.raises(tcodec.CodecError, match="payload 1: .*external payload details"):
            decode([sealed[0], outer.SerializeToString()])


def test_errors_name_the_payload_and_key_never_key_material(keyring, tmp_path, monkeypatch):
    path, _, _ = keyring
    sealed = codec_of(keyring).encode([json_payload(SECRET).SerializeToString()])
    other = tmp_path / "other.key"
    other.write_text("ff" * 32)
    other.chmod(0o600)
    with pytest.raises(tcodec.CodecError) as err:
        tcodec.Codec(tcodec.Keyring.open(path, master_key_file=other)).decode(sealed)
    message = str(err.value)
    assert "payload 0" in message and "k1" in message
    assert MASTER_KEY not in message and "ffff" not in message and "Ada" not in message
    with pytest.raises(tcodec.CodecError, match="payload 0: not a serialized Payload"):
        codec_of(keyring).decode([b"\xff\xff\xff"])
    with pytest.raises(tcodec.CodecError, match="^payload 1: not a serialized Payload"):
        codec_of(keyring).encode([json_payload("fine").SerializeToString(), b"\x0f\x01"])
    monkeypatch.delenv("TCODEC_KEYRING", raising=False)
    with pytest.raises(tcodec.CodecError, match="no keyring"):
        tcodec.Codec.from_env()


def test_a_large_batch_compressed_across_threads_reads_the_same_and_names_the_first_failure(keyring):
    # 16 payloads of 64 KiB: their compression split into runs on up to four threads, or kept on
    # one. Payloads 9 and 13 are no Payload messages: the first failure named is 9's.
    payloads = [json_payload(os.urandom(48 << 10).hex()[: 64 << 10]) for _ in range(16)]
    serialized = [p.SerializeToString() for p in payloads]
    for threads in (1, 4):
        codec = codec_of(keyring, threads=threads)
        sealed = codec.encode(serialized)
        assert len(set(sealed)) == 16 and all(SECRET.encode() not in s for s in sealed)
        assert codec.decode(sealed) == serialized
        broken = list(serialized)
        broken[9] = broken[13] = b"\x0f\x01"
        with pytest.raises(tcodec.CodecError, match=r"^payload 9: not a serialized Payload"):
            codec.encode(broken)
    with pytest.raises(TypeError):
        codec_of(keyring, threads="four")


def test_a_rotation_is_picked_up_without_reopening(keyring):
    _, _, env = keyring
    codec = codec_of(keyring)
    assert codec.keyring.primary == "k1"
    cli(env, "keys", "rotate")
    deadline = time.monotonic() + 30
    while codec.keyring.primary != "k2":  # the watcher checks the file every 2 s
        assert time.monotonic() < deadline, "the rotation was never picked up"
        time.sleep(0.05)
    sealed = Payload.FromString(codec.encode([json_payload("after").SerializeToString()])[0])
    assert sealed.metadata["tcodec-key-id"] == b"k2"


def test_from_env_uses_the_workers_variables(keyring, monkeypatch):
    path, master, _ = keyring
    monkeypatch.setenv("TCODEC_KEYRING", str(path))
    monkeypatch.setenv("TCODEC_MASTER_KEY_FILE", str(master))
    monkeypatch.setenv("TCODEC_DECODE_ALLOW", "json/plain")
    codec = tcodec.Codec.from_env()
    assert codec.keyring.name == "payments"
    plain = json_payload("migrating").SerializeToString()
    assert codec.decode([plain]) == [plain]


def test_the_data_converter_seals_failure_messages(keyring):
    converter = tcodec.temporal.data_converter(codec_of(keyring))
    from temporalio.api.failure.v1 import Failure
    from temporalio.exceptions import ApplicationError

    failure = Failure()
    run(converter.encode_failure(ApplicationError(f"declined for {SECRET}"), failure))
    assert "Ada" not in failure.SerializeToString().decode("latin-1")
    assert failure.message == "Encoded failure"
    assert failure.encoded_attributes.metadata["encoding"] == b"binary/tcodec"
    error = run(converter.decode_failure(failure))
    assert SECRET in str(error)


def test_small_batches_run_inline_once_their_key_is_in_memory(keyring):
    sealed = codec_of(keyring).encode([json_payload(SECRET).SerializeToString()])
    fresh = codec_of(keyring)
    # A key never unwrapped would need the KEK (a KMS call): the inline path declines.
    assert fresh.try_decode(sealed) is None
    opened = fresh.decode(sealed)
    assert fresh.try_decode(sealed) == opened
    assert Payload.FromString(fresh.try_encode([opened[0]])[0]).metadata["tcodec-key-id"] == b"k1"
    with pytest.raises(tcodec.CodecError, match="payload 0"):
        fresh.try_decode([b"\x12\x01x"])
    # The PayloadCodec takes either path; both give the same payloads back, for batches of
    # none, one and several.
    payloads = [json_payload({"n": i, "who": SECRET}) for i in range(3)]
    for inline_bytes in (0, tcodec.temporal.INLINE_BYTES):
        payload_codec = tcodec.temporal.PayloadCodec(codec_of(keyring), inline_bytes=inline_bytes)
        for batch in ([], payloads[:1], payloads):
            sealed = run(payload_codec.encode(batch))
            assert len(sealed) == len(batch)
            assert all(p.metadata["encoding"] == b"binary/tcodec" for p in sealed)
            assert run(payload_codec.decode(sealed)) == batch


def test_payload_messages_are_worked_through_in_steps_and_failures_named_in_the_whole_batch(keyring):
    # 12 payloads of 100 KB cross as messages: the codec serializes, seals or opens, and parses
    # them about 256 KiB at a time (four steps of three). What comes back is what went in, in
    # order, as the same class; a payload failing in a later step is named by its batch index.
    payloads = [json_payload(os.urandom(50_000).hex()) for _ in range(12)]
    codec = codec_of(keyring, compression=False)
    sealed = codec.encode(payloads)
    assert all(type(p) is Payload and p.metadata["encoding"] == b"binary/tcodec" for p in sealed)
    assert len({p.data for p in sealed}) == 12
    assert codec.decode(sealed) == payloads
    assert codec.decode([p.SerializeToString() for p in sealed]) == [p.SerializeToString() for p in payloads]
    assert codec.try_decode(sealed) == payloads
    tampered = list(sealed)
    tampered[10] = Payload(metadata=sealed[10].metadata, data=sealed[10].data[:-1] + bytes([sealed[10].data[-1] ^ 1]))
    for decode in (codec.decode, codec.try_decode):
        with pytest.raises(tcodec.CodecError, match="^payload 10: cannot decrypt under key k1"):
            decode(tampered)
    # The inline path's bound: a batch over `max_bytes` gets None, whichever step passes it.
    size = sum(len(p.SerializeToString()) for p in payloads)
    assert codec.try_encode(payloads, size) is not None
    assert codec.try_encode(payloads, size - 1) is None
    assert codec.try_decode(sealed, 1000) is None
    assert codec.try_decode([], 0) == []
    assert codec.try_decode([p.SerializeToString() for p in sealed], 1000) is None
    # A key not yet unwrapped: None on the inline path, opened on the other.
    fresh = codec_of(keyring)
    assert fresh.try_decode(sealed) is None
    assert fresh.decode(sealed) == payloads
    # Payloads this large are sealed straight into their answers; one that is no Payload
    # message is named before anything is sealed.
    broken = [p.SerializeToString() for p in payloads]
    broken[5] = b"\x0f\x01" * 20_000
    with pytest.raises(tcodec.CodecError, match="^payload 5: not a serialized Payload"):
        codec.encode(broken)
    with pytest.raises(AttributeError):
        codec.encode(["neither bytes nor a message"])
    with pytest.raises(TypeError):
        codec.encode([b"bytes first, then", payloads[0]])
    # Compression on and threads to split over: random bytes (not tried with zstd) still go in
    # steps, JSON in one; either way the answers and the index named are the batch's.
    split = codec_of(keyring, threads=2)
    for batch in ([Payload(metadata={"encoding": b"binary/plain"}, data=os.urandom(100_000)) for _ in range(12)],
                  payloads):
        sealed = split.encode(batch)
        assert split.decode(sealed) == batch
        sealed[7] = Payload(metadata=sealed[7].metadata, data=sealed[7].data[:-1] + bytes([sealed[7].data[-1] ^ 1]))
        with pytest.raises(tcodec.CodecError, match="^payload 7: cannot decrypt"):
            split.decode(sealed)


def test_a_kms_keyring_opens_only_for_the_kms_keys_the_deployment_lists(moto, tmp_path, monkeypatch):
    endpoint, key_id, aws = moto
    for name, value in aws.items():
        monkeypatch.setenv(name, value)
    path = tmp_path / "keyring.json"
    env = {"PATH": os.environ["PATH"], "TCODEC_KEYRING": str(path), "TCODEC_KMS_KEYS": key_id, **aws}
    cli(env, "keys", "init", "--name", "payments", "--kek", f"aws-kms:{key_id}")
    codec = tcodec.Codec(tcodec.Keyring.open(path, kms_keys=[key_id], kms_endpoint=endpoint, kms_region="us-east-1"))
    sealed = codec.encode([json_payload(SECRET).SerializeToString()])
    assert Payload.FromString(sealed[0]).metadata["tcodec-key-id"] == b"k1"
    body = {"payloads": [{"metadata": {k: base64.b64encode(v).decode() for k, v in Payload.FromString(sealed[0]).metadata.items()},
                          "data": base64.b64encode(Payload.FromString(sealed[0]).data).decode()}]}
    decoded = json.loads(cli(env, "decode", stdin=json.dumps(body)))
    assert base64.b64decode(decoded["payloads"][0]["data"]).decode() == json.dumps(SECRET)
    # The same keyring where the deployment lists no KMS key, or another one: refused before
    # its key is unwrapped, and the message says what to set.
    for listed, says in (([], "not one of the KMS keys allowed here"), (["alias/other"], "alias/other is not found")):
        with pytest.raises(tcodec.CodecError) as err:
            tcodec.Codec(tcodec.Keyring.open(path, kms_keys=listed, kms_endpoint=endpoint,
                                             kms_region="us-east-1")).decode(sealed)
        message = str(err.value)
        assert "payload 0" in message and "k1" in message and says in message, message
        assert SECRET not in message


class Serialized:
    """Any message class: what it serializes to, and `FromString` to make one back."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def SerializeToString(self) -> bytes:
        return self.data

    @classmethod
    def FromString(cls, data: bytes) -> "Serialized":
        return cls(data)


def test_a_batch_is_any_sequence_and_answers_come_in_its_own_class(keyring):
    # The SDK hands codecs its repeated field (`Payloads.payloads`), tests and users lists or
    # tuples: the same batch either way. Answers are messages of the batch's first payload's
    # class, whichever class the codec answered in before.
    from temporalio.api.common.v1 import Payloads

    codec = codec_of(keyring)
    payloads = [json_payload({"customer": SECRET}), json_payload("y" * 3000)]
    sealed = codec.encode(payloads)
    for batch in (sealed, tuple(sealed), Payloads(payloads=sealed).payloads):
        assert codec.decode(batch) == payloads
        assert codec.try_decode(batch) == payloads
    assert [type(p) for p in codec.encode(tuple(payloads))] == [Payload, Payload]
    wrapped = codec.encode([Serialized(p.SerializeToString()) for p in payloads])
    assert all(type(w) is Serialized for w in wrapped)
    opened = codec.decode(wrapped)
    assert [type(o) for o in opened] == [Serialized, Serialized]
    assert [Payload.FromString(o.data) for o in opened] == payloads
    assert [type(p) for p in codec.decode(sealed)] == [Payload, Payload]
    with pytest.raises(TypeError):
        codec.encode("not a batch")
