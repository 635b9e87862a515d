"""SIGKILL at random points of every stage, and of Snakemake itself (issue 17).

One uninterrupted run of a tiny workflow (train, measure, dense replay in three jobs, schedule,
figures, claims) is the reference; it also counts the events of each job (tests/faults/fault_points:
an event is a call of a function of the package, in any thread). Then the same workflow runs
again from nothing, in invocations each with a plan of kills drawn from a seeded RNG: every job
of a stage that still has kills to take is SIGKILLed at a random event of its work (a resumed
training at one of what is left of it); in some invocations the kill goes to Snakemake instead,
alone (its jobs run on, orphans, as after a closed login session) or with all its jobs (a node
going down), at a random event of a job or at a random time. After each invocation, before
anything reruns, every file under results/ that has its final name must equal the reference's
(partial files only under their temporary names); after a killed Snakemake the next run must
stop on its lock, and `snakemake --unlock` then `--rerun-incomplete` (docs/rerunning.md) goes
on. At the end every output equals the reference's: trajectory bit for bit, tables exactly,
figures byte for byte. The counts are in the session's summary (the property `summary`, which
conftest.py prints).
"""

import copy
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest
from helpers.compare_results import outputs, same
from helpers.runs import TINY_BASE
from helpers.workflow import Workflow

HOOKS = Path(__file__).parent / "fault_points"
SEED = 17
CONFIG = {
    "base": TINY_BASE,  # 44 steps, checkpoints 0, 1, 2, 10, 20, 30, 40, 44
    "train": {"device": "cpu"},
    "measure": {"samples": 1, "dense": True, "dense_job_steps": 15, "device": "cpu"},
    "schedule": {"smooth": 3, "retrain": False},
    # The analyses along the path are not among the stages below that take kills.
    "analyses": {"interpolation": False},
}
TOTAL_STEPS = 44
# Each `nwt` command's stage, and the commands whose outputs it reads (a job runs once they are
# done). A stage takes kills until it has had as many as KILLS says: every job of it is armed in
# each invocation; a job killed with its Snakemake counts too.
STAGES = {
    "train": "train",
    "measure": "measure",
    "replay": "replay",
    "figures": "figures",
    "segments": "other",
    "gather-dense": "other",
    "schedule": "other",
    "claims": "other",
}
NEEDS = {
    "measure": ["train"],
    "segments": ["train"],
    "replay": ["segments"],
    "gather-dense": ["replay"],
    "schedule": ["measure", "gather-dense"],
    "figures": ["schedule"],
    "claims": ["schedule"],
}
KILLS = {"train": 3, "measure": 3, "replay": 6, "figures": 3, "other": 3}
# The kills of Snakemake, one an invocation once training has had its kills: at a random time
# (with whatever jobs run then), alone, and with all its jobs (each at a random event of a job
# that can run then). The timed ones first: no job is armed then, and later, on a fast machine, a
# stage's last job could finish unkilled inside the window and leave the stage short of kills.
SNAKEMAKE_KILLS = ["timed", "timed", "snakemake", "node"]
RERUN = ["--keep-going", "--keep-incomplete", "--rerun-incomplete", "--scheduler", "greedy"]


def snakemake(
    root: Path, *args: str, env: dict, kill_after: float | None = None, timeout: float = 300
) -> tuple[int, str]:
    """Run Snakemake in a process group of its own (its jobs join it), SIGKILLed as a whole
    after `kill_after` seconds where given; (exit status, output)."""
    command = [sys.executable, "-m", "snakemake", "--cores", "2", *args]
    process = subprocess.Popen(
        command,
        cwd=root,
        env=env,
        text=True,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        output, _ = process.communicate(timeout=kill_after or timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        output, _ = process.communicate()
        if not kill_after:
            raise AssertionError(f"snakemake {args} ran past {timeout} s:\n{output}") from None
    return process.returncode, output


def wait_for_processes(marker: bytes, timeout: float = 120) -> None:
    """Wait until no process has `marker` in its environment: the jobs a killed Snakemake left."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        alive = []
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                if marker in Path(f"/proc/{pid}/environ").read_bytes():
                    alive.append(pid)
            except OSError:
                continue
        if not alive:
            return
        time.sleep(0.2)
    raise AssertionError(f"processes {alive} still run {timeout} s after their Snakemake died")


def temporary(name: str) -> bool:
    """A name the stages write under until the file is whole (trajectory/writer.py, files.py)."""
    return name.endswith(".partial") or name.startswith(".") and ".tmp" in name


def differences(results: Path, reference: Path, final: bool) -> tuple[int, list[str]]:
    """(outputs compared, what differs): every file with its final name must be the reference's;
    at the end, every reference output must be there and nothing temporary left."""
    found, expected, problems = outputs(results), outputs(reference), []
    for name, path in found.items():
        if temporary(path.name):
            if final:
                problems.append(f"{name}: a temporary file left at the end")
        elif name not in expected:
            problems.append(f"{name}: not an output of the uninterrupted run")
        elif not same(path, expected[name]):
            problems.append(f"{name}: differs from the uninterrupted run's")
    if final:
        problems += [f"{name}: missing" for name in expected.keys() - found.keys()]
    return sum(not temporary(Path(name).name) for name in found), problems


def hook_env(log: Path, plan: Path | None = None) -> dict:
    env = {
        **os.environ,
        # The hooks first (Python imports the first sitecustomize only), then the session's own
        # PYTHONPATH where it sets one (a worktree's src over the editable install's).
        "PYTHONPATH": os.pathsep.join(filter(None, [str(HOOKS), os.environ.get("PYTHONPATH")])),
        "NWT_FAULT_LOG": str(log),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
    }
    return env | ({"NWT_FAULT_PLAN": str(plan)} if plan else {})


def records(log: Path, start: int = 0) -> list[dict]:
    return [json.loads(line) for line in log.read_text().splitlines()[start:]]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, dict]]:
    """The uninterrupted run's results/, and each of its jobs' stage and events."""
    flow = Workflow(tmp_path_factory.mktemp("reference"), copy.deepcopy(CONFIG))
    log = flow.root / "jobs.jsonl"
    status, output = snakemake(flow.root, env=hook_env(log))
    assert status == 0, output
    jobs = {record["job"]: record for record in records(log) if record["record"] == "exit"}
    assert set(STAGES) == {job["stage"] for job in jobs.values()}, jobs
    return flow.root / "results", jobs


def resumed_step(results: Path) -> int:
    """The step a killed training resumes from (0 where it left no checkpoint)."""
    partial = results / "runs/base/trajectory.h5.partial"
    if not partial.exists():
        return 0
    with h5py.File(partial) as file:
        steps = file["checkpoints/step"][:]
    return int(steps[-1]) if len(steps) else 0


class Injector:
    """Plans each invocation's kills from a seeded RNG, and counts the kills that happened."""

    def __init__(self, jobs: dict[str, dict], results: Path, reference: Path):
        self.jobs, self.results, self.reference = jobs, results, reference
        self.rng = random.Random(SEED)
        self.kills = dict.fromkeys([*KILLS, "snakemake"], 0)
        self.modes = dict.fromkeys(SNAKEMAKE_KILLS, 0)
        self.snakemake_kills = list(SNAKEMAKE_KILLS)

    def pending(self, job: str) -> bool:
        """Whether a job (`command output`) has outputs still missing."""
        output = job.split(" ", 1)[1].removeprefix("results/")
        return any(
            not (self.results / name).exists()
            for name in outputs(self.reference)
            if name == output or name.startswith(output + "/")
        )

    def runnable(self) -> list[str]:
        """The pending jobs whose inputs are all there."""
        pending = {job for job in self.jobs if self.pending(job)}
        waiting = {self.jobs[job]["stage"] for job in pending}
        return sorted(
            job for job in pending if not waiting & set(NEEDS.get(self.jobs[job]["stage"], []))
        )

    def open_stages(self) -> set[str]:
        """The stages with kills still to take and a job left to take them."""
        stages = {STAGES[self.jobs[job]["stage"]] for job in self.jobs if self.pending(job)}
        return {stage for stage in stages if self.kills[stage] < KILLS[stage]}

    def done(self) -> bool:
        return not self.snakemake_kills and not self.open_stages()

    def at(self, job: str) -> int:
        """A random event of a job's work (of what is left of a resumed training)."""
        events = self.jobs[job]["events"]
        if self.jobs[job]["stage"] == "train":
            events = events * (TOTAL_STEPS - resumed_step(self.results)) // TOTAL_STEPS
        return self.rng.randint(1, max(1, events * 9 // 10))

    def plan(self, invocation: int) -> tuple[dict, float | None]:
        """{job: {at, target}} of the kills this invocation, and when to kill Snakemake at a
        random time (or None)."""
        armed = [
            job
            for job in sorted(self.jobs)
            if self.pending(job) and STAGES[self.jobs[job]["stage"]] in self.open_stages()
        ]
        plan = {job: {"at": self.at(job), "target": "job"} for job in armed}
        if not self.snakemake_kills or invocation < KILLS["train"]:
            return plan, None
        mode, runnable = self.snakemake_kills.pop(0), self.runnable()
        if mode == "timed" or not runnable:
            # No job killed before: they run when the time comes (Snakemake starts them ~3 s in).
            return {}, self.rng.uniform(4.0, 10.0)
        carrier = self.rng.choice(runnable)
        plan[carrier] = {"at": plan.get(carrier, {}).get("at") or self.at(carrier), "target": mode}
        return plan, None

    def count(self, logged: list[dict], timed_kill: bool) -> str | None:
        """Count an invocation's kills from what its jobs recorded: those killed at an event,
        and, where Snakemake was killed with its jobs, those that started and never exited.
        How Snakemake was killed (snakemake, node, timed), if it was."""
        killed = [record for record in logged if record["record"] == "kill"]
        for record in killed:
            if record["target"] in ("job", "node"):
                self.kills[STAGES[record["stage"]]] += 1
        mode = next((r["target"] for r in killed if r["target"] != "job"), None)
        mode = mode or ("timed" if timed_kill else None)
        if mode in ("node", "timed"):  # and the jobs running then with it
            ended = {record["job"] for record in logged if record["record"] in ("kill", "exit")}
            for record in logged:
                if record["record"] == "start" and record["job"] not in ended:
                    self.kills[STAGES[record["stage"]]] += 1
        if mode:
            self.kills["snakemake"] += 1
            self.modes[mode] += 1
        return mode

    def summary(self, compared: int, problems: int) -> str:
        per_stage = ", ".join(f"{stage} {count}" for stage, count in self.kills.items())
        modes = ", ".join(f"{mode} {count}" for mode, count in self.modes.items())
        return (
            f"fault injection: {sum(self.kills.values())} SIGKILLs ({per_stage}; Snakemake "
            f"killed {modes}), {compared} outputs compared with the uninterrupted run's, "
            f"{problems} differences"
        )


def test_sigkill_at_random_points_never_loses_or_fakes_an_output(
    tmp_path, reference, record_property
):
    reference_results, jobs = reference
    flow = Workflow(tmp_path / "flow", copy.deepcopy(CONFIG))
    results, plan_file, log = flow.root / "results", tmp_path / "plan.json", tmp_path / "jobs"
    log.touch()
    env = hook_env(log, plan_file)
    injector = Injector(jobs, results, reference_results)
    compared, problems, killed, refused_on_lock = 0, [], None, False
    for invocation in range(30):
        if injector.done():
            break
        if killed:  # docs/rerunning.md: --unlock, then --rerun-incomplete
            # Killed at a job's event, Snakemake held its lock: the next run stops on it.
            if killed != "timed" and not refused_on_lock:
                status, output = snakemake(flow.root, *RERUN, env=env)
                assert status != 0 and "LockException" in output, output
                refused_on_lock = True
            assert snakemake(flow.root, "--unlock", env=env)[0] == 0
        plan, kill_after = injector.plan(invocation)
        plan_file.write_text(json.dumps(plan))
        start = len(records(log))
        env["NWT_FAULT_INVOCATION"] = str(invocation)  # marks the processes of this one
        status, output = snakemake(flow.root, *RERUN, env=env, kill_after=kill_after)
        wait_for_processes(f"NWT_FAULT_INVOCATION={invocation}\0".encode())  # orphans finish
        timed_kill = kill_after is not None and status == -signal.SIGKILL
        killed = injector.count(records(log, start), timed_kill)
        count, found = differences(results, reference_results, final=False)
        compared += count
        problems += [f"after invocation {invocation}: {problem}" for problem in found]
    assert injector.done(), injector.kills

    if killed:
        assert snakemake(flow.root, "--unlock", env=env)[0] == 0
    plan_file.write_text("{}")
    status, output = snakemake(flow.root, "--rerun-incomplete", env=env)
    assert status == 0, output
    count, found = differences(results, reference_results, final=True)
    compared, problems = compared + count, problems + found
    record_property("summary", injector.summary(compared, len(problems)))
    assert not problems, "\n".join(problems)
    assert refused_on_lock and sum(injector.kills.values()) >= 20, injector.kills
    assert all(injector.kills[stage] >= 2 for stage in KILLS), injector.kills
