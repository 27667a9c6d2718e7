"""Published numbers to compare with: energy per image and law coefficients.

``resources/anchors/published.csv`` quotes the paper (arXiv 2511.17031) and the
ML.ENERGY leaderboard. Its model names are mapped to the zoo's (sd2 -> sd21,
sd3.5-large -> sd35-large, ...); Wh become J. An energy anchor is matched to a
measured point only where the settings match: model, resolution, steps, CFG
and batch, and the precision class (fp16 and bf16 both count as half
precision, the zoo runs FLUX.1-dev and Qwen-Image in bf16). A
guidance-distilled model (FLUX.1-dev: no CFG batch) matches a published
"cfg true", which for it can only mean its distilled guidance. The GPU kind
need not match; ``same_gpu`` says whether it does.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..models import zoo
from .schema import THIS_WORKFLOW, DatasetError

log = logging.getLogger(__name__)

J_PER_WH = 3600.0
#: Published model names -> zoo names (names not here and not in the zoo are not compared).
MODEL_ALIASES = {"sd2": "sd21", "sd2.1": "sd21", "sd-2.1": "sd21", "sd1.5": "sd15", "sd-1.5": "sd15",
                 "sd3.5-large": "sd35-large", "sd3.5l": "sd35-large", "flux.1-dev": "flux-dev",
                 "flux-dev": "flux-dev", "qwen-image": "qwen-image", "sdxl": "sdxl"}
#: Published GPU names -> GPU kinds of the config.
GPU_ALIASES = {"a100-40gb": "a100", "a100-80gb": "a100", "h100-80gb": "h100", "rtx-a6000": "a6000"}
#: Anchor sources that are also imported data sources (an anchor is never compared with its own rows).
SOURCE_OF_ANCHOR = {"arXiv:2511.17031": "paper-2511.17031", "ML.ENERGY leaderboard v2": "mlenergy-v2"}
#: Published law metrics -> (our coefficient in the per-architecture law, how to read it).
LAW_METRICS = {"law_alpha": "alpha", "law_r2": "r2_log", "law_beta_dtype_fp32": "beta_dtype"}

ENERGY_COLUMNS = [
    "source", "data_source", "published_model", "model", "published_gpu", "gpu", "same_gpu", "resolution",
    "steps",
    "published_precision", "precision", "cfg", "batch", "published_j", "measured_j", "ratio", "note",
]
LAW_COLUMNS = ["source", "published_model", "model", "published_gpu", "metric", "published", "ours",
               "ours_ci_low", "ours_ci_high", "our_gpus", "our_source", "our_points", "note"]


#: Columns of the published anchors table (``resources/anchors/published.csv``).
PUBLISHED_COLUMNS = ("source", "model", "gpu", "resolution", "steps", "precision", "cfg", "batch", "metric",
                     "value", "unit")


def read_published(path: str | Path) -> pd.DataFrame:
    frame = pd.read_csv(path, dtype={"value": str})
    missing = [c for c in PUBLISHED_COLUMNS if c not in frame]
    if missing:
        raise DatasetError(f"{path}: not the published anchors table (resources/anchors/published.csv): "
                           f"no column(s) {', '.join(missing)}")
    frame["zoo_model"] = frame["model"].str.lower().map(lambda m: MODEL_ALIASES.get(m, m))
    frame["gpu_kind"] = frame["gpu"].str.lower().map(lambda g: GPU_ALIASES.get(g, g))
    return frame


def _to_j(value: str, unit: str) -> float:
    v = float(value)
    if unit == "Wh":
        return v * J_PER_WH
    if unit == "J":
        return v
    raise ValueError(f"unknown energy unit {unit!r} in the anchors")


def _distilled(model: str) -> bool:
    try:
        return not zoo.load_spec(model).cfg
    except zoo.ZooError:
        return False


def compare_energy(published: pd.DataFrame, energy: pd.DataFrame) -> pd.DataFrame:
    """``ENERGY_COLUMNS``: each published energy beside every measured point with the same settings."""
    anchors = published[published["metric"] == "energy_per_image"]
    rows: list[dict[str, Any]] = []
    if energy.empty:
        return pd.DataFrame(columns=ENERGY_COLUMNS)
    half = energy["precision"].astype(str).map(lambda p: "fp32" if p == "fp32" else "half")
    for _, a in anchors.iterrows():
        model = a["zoo_model"]
        published_cfg = str(a["cfg"]).lower() == "true"
        distilled = _distilled(model)
        want_cfg = False if (distilled and published_cfg) else published_cfg
        own = _data_source(a["source"])
        single = energy["num_gpus"].astype(float) == 1 if "num_gpus" in energy else True
        match = energy[
            single & (energy.get("source", pd.Series("", index=energy.index)).astype(str) != own)
            & (energy["model"] == model) & (energy["resolution"] == float(a["resolution"]))
            & (energy["steps"] == float(a["steps"])) & (energy["cfg"].astype(bool) == want_cfg)
            & (energy["batch"] == float(a["batch"]))
            & (half == ("fp32" if a["precision"] == "fp32" else "half"))
        ]
        notes = []
        if distilled and published_cfg:
            notes.append("guidance-distilled: no CFG batch")
        if str(a.get("note") or "") not in ("", "nan"):
            notes.append(str(a["note"]))
        pub_j = _to_j(a["value"], a["unit"])
        for _, m in match.iterrows():
            rows.append({
                "source": a["source"], "data_source": m.get("source", ""), "published_model": a["model"],
                "model": model,
                "published_gpu": a["gpu"], "gpu": m["gpu"], "same_gpu": m["gpu"] == a["gpu_kind"],
                "resolution": int(m["resolution"]), "steps": int(m["steps"]),
                "published_precision": a["precision"], "precision": m["precision"], "cfg": bool(m["cfg"]),
                "batch": int(m["batch"]), "published_j": pub_j, "measured_j": float(m["energy_j"]),
                "ratio": float(m["energy_j"]) / pub_j, "note": "; ".join(notes),
            })
    matched = {(r["source"], r["published_model"], r["resolution"], r["steps"]) for r in rows}
    log.info("%d of %d published energies have a measured point with the same settings",
             len(matched), len(anchors))
    return pd.DataFrame(rows, columns=ENERGY_COLUMNS)


def _data_source(anchor_source: str) -> str:
    """The imported data source an anchor's figures are (empty if none)."""
    return next((s for prefix, s in SOURCE_OF_ANCHOR.items() if str(anchor_source).startswith(prefix)), "")


def compare_laws(published: pd.DataFrame, payload: dict[str, Any]) -> pd.DataFrame:
    """``LAW_COLUMNS``: published exponents, R^2 and fp32 shifts beside our per-architecture laws.

    A published figure is compared with our law fitted on the same source's numbers where we have
    one (the paper's law refitted on the paper's own energies), else on this workflow's measurements.
    """
    per_arch = payload.get("per_architecture", {}).get("image", {}) if payload.get("status") == "ok" else {}
    rows = []
    for _, a in published[published["metric"].isin(list(LAW_METRICS))].iterrows():
        own = _data_source(a["source"])
        source = own if a["zoo_model"] in per_arch.get(own, {}) else THIS_WORKFLOW
        law = per_arch.get(source, {}).get(a["zoo_model"])
        if law is None:
            continue
        key = LAW_METRICS[a["metric"]]
        try:
            pub = float(a["value"])
        except ValueError:
            continue
        lo = hi = np.nan
        if key == "r2_log":
            ours = law["r2_log"]
        elif key in law["coefficients"]:
            i = law["design"]["terms"].index(key)
            ours, lo, hi = (np.nan if v is None else float(v)
                            for v in (law["coef"][i], law["ci_low"][i], law["ci_high"][i]))
        else:
            continue
        rows.append({"source": a["source"], "published_model": a["model"], "model": a["zoo_model"],
                     "published_gpu": a["gpu"], "metric": key, "published": pub, "ours": ours,
                     "ours_ci_low": lo, "ours_ci_high": hi, "our_gpus": " ".join(law["gpus"]),
                     "our_source": source, "our_points": int(law["n_points"]),
                     "note": str(a["note"]) if pd.notna(a["note"]) else ""})
    return pd.DataFrame(rows, columns=LAW_COLUMNS)
