"""Figures quoted from a paper's text (``quoted-figures`` format), e.g. arXiv 2511.17031's.

The source folder's ``source.yaml`` names the table (``file``, relative to the folder)
and which of its rows are the paper's own (``source_prefix`` of the ``source`` column).
The table is ``resources/anchors/published.csv``: one row per published figure with
``source, model, gpu, resolution, steps, precision, cfg, batch, metric, value, unit``;
the ``energy_per_image`` rows (J or Wh) become points. They are marked ``quoted``:
figures read off a paper, not the raw data of a measurement.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path

from .provenance import SOURCE_FILE, SourceError, read_source_info
from .upstream import UpstreamPoint, precision_name, reader

J_PER = {"J": 1.0, "Wh": 3600.0, "kWh": 3.6e6}
COLUMNS = ("source", "model", "gpu", "resolution", "steps", "precision", "cfg", "batch", "metric", "value",
           "unit")


@reader("quoted-figures")
def read(folder: Path) -> list[UpstreamPoint]:
    settings = read_source_info(folder).extra
    if "file" not in settings or "source_prefix" not in settings:
        raise SourceError(f"{folder / SOURCE_FILE}: a quoted-figures source needs 'file' and 'source_prefix'")
    # Normalised, not resolved: the path rows record (upstream_file) stays relative to where the
    # workflow runs, so the same run in another folder writes the same table.
    path = Path(os.path.normpath(folder / settings["file"]))
    try:
        with path.open(newline="") as fh:
            reader = csv.DictReader(fh)
            missing = [c for c in COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise SourceError(f"{path}: missing column(s) {missing} (a quoted-figures table)")
            rows = list(reader)
    except FileNotFoundError:
        raise SourceError(f"{path}: missing (named by {folder / SOURCE_FILE})") from None
    points = []
    for i, row in enumerate(rows, start=2):  # line 1 is the header
        if not row["source"].startswith(settings["source_prefix"]) or row["metric"] != "energy_per_image":
            continue
        where = f"{path} line {i}"
        if row["unit"] not in J_PER:
            raise SourceError(f"{where}: unit {row['unit']!r} is not an energy unit ({', '.join(J_PER)})")
        try:
            value = float(row["value"]) * J_PER[row["unit"]]
            resolution, steps, batch = int(row["resolution"]), int(row["steps"]), int(row["batch"] or 1)
        except ValueError as exc:
            raise SourceError(f"{where}: {exc}") from None
        points.append(UpstreamPoint(
            where=where, upstream_model=row["model"], gpu_name=row["gpu"], resolution=resolution, steps=steps,
            precision=precision_name(row["precision"], where), batch=batch, energy_per_image_j=value,
            quoted=True, source_label=row["source"]))
    return points
