"""A worker without tcodec that fails a workflow with a plaintext message: what
whoever runs the Temporal server (or holds its API) can write into a history,
past every codec. Usage: rogue_worker.py ADDRESS WORKFLOW_ID MESSAGE"""

import asyncio
import os
import sys

from temporalio import workflow
from temporalio.client import Client
from temporalio.exceptions import ApplicationError
from temporalio.worker import Worker


@workflow.defn(name="Forged")
class Forged:
    @workflow.run
    async def run(self, message: str) -> str:
        raise ApplicationError(message, type="Approval", non_retryable=True)


async def main(address: str, workflow_id: str, message: str) -> None:
    client = await Client.connect(address)
    async with Worker(client, task_queue="rogue", workflows=[Forged]):
        handle = await client.start_workflow(
            Forged.run, message, id=workflow_id, task_queue="rogue"
        )
        try:
            await handle.result()
        except Exception:  # the failure is the point
            pass


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
    sys.stdout.flush()
    sys.stderr.flush()
    # The SDK's native threads can race the interpreter's shutdown
    # ("PyGILState_Release ... finalizing"); the work is done, so skip it.
    os._exit(0)
