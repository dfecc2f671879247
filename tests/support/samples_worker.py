"""A Python worker on the official Temporal SDK whose codec writes the official samples'
`binary/encrypted` format (a static AES-256-GCM key named by `encryption-key-id`): what a
team migrating to tcodec runs today. It starts the reference onboarding workflow, runs it
until it waits for the `confirm_address` signal, and stops, leaving the rest to a tcodec
worker that has the old key imported.

Usage: samples_worker.py ADDRESS WORKFLOW_ID KEY_FILE KEY_ID

The codec is written here from the samples' format (12-byte random nonce, then the
AES-256-GCM ciphertext and tag of the serialized Payload, no associated data), not copied.
The workflow mirrors examples/onboarding (same type, activity and signal names, same
commands in the same order), so a Rust worker can replay its history.
"""

import asyncio
import dataclasses
import os
import sys
from datetime import timedelta
from typing import Iterable, List

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from temporalio import activity, workflow
from temporalio.api.common.v1 import Payload
from temporalio.api.enums.v1 import EventType
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.converter import DataConverter, PayloadCodec
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

TASK_QUEUE = "tcodec-onboarding"


class SamplesEncryptionCodec(PayloadCodec):
    """The samples' encryption codec: every payload sealed under one key."""

    def __init__(self, key_id: str, key: bytes) -> None:
        self.key_id = key_id
        self.aead = AESGCM(key)

    async def encode(self, payloads: Iterable[Payload]) -> List[Payload]:
        out = []
        for p in payloads:
            nonce = os.urandom(12)
            sealed = nonce + self.aead.encrypt(nonce, p.SerializeToString(), None)
            out.append(
                Payload(
                    metadata={
                        "encoding": b"binary/encrypted",
                        "encryption-key-id": self.key_id.encode(),
                    },
                    data=sealed,
                )
            )
        return out

    async def decode(self, payloads: Iterable[Payload]) -> List[Payload]:
        out = []
        for p in payloads:
            if p.metadata.get("encoding", b"") != b"binary/encrypted":
                out.append(p)
                continue
            if p.metadata.get("encryption-key-id", b"").decode() != self.key_id:
                raise ValueError("unknown encryption-key-id")
            out.append(Payload.FromString(self.aead.decrypt(p.data[:12], p.data[12:], None)))
        return out


@activity.defn(name="OnboardingActivities::verify_identity")
async def verify_identity(customer: dict) -> str:
    return f"verified {customer['email']}"


@workflow.defn(name="OnboardingWorkflow")
class OnboardingWorkflow:
    def __init__(self) -> None:
        self.confirmed_address = None

    @workflow.run
    async def run(self, customer: dict) -> dict:
        retry = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_attempts=5)
        await workflow.execute_activity(
            "OnboardingActivities::verify_identity",
            customer,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=retry,
        )
        await workflow.wait_condition(lambda: self.confirmed_address is not None)
        raise RuntimeError("this worker stops before the signal; tcodec's worker finishes")

    @workflow.signal(name="confirm_address")
    def confirm_address(self, address: str) -> None:
        self.confirmed_address = address


def read_key(path: str) -> bytes:
    with open(path, "rb") as f:
        key = f.read()
    return key[:-1] if len(key) == 33 and key.endswith(b"\n") else key


async def waiting_for_the_signal(handle) -> bool:
    """Whether the workflow task after the activity has completed."""
    seen_activity = False
    async for event in handle.fetch_history_events():
        if event.event_type == EventType.EVENT_TYPE_ACTIVITY_TASK_COMPLETED:
            seen_activity = True
        if seen_activity and event.event_type == EventType.EVENT_TYPE_WORKFLOW_TASK_COMPLETED:
            return True
    return False


async def main(address: str, workflow_id: str, key_file: str, key_id: str) -> None:
    codec = SamplesEncryptionCodec(key_id, read_key(key_file))
    converter = dataclasses.replace(DataConverter.default, payload_codec=codec)
    client = await Client.connect(address, data_converter=converter)
    customer = {
        "name": "Ada Lovelace",
        "email": "ada@example.com",
        "card_number": "4111 1111 1111 1111",
        "address": "12 Crescent Road, Bath",
    }
    # No sticky cache: the next workflow task goes to the shared queue at
    # once. (The sandbox would re-import this script, codec and all; the
    # workflow is deterministic without it.)
    async with Worker(
        client,
        task_queue=TASK_QUEUE,
        workflows=[OnboardingWorkflow],
        activities=[verify_identity],
        max_cached_workflows=0,
        workflow_runner=UnsandboxedWorkflowRunner(),
    ):
        handle = await client.start_workflow(
            "OnboardingWorkflow", customer, id=workflow_id, task_queue=TASK_QUEUE
        )
        for _ in range(600):
            if await waiting_for_the_signal(handle):
                break
            await asyncio.sleep(0.1)
        else:
            raise SystemExit("the workflow never reached its wait for the signal")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
    sys.stdout.flush()
    sys.stderr.flush()
    # As rogue_worker.py: skip the interpreter's finalization, which the SDK's
    # native threads can crash once the work is done.
    os._exit(0)
