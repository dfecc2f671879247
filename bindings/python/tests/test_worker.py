"""A Python worker on the official Temporal SDK with tcodec's data converter, on the real dev
server (`temporal server start-dev` from the venv): the workflow completes, and the history
the server stores holds only tcodec-sealed payloads, failure messages included."""

import asyncio
import base64
import json
import socket
import subprocess
import time
import uuid
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import tcodec

from conftest import SECRET

ROOT = Path(__file__).resolve().parents[3]
TEMPORAL = ROOT / ".venv" / "bin" / "temporal"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def dev_server(tmp_path_factory):
    port = free_port()
    log = tmp_path_factory.mktemp("temporal") / "server.log"
    with open(log, "w") as out:
        server = subprocess.Popen(
            [str(TEMPORAL), "server", "start-dev", "--ip", "127.0.0.1", "--port", str(port),
             "--headless", "--http-port", str(free_port()), "--metrics-port", str(free_port()),
             "--log-level", "warn"],
            stdout=out, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while subprocess.run([str(TEMPORAL), "operator", "namespace", "describe", "--namespace", "default",
                          "--address", address], capture_output=True).returncode != 0:
        assert server.poll() is None, log.read_text()
        assert time.monotonic() < deadline, "the dev server did not start"
        time.sleep(0.2)
    yield address
    server.terminate()
    server.wait(timeout=30)


attempts = {"n": 0}


@activity.defn
async def check_card(customer: str) -> str:
    attempts["n"] += 1
    if attempts["n"] == 1:
        raise RuntimeError(f"card check timed out for {customer}")
    return f"approved: {customer}"


@workflow.defn
class Approve:
    @workflow.run
    async def run(self, customer: str) -> str:
        return await workflow.execute_activity(
            check_card, customer, start_to_close_timeout=timedelta(seconds=30),
            retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)))


def test_a_python_worker_with_tcodec_leaves_only_ciphertext_on_the_server(dev_server, keyring):
    keyring, master, _ = keyring
    converter = tcodec.temporal.data_converter(tcodec.Codec(tcodec.Keyring.open(keyring, master_key_file=master)))
    workflow_id = f"approve-{uuid.uuid4()}"

    async def scenario() -> str:
        client = await Client.connect(dev_server, data_converter=converter)
        async with Worker(client, task_queue="tcodec-python", workflows=[Approve], activities=[check_card],
                          workflow_runner=UnsandboxedWorkflowRunner()):
            return await client.execute_workflow(Approve.run, SECRET, id=workflow_id, task_queue="tcodec-python")

    assert asyncio.run(scenario()) == f"approved: {SECRET}"
    assert attempts["n"] == 2, "the activity failed once, then passed"

    raw = subprocess.run([str(TEMPORAL), "workflow", "show", "--workflow-id", workflow_id, "--address", dev_server,
                          "--output", "json"], capture_output=True, text=True, check=True).stdout
    history = json.loads(raw)
    encodings, texts = [], []

    def walk(v):
        if isinstance(v, dict):
            enc = v.get("metadata", {}).get("encoding") if isinstance(v.get("metadata"), dict) else None
            if enc:
                encodings.append(base64.b64decode(enc).decode())
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str):
            texts.append(v)
            try:
                texts.append(base64.b64decode(v, validate=True).decode("latin-1"))
            except Exception:
                pass

    walk(history)
    assert encodings and set(encodings) == {"binary/tcodec"}, encodings
    assert not [t for t in texts if "Ada Lovelace" in t or "4111" in t], "plaintext on the server"
    failed = [e for e in history["events"] if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_STARTED"
              and e["activityTaskStartedEventAttributes"].get("lastFailure")]
    assert failed and failed[0]["activityTaskStartedEventAttributes"]["lastFailure"]["message"] == "Encoded failure"
