"""Energy of one image or video on several GPUs (xDiT sequence parallelism) from its energy on one.

ML.ENERGY v3 runs most of its configurations on 2-8 GPUs of one node, the
denoiser's sequence split U ways by Ulysses all-to-alls and R ways by ring
attention (U x R = N GPUs). What N GPUs spend beyond one is modelled by
three physical costs, fitted on the pairs of points the same source measured
on N GPUs and on one at the same settings:

* a **replicated share** s of the one-GPU energy that every added GPU spends
  again (the text encoder and VAE each rank runs, the kernel launches of every
  denoiser layer, which splitting the sequence does not divide): ``s (N - 1) E1``;
* **bytes exchanged** over NVLink: per GPU and image, Ulysses moves
  ``A/N (U-1)/U`` and the ring ``A/N (R-1)/2`` bytes, where A is the
  denoiser's attention activations (query, key, value and output of every
  attention call, as counted); each GPU spends ``k B / link`` seconds at its
  power limit, ``link`` being the datasheet's NVLink bandwidth per direction
  and k the exposed share of that time times the share of the power limit
  drawn meanwhile (one k for Ulysses, one for the ring);
* a **latency per collective**: every attention call is one Ulysses exchange
  (where U > 1) and R - 1 ring steps; each costs ``l`` seconds at the power limit
  on every GPU.

So ``E_N = E1 (1 + s (N - 1)) + N P_limit (k_U B_U / link + k_R B_R / link + l n)``.
Every constant is bounded by physics (s within [0, 1], k and l never below
0) and fitted on log errors. Its held-out error is measured leaving one
architecture out, both on the ratio alone (one-GPU energy measured) and end to
end (the one-GPU energy the nested single-GPU law predicts for the held-out
architecture); the prediction interval is that of a new architecture's
end-to-end error, the errors grouped by architecture (``intervals.grouped_bounds``,
the rule of the single-GPU laws: the next architecture is a new draw of an offset).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError
from ..sources import gpu_datasheets
from . import intervals, roofline

#: What makes two points "the same settings" apart from their GPU count.
PAIR_KEYS = ["source", "gpu", "model", "precision", "resolution", "frames", "steps", "cfg", "batch"]
#: Per-point communication features (per image, per GPU).
FEATURE_COLUMNS = ["ulysses_bytes", "ring_bytes", "collectives", "link_byte_s", "power_limit_w"]
PREDICTION_COLUMNS = [
    "modality", "held_out", *PAIR_KEYS, "num_gpus", "ulysses_degree", "ring_degree", "measured_j",
    "measured_one_gpu_j", "ratio_measured", "ratio_predicted", "ratio_ape", "one_gpu_predicted_j",
    "predicted_j", "low_j", "high_j", "ape", "log_ratio", "covered",
]
METRIC_COLUMNS = ["modality", "held_out", "gpu", "n_points", "ratio_median_ape", "median_ape", "p90_ape",
                  "max_ape", "mean_log_ratio", "coverage"]
#: Fewest held-out architectures whose errors make an empirical interval.
MIN_MODELS = 3
PARAMS = ("replicated_share", "ulysses_exposure", "ring_exposure", "collective_latency_s")
#: Bounds of each constant (physics: a share within [0, 1]; an exposure or a latency never negative).
BOUNDS = {"replicated_share": (0.0, 1.0), "ulysses_exposure": (0.0, np.inf), "ring_exposure": (0.0, np.inf),
          "collective_latency_s": (0.0, np.inf)}
#: Units the solver sees each constant in (a latency in microseconds), so that every step is of order 1.
_SCALE = np.array([1.0, 1.0, 1.0, 1e-6])


class ParallelError(UserError, ValueError):
    """No multi-GPU law can be fitted or asked (no pairs, a degree that does not multiply to N)."""


def degrees(num_gpus: int, ulysses: int | None = None, ring: int | None = None) -> tuple[int, int]:
    """(Ulysses, ring) degrees for ``num_gpus``: as given, the one missing from the other, and Ulysses
    over all GPUs where neither is given (the cheapest split on every ML.ENERGY v3 model measured:
    ring attention exchanges more, in more steps)."""
    if num_gpus < 1:
        raise ParallelError(f"--gpus must be at least 1, not {num_gpus}")
    if ulysses is None and ring is None:
        ulysses, ring = num_gpus, 1
    elif ulysses is None:
        ulysses = num_gpus // ring if ring and num_gpus % ring == 0 else 0
    elif ring is None:
        ring = num_gpus // ulysses if ulysses and num_gpus % ulysses == 0 else 0
    if ulysses is None or ring is None or ulysses < 1 or ring < 1 or ulysses * ring != num_gpus:
        raise ParallelError(f"--ulysses-degree {ulysses} x --ring-degree {ring} must equal --gpus {num_gpus} "
                            "(each at least 1)")
    return int(ulysses), int(ring)


def attention_work(points: pd.DataFrame, ops: pd.DataFrame, flops_table: pd.DataFrame) -> pd.DataFrame:
    """Per point (aligned with ``points``, which has ``point_id``): the denoiser's attention activation
    bytes per image (query, key, value and output of every call, at the point's precision) and its
    attention calls per image, from the per-op counts."""
    denoise = ops[ops["stage"].astype(str) == "denoise"]
    inputs = roofline.inputs_from_ops(points, denoise, flops_table)
    ids = points["point_id"].to_numpy(dtype=int)
    attention = inputs.op_class == roofline.OP_CLASSES.index("attention")
    return pd.DataFrame({
        "attention_bytes": inputs.per_point(np.where(attention, inputs.bytes * inputs.executions, 0.0), ids),
        "attention_calls": inputs.per_point(np.where(attention, inputs.executions, 0.0), ids),
    }, index=points.index)


def features(points: pd.DataFrame, work: pd.DataFrame,
             sheets: Mapping[str, gpu_datasheets.Datasheet]) -> pd.DataFrame:
    """``FEATURE_COLUMNS`` of each point (``num_gpus``, ``ulysses_degree``, ``ring_degree``, ``gpu``)
    from its attention work: bytes each GPU sends per image, collectives per image, the datasheet's
    link bandwidth per direction and power limit (NaN where the kind has no NVLink figure)."""
    n = points["num_gpus"].to_numpy(dtype=float)
    u = points["ulysses_degree"].to_numpy(dtype=float)
    r = points["ring_degree"].to_numpy(dtype=float)
    a = work["attention_bytes"].to_numpy(dtype=float)
    calls = work["attention_calls"].to_numpy(dtype=float)
    gpus = points["gpu"].astype(str)
    link = np.array([sheets[g].link_byte_s / 2 if g in sheets and sheets[g].link_byte_s else np.nan
                     for g in gpus])
    limit = np.array([sheets[g].power_limit_w if g in sheets else np.nan for g in gpus])
    return pd.DataFrame({
        "ulysses_bytes": a / n * (u - 1) / u,
        "ring_bytes": a / n * (r - 1) / 2,
        "collectives": calls * ((u > 1).astype(float) + (r - 1)),
        "link_byte_s": link, "power_limit_w": limit,
    }, index=points.index)


@dataclass(frozen=True)
class ParallelLaw:
    """The fitted costs of running on several GPUs (``PARAMS``), and what they were fitted on."""

    modality: str
    replicated_share: float
    ulysses_exposure: float
    ring_exposure: float
    collective_latency_s: float
    n_points: int
    models: tuple[str, ...]
    gpus: tuple[str, ...]
    sources: tuple[str, ...]
    rms_log: float
    #: Bounds of a new architecture's end-to-end log error log(measured / predicted), from the held-out
    #: errors grouped by architecture, and how many points and architectures they rest on.
    interval_low_log: float = float("nan")
    interval_high_log: float = float("nan")
    interval_level: float = 0.9
    interval_points: int = 0
    interval_models: int = 0
    #: The most GPUs of a point it was fitted on.
    max_gpus: int = 0

    def energy(self, one_gpu_j: np.ndarray, num_gpus: np.ndarray, feats: pd.DataFrame) -> np.ndarray:
        """Energy of the whole set of GPUs per image, J, from the one-GPU energy of the same point."""
        n = np.asarray(num_gpus, dtype=float)
        e1 = np.asarray(one_gpu_j, dtype=float)
        seconds = ((self.ulysses_exposure * feats["ulysses_bytes"].to_numpy(float)
                    + self.ring_exposure * feats["ring_bytes"].to_numpy(float))
                   / feats["link_byte_s"].to_numpy(float)
                   + self.collective_latency_s * feats["collectives"].to_numpy(float))
        comm = np.where(n > 1, n * feats["power_limit_w"].to_numpy(float) * seconds, 0.0)
        return e1 * (1 + self.replicated_share * (n - 1)) + comm

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(models=list(self.models), gpus=list(self.gpus), sources=list(self.sources), status="ok")
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in d.items()}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> ParallelLaw:
        fields = cls.__dataclass_fields__
        values = {k: (float("nan") if v is None else v) for k, v in d.items() if k in fields}
        for k in ("models", "gpus", "sources"):
            values[k] = tuple(values.get(k, ()))
        return cls(**values)


def pairs(points: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(paired, unpaired): each multi-GPU point with ``measured_one_gpu_j``, the energy its source measured
    on one GPU at the same settings; the multi-GPU points that have none (never fitted, listed)."""
    keys = [k for k in PAIR_KEYS if k in points]
    one = points[points["num_gpus"].astype(float) == 1]
    dup = one.duplicated(keys, keep=False)
    one = one[~dup][keys + ["energy_j"]].rename(columns={"energy_j": "measured_one_gpu_j"})
    multi = points[points["num_gpus"].astype(float) > 1]
    merged = multi.merge(one, on=keys, how="left")
    merged.index = multi.index
    has = merged["measured_one_gpu_j"].notna()
    return merged[has], merged[~has]


def _log_errors(z: np.ndarray, e1: np.ndarray, n: np.ndarray, feats: pd.DataFrame, measured: np.ndarray,
                modality: str) -> np.ndarray:
    law = ParallelLaw(modality, *(z * _SCALE), 0, (), (), (), float("nan"))
    return np.log(law.energy(e1, n, feats) / measured)


def fit(paired: pd.DataFrame, feats: pd.DataFrame, modality: str) -> ParallelLaw:
    """The constants that best explain ``paired``'s energies from their one-GPU energies (least squares
    in logs, within ``BOUNDS``)."""
    if not np.isfinite(feats[FEATURE_COLUMNS].to_numpy(float)).all():
        raise ParallelError(f"{modality}: some points lack a feature (a GPU kind without an NVLink figure?): "
                            "``run`` lists them apart before fitting")
    if paired["model"].nunique() < 2 or len(paired) < len(PARAMS) + 1:
        raise ParallelError(f"{modality}: {len(paired)} multi-GPU point(s) of {paired['model'].nunique()} "
                            "architecture(s) with a one-GPU point at the same settings: too few to fit")
    e1 = paired["measured_one_gpu_j"].to_numpy(float)
    n = paired["num_gpus"].to_numpy(float)
    measured = paired["energy_j"].to_numpy(float)
    from scipy.optimize import least_squares  # the fit only: predict reads a fitted law

    lo = np.array([BOUNDS[p][0] for p in PARAMS]) / _SCALE
    hi = np.array([BOUNDS[p][1] for p in PARAMS]) / _SCALE
    res = least_squares(lambda z: _log_errors(z, e1, n, feats, measured, modality), x0=[0.1, 1.0, 1.0, 10.0],
                        bounds=(lo, hi), x_scale=1.0)
    z = res.x * _SCALE
    rms = float(np.sqrt(np.mean(res.fun ** 2)))
    def values(col: str) -> tuple[str, ...]:
        return tuple(sorted(paired[col].astype(str).unique()))

    return ParallelLaw(modality, *map(float, z), len(paired), values("model"), values("gpu"),
                       values("source"), rms, max_gpus=int(paired["num_gpus"].max()))


def _bounds(errors: np.ndarray, models: np.ndarray, level: float) -> tuple[float, float]:
    """The interval of a new architecture's log error from errors grouped by architecture
    (``intervals.grouped_bounds``: the architecture is the draw, as for one GPU), kept around 0."""
    lo, hi = intervals.grouped_bounds(np.asarray(errors, float), np.asarray(models), level)
    return float(min(lo, 0.0)), float(max(hi, 0.0))


def leave_one_model_out(paired: pd.DataFrame, feats: pd.DataFrame, modality: str,
                        one_gpu_heldout: pd.DataFrame | None, level: float) -> pd.DataFrame:
    """Every multi-GPU point predicted by a law fitted without its architecture: the ratio alone (its
    one-GPU energy measured) and end to end (the one-GPU energy ``one_gpu_heldout`` predicts for it,
    held out too). Each architecture's interval comes from the other architectures' end-to-end errors
    (``covered``), so its coverage is out of sample as well."""
    rows = []
    keys = [k for k in PAIR_KEYS if k in paired]
    for model in sorted(paired["model"].astype(str).unique()):
        test = (paired["model"].astype(str) == model).to_numpy()
        try:
            law = fit(paired[~test], feats[~test], modality)
        except ParallelError:
            continue
        part, f = paired[test], feats[test]
        n = part["num_gpus"].to_numpy(float)
        ratio_pred = law.energy(part["measured_one_gpu_j"].to_numpy(float), n, f) \
            / part["measured_one_gpu_j"].to_numpy(float)
        out = part[[*keys, "num_gpus", "ulysses_degree", "ring_degree"]].assign(
            modality=modality, held_out=model, measured_j=part["energy_j"].to_numpy(float),
            measured_one_gpu_j=part["measured_one_gpu_j"].to_numpy(float),
            ratio_measured=part["energy_j"].to_numpy(float) / part["measured_one_gpu_j"].to_numpy(float),
            ratio_predicted=ratio_pred)
        one = lo1 = hi1 = np.full(len(part), np.nan)
        if one_gpu_heldout is not None and len(one_gpu_heldout):
            cols = [c for c in ("predicted_j", "low_j", "high_j") if c in one_gpu_heldout]
            m = part[keys].merge(one_gpu_heldout[keys + cols].drop_duplicates(keys), on=keys, how="left")
            one = m["predicted_j"].to_numpy(float)
            lo1, hi1 = (m[c].to_numpy(float) if c in m else np.full(len(m), np.nan)
                        for c in ("low_j", "high_j"))
        out["one_gpu_predicted_j"] = one
        out["predicted_j"] = law.energy(one, n, f)
        # The one-GPU interval carried by the predicted ratio: the floor of the multi-GPU interval.
        out["one_gpu_low_j"] = lo1 * out["predicted_j"].to_numpy(float) / one
        out["one_gpu_high_j"] = hi1 * out["predicted_j"].to_numpy(float) / one
        rows.append(out)
    if not rows:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    table = pd.concat(rows, ignore_index=True)
    table["ratio_ape"] = (table["ratio_predicted"] / table["ratio_measured"] - 1).abs()
    table["ape"] = (table["predicted_j"] / table["measured_j"] - 1).abs()
    table["log_ratio"] = np.log(table["measured_j"] / table["predicted_j"])
    table["low_j"], table["high_j"], table["covered"] = np.nan, np.nan, pd.NA
    for model in table["held_out"].unique():
        mine = (table["held_out"] == model).to_numpy()
        others = table.loc[~mine].dropna(subset=["log_ratio"])
        if others["held_out"].nunique() < MIN_MODELS - 1:
            continue
        lo, hi = _bounds(others["log_ratio"].to_numpy(), others["held_out"].to_numpy(), level)
        table.loc[mine, "low_j"] = np.fmin(table.loc[mine, "predicted_j"] * math.exp(lo),
                                           table.loc[mine, "one_gpu_low_j"])
        table.loc[mine, "high_j"] = np.fmax(table.loc[mine, "predicted_j"] * math.exp(hi),
                                            table.loc[mine, "one_gpu_high_j"])
        known = mine & table["predicted_j"].notna().to_numpy()
        table.loc[known, "covered"] = ((table.loc[known, "measured_j"] >= table.loc[known, "low_j"])
                                       & (table.loc[known, "measured_j"] <= table.loc[known, "high_j"]))
    return table[PREDICTION_COLUMNS]


def metrics(table: pd.DataFrame) -> pd.DataFrame:
    """Held-out errors per modality, over all points and per architecture and GPU kind."""
    rows = []
    for modality, part in table.groupby("modality"):
        groups: list[tuple[str, str, pd.DataFrame]] = [("all", "all", part)]
        groups += [("all", str(g), p) for g, p in part.groupby("gpu")]
        groups += [(str(m), "all", p) for m, p in part.groupby("held_out")]
        for held, gpu, p in groups:
            ape = p["ape"].dropna()
            covered = p["covered"].dropna().astype(bool)
            rows.append({
                "modality": modality, "held_out": held, "gpu": gpu, "n_points": len(p),
                "ratio_median_ape": float(p["ratio_ape"].median()),
                "median_ape": float(ape.median()) if len(ape) else np.nan,
                "p90_ape": float(ape.quantile(0.9)) if len(ape) else np.nan,
                "max_ape": float(ape.max()) if len(ape) else np.nan,
                "mean_log_ratio": float(p["log_ratio"].mean()) if len(ape) else np.nan,
                "coverage": float(covered.mean()) if len(covered) else np.nan,
            })
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def with_interval(law: ParallelLaw, heldout: pd.DataFrame, level: float) -> ParallelLaw:
    """``law`` with the interval of its held-out end-to-end errors (else of its ratio-only errors)."""
    part = heldout[heldout["modality"] == law.modality]
    errors = part["log_ratio"]
    if errors.isna().all():
        errors = np.log(part["ratio_measured"] / part["ratio_predicted"])
    known = errors.notna()
    errors, models = errors[known], part.loc[known, "held_out"]
    if models.nunique() < MIN_MODELS:
        return law
    lo, hi = _bounds(errors.to_numpy(float), models.to_numpy(), level)
    return ParallelLaw(**{**asdict(law), "models": law.models, "gpus": law.gpus, "sources": law.sources,
                          "interval_low_log": lo, "interval_high_log": hi, "interval_level": level,
                          "interval_points": int(len(errors)),
                          "interval_models": int(part["held_out"].nunique())})


def run(points: pd.DataFrame, work: pd.DataFrame, sheets: Mapping[str, gpu_datasheets.Datasheet],
        one_gpu_heldout: Mapping[str, pd.DataFrame], level: float
        ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """(held-out predictions, metrics, laws JSON) for images (one frame) and videos (more)."""
    video = points["frames"].astype(float) > 1 if "frames" in points else pd.Series(False, index=points.index)
    tables, payload = [], {}
    for modality, rows in (("image", ~video), ("video", video)):
        part = points[rows.to_numpy()]
        paired, unpaired = pairs(part)
        feats = features(paired, work.loc[paired.index], sheets)
        linked = np.isfinite(feats[FEATURE_COLUMNS].to_numpy(float)).all(axis=1)
        # Listed, never fitted: points without a one-GPU point at the same settings, and points on a
        # GPU kind whose datasheet gives no NVLink bandwidth (their bytes take no known time).
        listed = {"unpaired": [_label(r) for _, r in unpaired.iterrows()],
                  "no_nvlink": [_label(r) for _, r in paired[~linked].iterrows()]}
        paired, feats = paired[linked], feats[linked]
        try:
            law = fit(paired, feats, modality)
        except ParallelError as exc:
            payload[modality] = {"status": "not fitted", "reason": str(exc), **listed}
            continue
        held = leave_one_model_out(paired, feats, modality, one_gpu_heldout.get(modality), level)
        tables.append(held)
        law = with_interval(law, held, level)
        payload[modality] = {**law.to_dict(), **listed}
    table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=PREDICTION_COLUMNS)
    return table, metrics(table), payload


def _label(row: pd.Series) -> str:
    return (f"{row['source']} {row['gpu']} {row['model']} {int(row['resolution'])} px batch "
            f"{int(row['batch'])} on {int(row['num_gpus'])} GPUs "
            f"(U{int(row['ulysses_degree'])} x R{int(row['ring_degree'])})")


#: What ``run``'s JSON says it is (``read_laws`` refuses another file given in its place).
KIND = "multi-gpu laws"


def read_laws(path: str | Path) -> dict[str, Any]:
    """The multi-GPU laws JSON written by ``diffusion-energy parallel``; one clear error where it is
    unreadable or another file."""
    p = Path(path)
    try:
        payload = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ParallelError(f"{p}: not a readable multi-GPU laws file ({type(exc).__name__}); rerun "
                            "`snakemake results/laws/parallel.json`") from None
    if not isinstance(payload, dict) or payload.get("kind") != KIND:
        raise ParallelError(f"{p}: not a multi-GPU laws file written by `diffusion-energy parallel`")
    return payload


def law_for(payload: Mapping[str, Any], modality: str) -> ParallelLaw:
    """The stored law of ``modality``, or a ParallelError saying why there is none."""
    entry = payload.get(modality) if isinstance(payload, Mapping) else None
    if not isinstance(entry, Mapping):
        raise ParallelError(f"no multi-GPU law for {modality} in the laws (refit: `snakemake "
                            "results/laws/parallel.json`)")
    if entry.get("status") != "ok":
        raise ParallelError(f"no multi-GPU law for {modality}: {entry.get('reason', 'not fitted')}")
    return ParallelLaw.from_dict(entry)


def describe(law: ParallelLaw) -> str:
    """One line: the fitted costs, in their units."""
    return (f"replicated share {law.replicated_share:.3f} of the one-GPU energy per added GPU; exposed "
            f"NVLink time x power share: Ulysses {law.ulysses_exposure:.2f}, ring {law.ring_exposure:.2f}; "
            f"{law.collective_latency_s * 1e6:.0f} us per collective at the power limit (fitted on "
            f"{law.n_points} multi-GPU points of {len(law.models)} architectures, {', '.join(law.sources)})")
