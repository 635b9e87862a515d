"""`nwt`: the workflow's stages as commands on files (commands.py), their parser (parser.py).

nwt --help
"""

from __future__ import annotations

import sys

from nowrongturns.cli.parser import parser
from nowrongturns.cli.versions import versions


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    # The first line of every job's log: what made its output.
    print(f"nwt {args.stage}: {versions()}", file=sys.stderr, flush=True)
    try:
        args.func(args)
    except Exception as error:
        if not _bad_input(error):
            raise
        sys.exit(f"nwt {args.stage}: error: {error}")  # bad input: no traceback


def _bad_input(error: Exception) -> bool:
    """A bad file or value, said in one line. The trajectory's errors are looked up only where a
    command loaded the trajectory module: importing it imports torch, 3 s of the start of every
    command that needs none (figures, claims)."""
    if isinstance(error, (ValueError, FileNotFoundError)):
        return True
    trajectory_format = sys.modules.get("nowrongturns.trajectory.format")
    if trajectory_format is not None and isinstance(error, trajectory_format.TrajectoryError):
        return True
    export = sys.modules.get("nowrongturns.export")  # an exporter's extra not installed
    return export is not None and isinstance(error, export.MissingExtraError)
