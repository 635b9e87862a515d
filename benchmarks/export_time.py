"""How long the exporters take on a results directory (goal for MLflow: the default results in
at most 10 s).

    python benchmarks/export_time.py results

Starts a real `mlflow server` on 127.0.0.1 with a local store (SQLite, artifacts on disk) in a
temporary directory, a worker per core of this 2-core VM (`--workers 2`; MLflow's default is 4)
and its job runner off (MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false), then times,
in this process (imports done before): the first MLflow export, a second one of the same
results, and the TensorBoard export. Printed: the runs, the metric values logged, the log_batch
calls, and the three times.
"""

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import mlflow  # noqa: F401  (imported before the clock starts, as a long-lived process has it)
from torch.utils import tensorboard  # noqa: F401

import nowrongturns
from nowrongturns.export.metrics import run_metrics
from nowrongturns.export.tensorboard import export_tensorboard
from nowrongturns.export.tracking import ENTITIES_PER_CALL, export_mlflow


def start_server(store: Path) -> tuple[subprocess.Popen, str]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    command = [Path(sys.executable).parent / "mlflow", "server", "--host", "127.0.0.1"]
    command += ["--port", str(port), "--workers", "2"]
    command += ["--backend-store-uri", f"sqlite:///{store / 'store.db'}"]
    command += ["--artifacts-destination", str(store / "artifacts")]
    log = (store / "server.log").open("w")
    # Without MLflow 3's job runner (huey consumers for its GenAI jobs, nothing of tracking):
    # on 2 cores, its processes' imports and polling take most of the CPU for the first minute.
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    server = subprocess.Popen(command, stdout=log, stderr=log, start_new_session=True, env=env)
    uri = f"http://127.0.0.1:{port}"
    for _ in range(240):
        try:
            urllib.request.urlopen(f"{uri}/health", timeout=2)
            return server, uri
        except OSError:
            time.sleep(0.5)
    raise RuntimeError(f"the mlflow server did not start: {(store / 'server.log').read_text()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("results", help="a results directory (the workflow's `results`)")
    args = parser.parse_args()
    results = nowrongturns.open_results(args.results)
    values = [len(run_metrics(run)) for run in results]
    calls = sum(-(-count // ENTITIES_PER_CALL) for count in values)
    print(f"{len(values)} runs, {sum(values)} metric values, {calls} log_batch calls at least")
    with tempfile.TemporaryDirectory() as folder:
        server, uri = start_server(Path(folder))
        try:
            for attempt in ("first", "again"):
                started = time.perf_counter()
                export_mlflow(args.results, uri, "benchmark")
                print(f"mlflow export ({attempt}): {time.perf_counter() - started:.1f} s")
        finally:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=60)
        started = time.perf_counter()
        export_tensorboard(args.results, Path(folder) / "tensorboard")
        print(f"tensorboard export: {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
