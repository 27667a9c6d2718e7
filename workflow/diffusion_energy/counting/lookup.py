"""Counts of a point for ``predict``: the shipped ones where they hold it, else counted on the meta device.

Counting on the meta device (``counting.flops``) imports torch and diffusers and
traces every call: seconds to tens of seconds per model. The workflow's counts
of every shape it measured or imported ship with the package
(``package_data``: ``flops.parquet`` and ``flops_ops.parquet``); a point whose
shapes are all there, counted from this very architecture file (same SHA-256),
is answered from them, exactly as the workflow counted it. Any other point (a
new resolution or batch, an edited or new architecture file) is counted.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import TYPE_CHECKING

from .. import package_data

if TYPE_CHECKING:
    import pandas as pd

    from ..models.spec import ModelSpec

log = logging.getLogger(__name__)

#: Keys of one counted shape in both tables.
SHAPE_KEYS = ["resolution", "frames", "cfg", "batch"]


def _shape(spec: ModelSpec, shape: tuple) -> tuple[int, bool, int, int]:
    """(resolution, cfg, batch[, frames]) -> (resolution, cfg, batch, frames), frames None or missing:
    the model's usual (as ``flops.frames_shape``)."""
    res, cfg, batch, *rest = shape
    frames = rest[0] if rest and rest[0] is not None else spec.default_frames
    return int(res), bool(cfg), int(batch), int(frames)


def shipped_counts(spec: ModelSpec, shapes: Iterable[tuple]) -> tuple[pd.DataFrame, pd.DataFrame] | None:
    """The shipped (FLOPs table, per-op table) rows of ``shapes``, or None unless every shape is there,
    counted from the same architecture file as ``spec``'s."""
    wanted = sorted({_shape(spec, s) for s in shapes})
    facts = package_data.zoo_facts().get("architectures", {})
    if (spec.source is None or not spec.source.is_file() or spec.name not in facts
            or facts[spec.name] != package_data.file_sha256(spec.source)):
        return None
    flops_path, ops_path = package_data.path(package_data.FLOPS), package_data.path(package_data.OPS)
    if not (flops_path.is_file() and ops_path.is_file()):
        return None
    import pandas as pd

    keys = pd.DataFrame(wanted, columns=["resolution", "cfg", "batch", "frames"])[SHAPE_KEYS]
    table = pd.read_parquet(flops_path, filters=[("model", "==", spec.name)])
    ops = pd.read_parquet(ops_path, filters=[("model", "==", spec.name)])
    table = table.merge(keys, on=SHAPE_KEYS)
    if len(table[SHAPE_KEYS].drop_duplicates()) != len(keys):
        return None
    ops = ops.merge(keys, on=SHAPE_KEYS)
    return table.reset_index(drop=True), ops.reset_index(drop=True)


def count_batch(spec: ModelSpec, resolution: int, cfg: bool, batch: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(FLOPs table, per-op table) of one pipeline call of ``batch`` outputs. A batch above 2 is derived
    from batches 1 and 2 (as the workflow counts): exact, and no meta tensor of ``batch`` rows is built
    (a batch of 10^11 would pass int64 tensor sizes)."""
    batches = sorted({batch} | ({1, 2} if batch > 2 else set()))
    table, ops = count_shapes(spec, [(resolution, cfg, b) for b in batches])
    return table[table["batch"] == batch], ops[ops["batch"] == batch]


def count_shapes(spec: ModelSpec, shapes: Iterable[tuple]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(FLOPs table, per-op table) of ``shapes`` (as ``flops.count_shapes``): shipped, else counted."""
    shapes = list(shapes)
    found = shipped_counts(spec, shapes)
    if found is not None:
        return found
    from . import flops  # imports torch: only for a point the shipped counts do not hold

    log.info("%s: counting %d shape(s) on the meta device (not in the shipped counts)", spec.name,
             len(shapes))
    return flops.count_shapes(spec, shapes)
