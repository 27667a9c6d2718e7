"""The ``diffusion-energy`` command line: every workflow step also runs by hand.

Snakemake rules are thin shell calls of these subcommands. Subcommands live
with their area (``cli/*.py`` modules register theirs) so that this file only
dispatches.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

log = logging.getLogger("diffusion_energy")

#: Modules that each define ``register(subparsers)``.
COMMAND_MODULES = (
    "diffusion_energy.cli.foundation",
    "diffusion_energy.cli.measurement",
    "diffusion_energy.cli.sources",
    "diffusion_energy.cli.analysis",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="diffusion-energy",
        description="Measure, count and predict the GPU energy of diffusion image generation.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # Domain errors (bad config, unknown model, wrong GPU) end with one clear line.
        log.debug("traceback", exc_info=True)
        print(f"diffusion-energy {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
