"""Measurement subcommands (filled in by the measurement work)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """No measurement subcommands yet."""
