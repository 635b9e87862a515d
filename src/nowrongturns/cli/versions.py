"""What made an output: the package's version and torch's, for `nwt --version` and the first
line of every job's log."""

from __future__ import annotations

from importlib import metadata

import nowrongturns


def versions() -> str:
    """From torch's metadata: importing torch takes seconds that most commands need not spend."""
    try:
        torch_version = metadata.version("torch")
    except metadata.PackageNotFoundError:
        torch_version = "not installed"
    return f"nowrongturns {nowrongturns.__version__}, torch {torch_version}"
