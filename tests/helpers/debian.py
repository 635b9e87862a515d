"""Debian packages that some tests need (Slurm, Chromium), installed by the test set-up itself.

CI runs as root on a fresh machine with Debian's package registry reachable, so a missing program
is installed there with apt-get. Where that is impossible (no root, no apt), the tests that need it
are skipped locally, but fail under CI (`CI` set), where a skip would hide a broken set-up.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess

import pytest


@functools.cache
def _apt_update() -> None:
    subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, timeout=600)


def ensure_debian_packages(packages: dict[str, str]) -> None:
    """Make sure each program is on PATH, installing its package: {program: debian package}."""
    missing = sorted({name for program, name in packages.items() if not shutil.which(program)})
    if not missing:
        return
    try:
        if os.geteuid() != 0 or not shutil.which("apt-get"):
            raise RuntimeError("installing needs root and apt-get")
        _apt_update()
        subprocess.run(
            # Two session fixtures may install at once (Slurm, the browser): wait for dpkg's lock.
            ["apt-get", "install", "-y", "-q", "-o", "DPkg::Lock::Timeout=600"]
            + ["--no-install-recommends", *missing],
            check=True,
            capture_output=True,
            timeout=900,
            env={**os.environ, "DEBIAN_FRONTEND": "noninteractive"},
        )
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        skip_outside_ci(f"cannot install Debian packages {missing}: {error}")


def skip_outside_ci(message: str) -> None:
    """Skip a test that this machine cannot run; under CI, fail it instead."""
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)
