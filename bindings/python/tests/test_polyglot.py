"""One workflow across three languages on the real dev server, all with tcodec: a Python workflow
(this process, the `tcodec` package) whose activities run on a TypeScript worker
(`@tcodec/temporal`, bindings/node/tests/polyglot_worker.mjs) and on the Rust reference worker
(`onboarding-worker`), three task queues, one keyring file. The customer record passes through
all three, an activity on each activity worker fails once, and a key rotation (`tcodec keys add`,
then `promote`) mid-run reaches every worker without a restart. The server stores only
`binary/tcodec` payloads; the codec server (`tcodec serve`) shows the `temporal` CLI all of it."""

import asyncio
import base64
import json
import os
import queue
import re
import subprocess
import threading
import time
import uuid
from datetime import timedelta

import pytest
from temporalio import workflow
from temporalio.client import Client
from temporalio.common import RetryPolicy
from temporalio.worker import UnsandboxedWorkflowRunner, Worker

import tcodec

from conftest import CARD, ROOT, TCODEC, cli, payload_strings, show

NODE_QUEUE = "tcodec-polyglot-node"
RUST_QUEUE = "tcodec-onboarding"  # the reference worker's (examples/onboarding)
PYTHON_QUEUE = "tcodec-polyglot-python"
CUSTOMER = {"name": "Ada Lovelace", "email": "ada@example.com", "card_number": CARD,
            "address": "12 Crescent Road, Bath"}
NEW_ADDRESS = "7 Royal Crescent, Bath"
# The card in full (see conftest.CARD).
PLAINTEXT = ["Ada Lovelace", "ada@example.com", CARD, "Crescent"]


@workflow.defn(name="PolyglotOnboarding")
class PolyglotOnboarding:
    def __init__(self) -> None:
        self.address = None

    @workflow.signal
    def confirm_address(self, address: str) -> None:
        self.address = address

    @workflow.run
    async def run(self, customer: dict) -> dict:
        def on(queue_name):
            return dict(task_queue=queue_name, start_to_close_timeout=timedelta(seconds=30),
                        retry_policy=RetryPolicy(initial_interval=timedelta(milliseconds=100)))

        screened = await workflow.execute_activity("screen_customer", customer, **on(NODE_QUEUE))
        verified = await workflow.execute_activity("OnboardingActivities::verify_identity", customer,
                                                   **on(RUST_QUEUE))
        await workflow.wait_condition(lambda: self.address is not None)
        account = await workflow.execute_activity("OnboardingActivities::open_account",
                                                  {**customer, "address": self.address}, **on(RUST_QUEUE))
        letter = await workflow.execute_activity("welcome_letter", account, **on(NODE_QUEUE))
        return {"screened": screened, "verified": verified, "account": account, "letter": letter}


class Process:
    """A worker or server process whose output lines are read as they come."""

    def __init__(self, name, args, env):
        self.name = name
        self.proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        self.lines = queue.Queue()
        self.seen = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def wait_for(self, pattern, seconds=60):
        """The first line (from now on, or already seen) matching `pattern`."""
        for line in self.seen:
            if re.search(pattern, line):
                return line
        deadline = time.monotonic() + seconds
        while True:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"{self.name} never printed /{pattern}/:\n" + "\n".join(self.seen))
            if line is None:
                raise AssertionError(f"{self.name} exited ({self.proc.wait()}) before /{pattern}/:\n"
                                     + "\n".join(self.seen))
            self.seen.append(line)
            if re.search(pattern, line):
                return line

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


def key_ids(payloads):
    return [base64.b64decode(p["metadata"]["tcodec-key-id"]).decode() for p in payloads]


def test_one_workflow_across_python_typescript_and_rust_workers(dev_server, keyring, tmp_path):
    path, master, env = keyring
    worker_env = {**os.environ, **env, "TEMPORAL_ADDRESS": dev_server, "NO_COLOR": "1"}
    worker_env.pop("TCODEC_DECODE_ALLOW", None)
    rust_bin = ROOT / "target" / "debug" / "onboarding-worker"
    assert rust_bin.exists(), f"{rust_bin} is missing: cargo build -p tcodec-onboarding"
    node = Process("the TypeScript worker", ["node", str(ROOT / "bindings/node/tests/polyglot_worker.mjs")],
                   worker_env)
    rust = Process("the Rust worker", [str(rust_bin)], worker_env)
    config = tmp_path / "tcodec.toml"
    config.write_text(f'listen = "127.0.0.1:0"\n[kek]\nmaster_key_file = "{master}"\n'
                      f'[namespaces.default]\nkeyring = "{path}"\n')
    server = Process("tcodec serve", [str(TCODEC), "serve", "--config", str(config)], worker_env)
    codec = tcodec.Codec(tcodec.Keyring.open(path, master_key_file=master))
    workflow_id = f"polyglot-{uuid.uuid4()}"
    try:
        node.wait_for(r"primary key k1")
        node.wait_for(r"polling task queue")
        rust.wait_for(r"primary key k1")
        rust.wait_for(r"polling task queue")
        codec_url = re.search(r"listening on (\S+)", server.wait_for(r"listening on ")).group(1)

        async def wait_until(what, check, seconds=60):
            deadline = time.monotonic() + seconds
            while not await check():
                assert time.monotonic() < deadline, f"gave up waiting for {what}"
                await asyncio.sleep(0.05)

        async def scenario():
            client = await Client.connect(dev_server, data_converter=tcodec.temporal.data_converter(codec))
            async with Worker(client, task_queue=PYTHON_QUEUE, workflows=[PolyglotOnboarding],
                              workflow_runner=UnsandboxedWorkflowRunner()):
                handle = await client.start_workflow("PolyglotOnboarding", CUSTOMER, id=workflow_id,
                                                     task_queue=PYTHON_QUEUE)

                async def both_activities_done():
                    events = [e async for e in handle.fetch_history_events()]
                    return sum(e.HasField("activity_task_completed_event_attributes") for e in events) == 2

                await wait_until("the first two activities", both_activities_done)

                # Rotation, phase one: a pending key every reader must load before it is used.
                cli(env, "keys", "add")
                revision = tcodec.Keyring.open(path, master_key_file=master).revision
                for proc in (node, rust):
                    proc.wait_for(rf"revision {revision} in use")

                async def python_has(rev):
                    return codec.keyring.revision >= rev

                await wait_until("the Python worker to load the pending key", lambda: python_has(revision))
                # Phase two: promote it; every worker now seals under k2, no restart.
                cli(env, "keys", "promote", "k2")
                for proc in (node, rust):
                    proc.wait_for(r"primary key k2")

                async def python_primary():
                    return codec.keyring.primary == "k2"

                await wait_until("the Python worker to take the promotion", python_primary)
                await handle.signal(PolyglotOnboarding.confirm_address, NEW_ADDRESS)
                return await handle.result()

        result = asyncio.run(scenario())
        check_history(dev_server, workflow_id, result, codec_url)
    finally:
        for proc in (node, rust, server):
            proc.stop()


def check_history(dev_server, workflow_id, result, codec_url):

    # Each worker decoded what the others wrote: the record went Python -> TypeScript -> Rust ->
    # Rust -> TypeScript and came back whole.
    assert result["screened"] == "screened Ada Lovelace <ada@example.com>: no match"
    assert result["verified"] == "verified ada@example.com"
    assert result["account"]["card_last4"] == "1111" and result["account"]["address"] == NEW_ADDRESS
    assert result["letter"] == f"Dear Ada Lovelace, account acct-1111 is open; we will write to {NEW_ADDRESS}."

    # The server holds ciphertext only, failure messages included.
    raw = show(dev_server, workflow_id)
    encodings, texts = payload_strings(raw)
    assert encodings and set(encodings) == {"binary/tcodec"}, encodings
    leaked = [t for t in texts if any(p in t for p in PLAINTEXT)]
    assert not leaked, f"plaintext on the server: {leaked[:3]}"

    # Who sealed what, under which key: before the rotation k1, after it k2, in every language.
    events = raw["events"]
    by_id = {e["eventId"]: e for e in events}

    def activity_of(event, attrs):
        scheduled = by_id[event[attrs]["scheduledEventId"]]
        return scheduled["activityTaskScheduledEventAttributes"]["activityType"]["name"]

    sealed = {}
    failures = {}
    for e in events:
        if "workflowExecutionStartedEventAttributes" in e:
            sealed["start input (Python client)"] = key_ids(e["workflowExecutionStartedEventAttributes"]["input"]["payloads"])
        elif "activityTaskScheduledEventAttributes" in e:
            a = e["activityTaskScheduledEventAttributes"]
            sealed[f"{a['activityType']['name']} input (Python workflow)"] = key_ids(a["input"]["payloads"])
        elif "activityTaskCompletedEventAttributes" in e:
            name = activity_of(e, "activityTaskCompletedEventAttributes")
            sealed[f"{name} result"] = key_ids(e["activityTaskCompletedEventAttributes"]["result"]["payloads"])
        elif "activityTaskStartedEventAttributes" in e and e["activityTaskStartedEventAttributes"].get("lastFailure"):
            failure = e["activityTaskStartedEventAttributes"]["lastFailure"]
            failures[activity_of(e, "activityTaskStartedEventAttributes")] = (
                failure["message"], key_ids([failure["encodedAttributes"]]))
        elif "workflowExecutionSignaledEventAttributes" in e:
            sealed["signal (Python client)"] = key_ids(e["workflowExecutionSignaledEventAttributes"]["input"]["payloads"])
        elif "workflowExecutionCompletedEventAttributes" in e:
            sealed["result (Python workflow)"] = key_ids(e["workflowExecutionCompletedEventAttributes"]["result"]["payloads"])
    assert sealed == {
        "start input (Python client)": ["k1"],
        "screen_customer input (Python workflow)": ["k1"],
        "screen_customer result": ["k1"],  # TypeScript
        "OnboardingActivities::verify_identity input (Python workflow)": ["k1"],
        "OnboardingActivities::verify_identity result": ["k1"],  # Rust
        "signal (Python client)": ["k2"],
        "OnboardingActivities::open_account input (Python workflow)": ["k2"],
        "OnboardingActivities::open_account result": ["k2"],  # Rust
        "welcome_letter input (Python workflow)": ["k2"],
        "welcome_letter result": ["k2"],  # TypeScript
        "result (Python workflow)": ["k2"],
    }, sealed
    assert failures == {
        "screen_customer": ("Encoded failure", ["k1"]),  # TypeScript
        "OnboardingActivities::verify_identity": ("Encoded failure", ["k1"]),  # Rust
    }, failures

    # `tcodec history check`, with no key, finds the same: every payload of three languages
    # sealed, under k1 and k2, and both failures encoded.
    check = subprocess.run([str(TCODEC), "history", "check", "--json"], input=json.dumps(raw),
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stdout + check.stderr
    report = json.loads(check.stdout)
    assert report["sealed"] and not report["plaintext"], report
    assert set(report["sealed_by_format_and_key"]) == {"binary/tcodec"}, report
    assert set(report["sealed_by_format_and_key"]["binary/tcodec"]) == {"k1", "k2"}, report
    assert report["failures_encoded"] >= 2, report

    # Through the codec server, the CLI shows every payload and failure in plaintext.
    decoded = show(dev_server, workflow_id, codec_endpoint=codec_url)
    encodings, texts = payload_strings(decoded)
    assert encodings and "binary/tcodec" not in encodings, encodings
    shown = "\n".join(texts)
    for expected in ["sanctions screening for Ada Lovelace with card 4111 1111 1111 1111 timed out",
                     "identity check for Ada Lovelace with card 4111 1111 1111 1111 timed out",
                     "screened Ada Lovelace <ada@example.com>: no match", NEW_ADDRESS,
                     f"Dear Ada Lovelace, account acct-1111 is open; we will write to {NEW_ADDRESS}."]:
        assert expected in shown, f"{expected!r} not shown through the codec server"
