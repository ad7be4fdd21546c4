"""Drives one job with Temporal's Python SDK, using only what the README documents: workflow
type trainCurriculum, workflow ID = job name, the input JSON, the `progress` query, the
`pause` / `resume` signals, the `setUntil` update and the result JSON. Nothing of this project
is imported: a Python user has only the README.

Usage: drive_job.py ADDRESS TASK_QUEUE DUMP_FOLDER JOB_NAME
Prints JSON with what it saw at each step; the test asserts on it. Exits non-zero when a
step does something the README does not say (e.g. an update it says is rejected is accepted).
"""
import asyncio
import json
import sys
from datetime import timedelta

from temporalio.client import Client, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy


async def wait_for_state(handle, states, timeout_s=600):
    """Queries `progress` until its state is one of `states` (the event, not a time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        p = await handle.query("progress")
        if p["state"] in states:
            return p
        if loop.time() > deadline:
            raise TimeoutError(f"progress.state stayed {p['state']!r}, waiting for {states}")
        await asyncio.sleep(0.2)


async def main(address, task_queue, dump_folder, job):
    client = await Client.connect(address)
    # The README's input JSON, with small stage sizes (stage-config fields, via "set").
    job_input = {
        "jobName": job,
        "curriculum": "configs/curriculum/tiny.toml",
        "set": {
            "job.dump_folder": dump_folder,
            "training.global_batch_size": 1,
            "training.steps": 4,
            "checkpoint.interval": 2,
        },
        "until": "63s",
    }
    seen = {}
    handle = await client.start_workflow(
        "trainCurriculum", job_input, id=job, task_queue=task_queue, execution_timeout=timedelta(minutes=30)
    )
    seen["runId"] = handle.result_run_id
    # Pause at once: the workflow sees the signal before any stage can finish.
    await handle.signal("pause")
    again = await client.start_workflow(
        "trainCurriculum",
        job_input,
        id=job,
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
    )
    seen["useExistingRunId"] = again.result_run_id
    seen["paused"] = await wait_for_state(handle, ["paused"])
    try:
        await handle.execute_update("setUntil", "99s")
        seen["setUntilRejected"] = None
    except WorkflowUpdateFailedError as e:
        seen["setUntilRejected"] = str(e.cause.message if e.cause else e)
    seen["setUntilAccepted"] = await handle.execute_update("setUntil", "9s")
    seen["afterUpdate"] = await handle.query("progress")
    await handle.signal("resume")
    seen["resumed"] = await wait_for_state(handle, ["running", "completed"])
    seen["result"] = await handle.result()
    seen["final"] = await handle.query("progress")
    json.dump(seen, sys.stdout)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
