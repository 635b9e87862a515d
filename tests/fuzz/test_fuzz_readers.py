"""Every reader of a file from elsewhere, fed mutated copies of real files the workflow writes
(issue 27): each input ends in a valid reading or an error naming the file, never a traceback, a
hang past TIMEOUT_S, a crash or an output under its final name. Seeded (hypothesis derandomized),
bounded (each reader's share of the examples; the suite's time is printed), and summed up in one
line per reader at the end of the session."""

from __future__ import annotations

import shutil
import time

import pytest
from conftest import SUMMARY_PROPERTY
from helpers import fuzzing
from helpers.fuzz_readers import READERS, valid_run
from hypothesis import HealthCheck, Phase, given, settings

# A reader may take this long on one input before it counts as hung: generous, as a machine
# shared with other jobs stalls a 3 s input for a minute at times.
TIMEOUT_S = 120


@pytest.fixture(scope="module")
def fuzz_run(tmp_path_factory):
    return valid_run(tmp_path_factory.mktemp("valid"))


@pytest.fixture(scope="module")
def worker():
    worker = fuzzing.Worker(TIMEOUT_S)
    yield worker
    worker.stop()


@pytest.mark.parametrize("name", READERS)
def test_mutated_inputs_are_read_or_refused_naming_the_file(
    name, fuzz_run, worker, tmp_path, record_property
):
    reader = READERS[name]
    original = tmp_path / "original"
    original.mkdir()
    target = reader.make(original, fuzz_run).relative_to(original)
    counts = dict.fromkeys(["read", "refused", *fuzzing.FAILURES], 0)
    failures, slowest = [], [0.0]
    started = time.perf_counter()

    @settings(
        max_examples=reader.examples,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.generate],  # no shrinking: one failure is reported, not hunted down
        suppress_health_check=list(HealthCheck),
    )
    @given(mutation=reader.mutations(original / target))
    def one_input(mutation):
        work = tmp_path / "work"
        shutil.rmtree(work, ignore_errors=True)
        shutil.copytree(original, work)
        mutation.apply(work / target)
        began = time.perf_counter()
        kind, detail = fuzzing.outcome(worker, name, work / target, tmp_path / "out")
        slowest[0] = max(slowest[0], time.perf_counter() - began)
        counts[kind] += 1
        if kind in fuzzing.FAILURES:
            failures.append(f"{kind}: {mutation}\n{detail}")

    one_input()
    summary = (
        f"fuzz {name}: {sum(counts.values())} inputs, {counts['refused']} refused naming the "
        f"file, {counts['read']} read as valid; {counts['traceback']} tracebacks, "
        f"{counts['hang']} hangs, {counts['crash']} crashes, {counts['final-name']} files "
        f"under a final name ({time.perf_counter() - started:.0f} s, the slowest input "
        f"{slowest[0]:.1f} s)"
    )
    record_property(SUMMARY_PROPERTY, summary)
    assert not failures, "\n\n".join(failures[:5])
