"""Debian packages that some tests need (Slurm, Chromium), installed by the test set-up itself.

CI runs as root on a fresh machine with Debian's package registry reachable, so a missing program
is installed there with apt-get. Where that is impossible (no root, no apt), the tests that need it
are skipped locally, but fail under CI (`CI` set), where a skip would hide a broken set-up.

    python3 tests/helpers/debian.py    # install them all now (.ci/run, while pip installs)

On a fresh machine Slurm and MariaDB alone took the tests' Slurm fixture 216 s to install; .ci/run
installs them all beside `make setup`'s pip install, which leaves a core free, and the tests find
them in place.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys

# program -> Debian package
SLURM_PACKAGES = {
    "munged": "munge",
    "mariadbd": "mariadb-server",
    "slurmdbd": "slurmdbd",
    "slurmctld": "slurmctld",
    "slurmd": "slurmd",
    "sbatch": "slurm-client",
}
BROWSER_PACKAGES = {"chromium": "chromium", "chromedriver": "chromium-driver"}


@functools.cache
def _apt_update() -> None:
    subprocess.run(["apt-get", "update", "-q"], check=True, capture_output=True, timeout=600)


def install_debian_packages(packages: dict[str, str]) -> list[str]:
    """Install the package of each program not on PATH ({program: debian package}); the
    packages installed. Raises RuntimeError, SubprocessError or OSError where it cannot."""
    missing = sorted({name for program, name in packages.items() if not shutil.which(program)})
    if not missing:
        return []
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise RuntimeError(f"installing {' '.join(missing)} needs root and apt-get")
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
    return missing


def ensure_debian_packages(packages: dict[str, str]) -> None:
    """Make sure each program is on PATH, installing its package, or skip the test (fail it
    under CI)."""
    try:
        install_debian_packages(packages)
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        skip_outside_ci(f"cannot install Debian packages: {error}")


def skip_outside_ci(message: str) -> None:
    """Skip a test that this machine cannot run; under CI, fail it instead."""
    import pytest  # not at the top: the script below runs before pytest is installed

    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


if __name__ == "__main__":
    try:
        installed = install_debian_packages({**SLURM_PACKAGES, **BROWSER_PACKAGES})
    except (RuntimeError, subprocess.SubprocessError, OSError) as error:
        # The tests that need them try again and say why they cannot.
        sys.exit(f"Debian packages not installed: {error}")
    print(f"Debian packages installed: {' '.join(installed) or 'none missing'}")
