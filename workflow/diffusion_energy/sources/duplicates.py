"""One release under two names: published points that two sources both hold are refused.

Two ``public_sources`` entries can point at copies of one release (a download kept
twice, a folder copied and renamed in its ``source.yaml``). Each copy imports cleanly,
and the merged table would count every point twice. A point of a published source
is its upstream model, GPU name and settings, and the energy and time it reports: two
independent measurements never agree to nine digits in both, copies always do.
"""

from __future__ import annotations

import pandas as pd

from .schema import DatasetError

#: What identifies one published point: where, what and how it was run, and what it reported.
_SETTINGS = ("upstream_model", "gpu_name", "precision", "resolution", "steps", "batch", "num_gpus",
             "ulysses_degree", "ring_degree")
_VALUES = ("energy_j", "batch_time_s")


def _signature(frame: pd.DataFrame) -> pd.Series:
    parts = [frame[c].astype(str) for c in _SETTINGS if c in frame]
    for col in _VALUES:
        if col in frame:
            values = pd.to_numeric(frame[col], errors="coerce").to_numpy(dtype=float)
            parts.append(pd.Series([f"{v:.9g}" for v in values], index=frame.index))
    out = parts[0]
    for part in parts[1:]:
        out = out + "|" + part
    return out


def refuse_same_points(published: pd.DataFrame) -> None:
    """A DatasetError naming both sources when two of them hold the same upstream points."""
    if published.empty or "source" not in published or published["source"].nunique() < 2:
        return
    image = published[published["stage"] == "image"] if "stage" in published else published
    if image.empty:
        return
    sig = _signature(image)
    sources = image["source"].astype(str)
    first_source = sources.groupby(sig).transform("first")
    clash = image[(sources != first_source).to_numpy()]
    if clash.empty:
        return
    other = first_source[clash.index[0]]
    name = str(clash["source"].iloc[0])
    n_shared = int((sources[clash.index] == name).sum())
    n_total = int((sources == name).sum())
    row = clash.iloc[0]
    twin = image[(sig == sig[clash.index[0]]).to_numpy() & (sources == other).to_numpy()].iloc[0]
    where = [str(r.get("upstream_file", "")) for r in (twin, row)]
    raise DatasetError(
        f"public_sources {other!r} and {name!r} hold the same {n_shared} of {name!r}'s {n_total} points "
        f"(same model, GPU, settings, energy and time; e.g. {where[0]} and {where[1]}): one release under "
        "two names would count each point twice; keep one of them in public_sources")

