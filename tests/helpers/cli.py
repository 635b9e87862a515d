"""What an `nwt` command printed on stderr, less the line every command opens with (the versions
of nowrongturns and torch, the first line of each job's log)."""

from __future__ import annotations

import re

VERSIONS_LINE = re.compile(r"nwt [\w-]+: nowrongturns \S+, torch \S+")


def after_versions(stderr: str) -> str:
    """`stderr` without its opening versions line (which must be there)."""
    first, _, rest = stderr.partition("\n")
    assert VERSIONS_LINE.fullmatch(first), f"no versions line first: {stderr!r}"
    return rest
