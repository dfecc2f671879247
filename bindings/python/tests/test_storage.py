"""External Storage written by the official Python SDK's S3 driver (`S3StorageDriver`, over a boto3
client) under tcodec's Python codec, on the real dev server and a real S3-protocol server (moto):
a workflow input over Temporal's 2 MB limit is sealed, then stored, the history holds a reference,
the bucket holds ciphertext only, and the codec server (`tcodec serve` with the namespace's bucket)
fetches and decodes it for the `temporal` CLI, `/decode` and `/download`. Then the same driver
and the TypeScript worker's (`@tcodec/temporal`'s S3StorageDriver) read each other's objects on
one workflow."""

import asyncio
import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import subprocess
import urllib.request
import uuid
from datetime import timedelta

import boto3
from botocore.exceptions import ClientError
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient
from temporalio.converter import ExternalStorage
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import tcodec

from conftest import CARD, ROOT, SECRET, TCODEC, payload_strings, show
from test_polyglot import Process

BUCKET = "python-driver-payloads"
NODE_QUEUE = "tcodec-storage-node"


class Boto3Client(S3StorageDriverClient):
    """The driver's client interface over boto3 (the SDK's own adapter needs aioboto3)."""

    def __init__(self, s3):
        self.s3 = s3

    async def put_object(self, *, bucket: str, key: str, data: bytes) -> None:
        await asyncio.to_thread(self.s3.put_object, Bucket=bucket, Key=key, Body=data)

    async def object_exists(self, *, bucket: str, key: str) -> bool:
        try:
            await asyncio.to_thread(self.s3.head_object, Bucket=bucket, Key=key)
            return True
        except ClientError:
            return False

    async def get_object(self, *, bucket: str, key: str) -> bytes:
        answer = await asyncio.to_thread(self.s3.get_object, Bucket=bucket, Key=key)
        return answer["Body"].read()


@workflow.defn
class Ingest:
    @workflow.run
    async def run(self, document: str) -> str:
        return f"{len(document)} characters, sha256 {hashlib.sha256(document.encode()).hexdigest()}"


@workflow.defn
class AnnotateOnNode:
    """Hands a document to the TypeScript worker, which gives it back annotated."""

    @workflow.run
    async def run(self, document: str) -> str:
        annotated = await workflow.execute_activity("annotate", document, task_queue=NODE_QUEUE,
                                                    start_to_close_timeout=timedelta(seconds=120))
        return f"{len(annotated)} characters, sha256 {hashlib.sha256(annotated.encode()).hexdigest()}"


def document(size: int) -> str:
    """Records with random tokens: compression cannot bring it under the threshold."""
    records, i = [], 0
    while sum(map(len, records)) < size:
        records.append(json.dumps({"customer": i, "holder": SECRET, "token": os.urandom(48).hex()}))
        i += 1
    return "[" + ",".join(records) + "]"


def post(url, namespace, payloads):
    request = urllib.request.Request(url, data=json.dumps({"payloads": payloads}).encode(), method="POST",
                                     headers={"Content-Type": "application/json", "X-Namespace": namespace})
    with urllib.request.urlopen(request, timeout=60) as answer:
        return json.loads(answer.read())["payloads"]


def python_storage(keyring, master, endpoint, bucket):
    """A new bucket, and tcodec's Python data converter with the official S3 driver on it."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket=bucket)
    codec = tcodec.Codec(tcodec.Keyring.open(keyring, master_key_file=master))
    driver = S3StorageDriver(client=Boto3Client(s3), bucket=bucket)
    return s3, dataclasses.replace(tcodec.temporal.data_converter(codec),
                                   external_storage=ExternalStorage(drivers=[driver]))


def sealed_objects(s3, bucket):
    """Every object in `bucket`, each checked to be tcodec ciphertext with no plaintext."""
    objects = [s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read()
               for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert objects and all(b"binary/tcodec" in o and CARD.encode() not in o for o in objects)
    return objects


@contextlib.contextmanager
def codec_server(tmp_path, keyring, moto, bucket):
    """`tcodec serve` for namespace `default`, with `bucket` as its External Storage: its URL."""
    path, master, env = keyring
    endpoint, _, aws = moto
    config = tmp_path / "tcodec.toml"
    config.write_text(
        f'listen = "127.0.0.1:0"\n[kek]\nmaster_key_file = "{master}"\n'
        f'[namespaces.default]\nkeyring = "{path}"\n'
        f'[namespaces.default.storage]\nbucket = "{bucket}"\nendpoint = "{endpoint}"\nregion = "us-east-1"\n')
    server = Process("tcodec serve", [str(TCODEC), "serve", "--config", str(config)],
                     {**env, **aws, "AWS_EC2_METADATA_DISABLED": "true", "NO_COLOR": "1"})
    try:
        yield re.search(r"listening on (\S+)", server.wait_for(r"listening on ")).group(1)
    finally:
        server.stop()


def test_the_official_s3_driver_stores_tcodec_ciphertext_that_the_codec_server_reads(
        dev_server, keyring, moto, tmp_path):
    keyring, master, env = keyring
    endpoint, _, aws = moto
    s3, converter = python_storage(keyring, master, endpoint, BUCKET)
    text = document(3 << 20)
    workflow_id = f"ingest-{uuid.uuid4()}"

    async def scenario() -> str:
        client = await Client.connect(dev_server, data_converter=converter)
        async with Worker(client, task_queue="tcodec-storage", workflows=[Ingest],
                          workflow_runner=UnsandboxedWorkflowRunner()):
            return await client.execute_workflow(Ingest.run, text, id=workflow_id, task_queue="tcodec-storage")

    expected = f"{len(text)} characters, sha256 {hashlib.sha256(text.encode()).hexdigest()}"
    assert asyncio.run(scenario()) == expected

    # The history holds a reference for the input, in Temporal's shape, and no plaintext.
    raw = show(dev_server, workflow_id)
    started = raw["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"][0]
    metadata = {k: base64.b64decode(v).decode() for k, v in started["metadata"].items()}
    assert metadata == {"encoding": "json/protobuf",
                        "messageType": "temporal.api.sdk.v1.ExternalStorageReference"}, metadata
    reference = json.loads(base64.b64decode(started["data"]))
    assert reference["driverName"] == "aws.s3driver"
    claim = reference["claimData"]
    assert claim["bucket"] == BUCKET and claim["key"].startswith("v0/ns/default/"), claim
    encodings, texts = payload_strings(raw)
    assert set(encodings) == {"json/protobuf", "binary/tcodec"}, encodings
    assert not [t for t in texts if CARD in t], "plaintext on the server"

    # The bucket holds tcodec ciphertext only.
    sealed_objects(s3, BUCKET)

    # The codec server, given the bucket, reads what the official driver wrote.
    with codec_server(tmp_path, (keyring, master, env), moto, BUCKET) as url:
        for path in ("/download", "/decode"):
            [decoded] = post(url + path, "default", [started])
            assert json.loads(base64.b64decode(decoded["data"])) == text, path
        [kept] = post(url + "/decode?preserveStorageRefs=true", "default", [started])
        assert kept == started

        # The CLI's /decode (no preserveStorageRefs) gets the input fetched and decoded.
        shown = show(dev_server, workflow_id, codec_endpoint=url)
        [given] = shown["events"][0]["workflowExecutionStartedEventAttributes"]["input"]["payloads"]
        assert base64.b64decode(given["metadata"]["encoding"]) == b"json/plain"
        assert json.loads(base64.b64decode(given["data"])) == text


def test_the_typescript_workers_driver_and_the_official_python_driver_read_each_others_objects(
        dev_server, keyring, moto, tmp_path):
    """A Python workflow (the official S3 driver) sends a 3 MiB document to an activity on the
    TypeScript worker, whose S3StorageDriver (tcodec's, from the environment) fetches it and
    stores the 3 MiB answer, which the official driver fetches back. The history holds
    references only, the bucket ciphertext only; the codec server and `tcodec history check`
    follow the TypeScript worker's reference."""
    keyring, master, env = keyring
    endpoint, _, aws = moto
    bucket = "typescript-driver-payloads"
    s3, converter = python_storage(keyring, master, endpoint, bucket)
    storage_env = {"TCODEC_STORAGE_BUCKET": bucket, "TCODEC_STORAGE_ENDPOINT": endpoint,
                   "TCODEC_STORAGE_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
    node_env = {**os.environ, **env, **aws, **storage_env, "TEMPORAL_ADDRESS": dev_server,
                "TCODEC_NODE_TASK_QUEUE": NODE_QUEUE, "NO_COLOR": "1"}
    node_env.pop("TCODEC_DECODE_ALLOW", None)
    node = Process("the TypeScript worker", ["node", str(ROOT / "bindings/node/tests/polyglot_worker.mjs")],
                   node_env)
    text = document(3 << 20)
    annotated = f"{text}\n-- annotated by the TypeScript worker"
    workflow_id = f"annotate-{uuid.uuid4()}"

    async def scenario() -> str:
        client = await Client.connect(dev_server, data_converter=converter)
        async with Worker(client, task_queue="tcodec-storage-python", workflows=[AnnotateOnNode],
                          workflow_runner=UnsandboxedWorkflowRunner()):
            return await client.execute_workflow(AnnotateOnNode.run, text, id=workflow_id,
                                                 task_queue="tcodec-storage-python")

    try:
        node.wait_for(rf"external storage: s3://{bucket}/v0/ns/default/ from 262144 bytes")
        node.wait_for(r"polling task queue " + NODE_QUEUE)
        expected = f"{len(annotated)} characters, sha256 {hashlib.sha256(annotated.encode()).hexdigest()}"
        assert asyncio.run(scenario()) == expected
    finally:
        node.stop()

    # The activity's input (stored by the official driver) and its result (stored by the
    # TypeScript worker's driver) are references in the history; nothing is plaintext.
    raw = show(dev_server, workflow_id)
    attributes = {k: v for e in raw["events"] for k, v in e.items() if k.endswith("EventAttributes")}
    [given] = attributes["activityTaskScheduledEventAttributes"]["input"]["payloads"]
    [answer] = attributes["activityTaskCompletedEventAttributes"]["result"]["payloads"]
    for reference in (given, answer):
        assert base64.b64decode(reference["metadata"]["messageType"]) == \
            b"temporal.api.sdk.v1.ExternalStorageReference"
    claim = json.loads(base64.b64decode(answer["data"]))["claimData"]
    assert claim["bucket"] == bucket and claim["key"] == f"v0/ns/default/d/sha256/{claim['hash_value']}", claim
    stored = s3.get_object(Bucket=bucket, Key=claim["key"])["Body"].read()
    assert hashlib.sha256(stored).hexdigest() == claim["hash_value"]
    assert int(answer["externalPayloads"][0]["sizeBytes"]) == len(stored)
    encodings, texts = payload_strings(raw)
    assert set(encodings) == {"json/protobuf", "binary/tcodec"}, encodings
    assert not [t for t in texts if CARD in t], "plaintext on the server"
    assert len(sealed_objects(s3, bucket)) >= 3

    # The codec server decodes what the TypeScript worker stored; `tcodec history check`, with
    # no key, follows every reference into the bucket and finds each object sealed.
    with codec_server(tmp_path, (keyring, master, env), moto, bucket) as url:
        [decoded] = post(url + "/download", "default", [answer])
        assert json.loads(base64.b64decode(decoded["data"])) == annotated
    check = subprocess.run(
        [str(TCODEC), "history", "check", "--json", "--storage-bucket", bucket, "--storage-endpoint", endpoint,
         "--storage-region", "us-east-1"],
        input=json.dumps(raw), capture_output=True, text=True, env={**aws, **storage_env, "PATH": os.environ["PATH"]})
    assert check.returncode == 0, check.stdout + check.stderr
    found = json.loads(check.stdout)
    assert found["stored"] == found["stored_checked"] >= 3, found
    assert found["plaintext"] == [] and found["unchecked"] == [], found
