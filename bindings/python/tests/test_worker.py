"""A Python worker on the official Temporal SDK with tcodec's data converter, on the real dev
server (`temporal server start-dev` from the venv): the workflow completes, and the history
the server stores holds only tcodec-sealed payloads, failure messages included."""

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio import activity, workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import tcodec

from conftest import CARD, SECRET, payload_strings, show

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

    history = show(dev_server, workflow_id)
    encodings, texts = payload_strings(history)
    assert encodings and set(encodings) == {"binary/tcodec"}, encodings
    assert not [t for t in texts if "Ada Lovelace" in t or CARD in t], "plaintext on the server"
    failed = [e for e in history["events"] if e["eventType"] == "EVENT_TYPE_ACTIVITY_TASK_STARTED"
              and e["activityTaskStartedEventAttributes"].get("lastFailure")]
    assert failed and failed[0]["activityTaskStartedEventAttributes"]["lastFailure"]["message"] == "Encoded failure"
