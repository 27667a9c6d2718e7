"""The ``diffusion-energy`` command line: every workflow step also runs by hand.

Snakemake rules are thin shell calls of these subcommands. Subcommands live
with their area (``cli/*.py`` modules register theirs) so that this file only
dispatches. A ``cli`` module imports at its top only what builds its parser:
each command imports what it runs (pandas, the laws, torch), so ``--help`` and
a mistyped argument answer at once. Logging is at WARNING on stderr; ``-v``
gives the INFO lines (the workflow's rules pass it: their logs hold them).
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from .. import errors

log = logging.getLogger("diffusion_energy")

#: Modules that each define ``register(subparsers)``.
COMMAND_MODULES = (
    "diffusion_energy.cli.foundation",
    "diffusion_energy.cli.measurement",
    "diffusion_energy.cli.campaign",
    "diffusion_energy.cli.sources",
    "diffusion_energy.cli.analysis",
    "diffusion_energy.cli.modalities",
    "diffusion_energy.cli.parallelism",
    "diffusion_energy.cli.packaging",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffusion-energy",
        description="Measure, count and predict the GPU energy of diffusion image generation.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="-v: say what each step does (INFO lines, as the workflow's logs hold); "
                             "-vv: debug lines too (default: warnings and errors only)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def _paths(args: argparse.Namespace, output: bool) -> list[str]:
    """The command's output paths (``--out``, ``--outdir``, ``--*-out``) or all its path arguments."""
    found: list[str] = []
    for name, value in vars(args).items():
        is_output = name in ("out", "outdir") or name.endswith("_out")
        if name in ("func", "command") or (output and not is_output):
            continue
        values: list[Any] = value if isinstance(value, list) else [value]
        found += [v for v in values if isinstance(v, str)]
    return found


def report_error(command: str, exc: BaseException, args: argparse.Namespace) -> bool:
    """Print one line for a user error and return True; return False for a bug (keep the traceback)."""
    if isinstance(exc, json.JSONDecodeError):
        path = errors.json_file_of(exc, _paths(args, output=False))
        if path is None:
            return False
        message = f"{path}: not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno})"
    elif errors.is_user_error(exc):
        message = errors.describe(exc, _paths(args, output=True))
    else:
        return False
    log.debug("traceback", exc_info=exc)
    print(f"diffusion-energy {command}: error: {message}", file=sys.stderr)
    return True


def _drop_image_processor_notice(record: logging.LogRecord) -> bool:
    """transformers' note that CLIP's image processor falls back to PIL without torchvision.

    Diffusers' pipeline modules import that processor (HunyuanDiT's among them); no
    image is ever processed here, so the note says nothing about the command's result.
    """
    return "requires torchvision (not installed)" not in record.getMessage()


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand. Bad input (``errors.is_user_error``) ends with one clear line and exit
    status 2; a bug keeps its traceback."""
    try:
        parser = build_parser()
    except KeyboardInterrupt:  # SIGINT while importing (a time limit): one line, no traceback
        print("diffusion-energy: stopped while starting", file=sys.stderr)
        return 130
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=(logging.WARNING, logging.INFO, logging.DEBUG)[min(args.verbose, 2)],
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("transformers.utils.import_utils").addFilter(_drop_image_processor_notice)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:  # commands that keep partial work (measure) say what they kept
        print(f"diffusion-energy {args.command}: stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        if not report_error(args.command, exc, args):
            raise
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
