"""External Storage written by the official Python SDK's S3 driver (`S3StorageDriver`, over a boto3
client) under tcodec's Python codec, on the real dev server and a real S3-protocol server (moto):
a workflow input over Temporal's 2 MB limit is sealed, then stored, the history holds a reference,
the bucket holds ciphertext only, and the codec server (`tcodec serve` with the namespace's bucket)
fetches and decodes it for the `temporal` CLI, `/decode` and `/download`."""

import asyncio
import base64
import dataclasses
import hashlib
import json
import os
import re
import urllib.request
import uuid

import boto3
from botocore.exceptions import ClientError
from temporalio import workflow
from temporalio.client import Client
from temporalio.contrib.aws.s3driver import S3StorageDriver, S3StorageDriverClient
from temporalio.converter import ExternalStorage
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import tcodec

from conftest import SECRET, TCODEC, payload_strings, show
from test_polyglot import Process

BUCKET = "python-driver-payloads"


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


def test_the_official_s3_driver_stores_tcodec_ciphertext_that_the_codec_server_reads(
        dev_server, keyring, moto, tmp_path):
    keyring, master, env = keyring
    endpoint, _, aws = moto
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    s3.create_bucket(Bucket=BUCKET)
    codec = tcodec.Codec(tcodec.Keyring.open(keyring, master_key_file=master))
    driver = S3StorageDriver(client=Boto3Client(s3), bucket=BUCKET)
    converter = dataclasses.replace(tcodec.temporal.data_converter(codec),
                                    external_storage=ExternalStorage(drivers=[driver]))
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
    assert not [t for t in texts if "4111" in t], "plaintext on the server"

    # The bucket holds tcodec ciphertext only.
    objects = [s3.get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
               for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert objects and all(b"binary/tcodec" in o and b"4111" not in o for o in objects)

    # The codec server, given the bucket, reads what the official driver wrote.
    config = tmp_path / "tcodec.toml"
    config.write_text(
        f'listen = "127.0.0.1:0"\n[kek]\nmaster_key_file = "{master}"\n'
        f'[namespaces.default]\nkeyring = "{keyring}"\n'
        f'[namespaces.default.storage]\nbucket = "{BUCKET}"\nendpoint = "{endpoint}"\nregion = "us-east-1"\n')
    server = Process("tcodec serve", [str(TCODEC), "serve", "--config", str(config)],
                     {**env, **aws, "AWS_EC2_METADATA_DISABLED": "true", "NO_COLOR": "1"})
    try:
        url = re.search(r"listening on (\S+)", server.wait_for(r"listening on ")).group(1)
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
    finally:
        server.stop()
