"""SIGKILL at the n-th event of a workflow job (tests/faults/test_fault_injection.py), on
PYTHONPATH.

Python imports this module at the start of every process; it acts only in `nwt` processes and
only where the environment asks. An event is a call of a function of the nowrongturns package,
in any thread: so n, drawn at random by the test, falls anywhere in the job's own work, inside
a training step, between two dataset appends of a checkpoint, inside a writer before its rename.

    NWT_FAULT_PLAN=FILE   {job: {"at": n, "target": "job" | "snakemake" | "node"}}: at event n
                          SIGKILL this job, or the Snakemake that started it (the job runs on,
                          an orphan), or Snakemake and every job it runs (a node going down)
    NWT_FAULT_LOG=FILE    where each job records its start, its kill, its exit and how many
                          events it had: {job, stage, record, ...}, one JSON line each
"""

import atexit
import json
import os
import signal
import sys
import threading

# The file written with each output: what tells one job from another of the same stage.
OUTPUT_OPTIONS = ("--out", "--out-dir", "--csv")


def job_key(argv: list[str]) -> str:
    """`stage output`, as the test names a job: `train results/runs/base/trajectory.h5`."""
    output = next(argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg in OUTPUT_OPTIONS)
    return f"{argv[1]} {output}"


def install(plan_file: str, log_file: str) -> None:
    import nowrongturns

    package = os.path.dirname(nowrongturns.__file__)
    key, stage = job_key(sys.argv), sys.argv[1]
    plan = json.loads(open(plan_file).read() or "{}").get(key)
    events = [0]

    def record(kind: str, **fields) -> None:
        with open(log_file, "a") as log:  # one short line per write: appends do not interleave
            log.write(json.dumps({"job": key, "stage": stage, "record": kind, **fields}) + "\n")

    def kill() -> None:
        record("kill", **plan)
        snakemake = os.getpgrp()  # the test starts Snakemake as a process group of its own
        if plan["target"] == "job":
            os.kill(os.getpid(), signal.SIGKILL)
        elif plan["target"] == "snakemake":
            os.kill(snakemake, signal.SIGKILL)
        else:
            os.killpg(snakemake, signal.SIGKILL)

    def trace(frame, event, arg):
        """Called at each new frame only (no line tracing: it returns None)."""
        if frame.f_code.co_filename.startswith(package):
            events[0] += 1
            if plan and events[0] == plan["at"]:
                kill()

    record("start")
    atexit.register(lambda: record("exit", events=events[0]))
    threading.settrace(trace)
    sys.settrace(trace)


if sys.argv and sys.argv[0].endswith("nwt") and len(sys.argv) > 1:
    if os.environ.get("NWT_FAULT_LOG"):
        install(os.environ.get("NWT_FAULT_PLAN", os.devnull), os.environ["NWT_FAULT_LOG"])
