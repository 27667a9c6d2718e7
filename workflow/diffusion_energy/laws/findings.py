"""What the laws found, in a few lines a reader can use: the head of ``results/summary.txt``.

Read from what ``crossval`` and ``fit`` wrote (``results/laws/laws.json`` and
``results/tables/``), never recomputed. Plain words first: how far off a
prediction for an architecture (and a GPU kind) nobody has shown the laws is,
and how often its interval holds the measured value, from the nested
cross-validation (every choice made without the group it is judged on); the
spread between architectures; then the law chosen and why, the baselines on the
same folds, the non-nested figures as a labelled diagnostic, the fitted
constants with any that ended at a bound named, the paper's law on this
workflow's own points, where a power law in FLOPs fails, and one held-out example.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..sources.schema import THIS_WORKFLOW
from .crossval import ALL

#: The energy the findings speak of (raw whole-GPU energy per image: what every source measured).
TARGET = "image"
#: The nested tables' name for the answer of the whole procedure (``nested.SELECTED``).
SELECTED = "selected"


def _read_csv(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_csv(path) if path.is_file() else None
    except (OSError, ValueError, pd.errors.EmptyDataError):
        return None


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%" if np.isfinite(x) else "n/a"


def heldout_lines(metrics: pd.DataFrame | None, candidates: list[str], label: str) -> list[str]:
    """One line per candidate: median / P90 absolute error (points) per GPU kind, then over all."""
    if metrics is None or metrics.empty:
        return [f"  {label}: not cross-validated"]
    m = metrics[metrics["target"] == TARGET]
    lines = [f"  {label} (median / P90 absolute error, points):"]
    for cand in candidates:
        c = m[m["candidate"] == cand]
        by_kind = "GPU kinds" in label
        per_kind = c[c["held_out"].astype(str) != ALL] if by_kind else c[c["held_out"] == ALL]
        per_kind = per_kind[per_kind["gpu"].astype(str) != ALL]
        if per_kind.empty:
            continue
        parts = [f"{g} {_pct(r.median_ape)} / {_pct(r.p90_ape)} ({int(r.n_points)})"
                 for g, r in per_kind.set_index("gpu").sort_index().iterrows()]
        pooled = c[(c["gpu"] == ALL) & (c["held_out"] == ALL)]
        if by_kind or pooled.empty:
            ape_all = ""
        else:
            r = pooled.iloc[0]
            ape_all = f"; all {_pct(r.median_ape)} / {_pct(r.p90_ape)} ({int(r.n_points)})"
        lines.append(f"    {cand:<19} " + ", ".join(parts) + ape_all)
    return lines


def coverage_line(lomo: pd.DataFrame | None, logo: pd.DataFrame | None, cand: str, level: float) -> str:
    """Share of held-out measurements inside the intervals ``predict`` gives (calibrated without them)."""
    parts = []
    for what, m in (("architectures left out", lomo), ("GPU kinds left out", logo)):
        if m is None or m.empty:
            continue
        c = m[(m["target"] == TARGET) & (m["candidate"] == cand)]
        rows = c[(c["gpu"] == ALL) & (c["held_out"] == ALL)] if what.startswith("arch") else \
            c[c["held_out"].astype(str) != ALL]
        if rows.empty:
            continue
        cov = float(np.average(rows["coverage"], weights=rows["n_points"]))
        width = float(np.median(rows["interval_ratio"])) if "interval_ratio" in rows else float("nan")
        parts.append(f"{what} {_pct(cov)} (median high/low {width:.2f})")
    head = f"  Held-out coverage of its {round(level * 100)}% intervals: "
    return head + "; ".join(parts) if parts else ""


def constants_line(law: Mapping[str, Any]) -> str:
    """The fitted constants of a roofline law (across kinds), a power law's exponents, or each part's of
    a blend."""
    if law.get("kind") == "blend":
        return "\n".join(constants_line(part).replace("  Fitted:", f"  Fitted ({name}):", 1)
                          for name, part in law.get("parts", {}).items())
    if law.get("kind") == "roofline":
        c = law["constants"][0]
        eff = ", ".join(f"{k} {v:.2g}" if k == "softmax" else f"{k} {v:.2f}"
                        for k, v in c["efficiency"].items())
        if "softmax" in c["efficiency"]:
            eff += " (softmax: attention's exponentials, one per score, after its FLOPs)"
        launch = ", ".join(f"{s} {v * 1e6:.1f} us" for s, v in c["launch_s"].items())
        kinds = ", ".join(f"{g} {v:.2f}" for g, v in (c.get("gpu_factor") or {}).items())
        return (f"  Fitted: efficiencies (share of datasheet peak) {eff}; launch cost per kernel {launch}; "
                f"time ~ (peak FLOP/s)^{c.get('peak_exponent', 0.0):.2f} across kinds"
                + (f", time factor per kind {kinds}" if kinds else "")
                + f"; energy ~ (datasheet J/FLOP)^{c.get('energy_exponent', 0.0):.2f} beyond the power "
                f"limit; static {c['pi_static']:.2f}, per FLOP {c['pi_flop']:.2f}, "
                f"per byte {c['pi_byte']:.2f} (units of the power limit)")
    coef = law.get("coefficients", {})
    return "  Fitted: " + ", ".join(f"{k} {v:.3f}" for k, v in coef.items() if k != "log_A")


def paper_law_lines(laws: pd.DataFrame | None, terms: pd.DataFrame | None) -> list[str]:
    """The paper's law on this workflow's own points, with its 95% bootstrap intervals."""
    if laws is None or laws.empty:
        return []
    own = laws[(laws["law"] == "paper") & (laws["source"] == THIS_WORKFLOW) & (laws["target"] == TARGET)
               & (laws["status"] == "fitted")]
    lines = []
    for _, r in own.iterrows():
        t = terms[(terms["law"] == "paper") & (terms["source"] == THIS_WORKFLOW) & (terms["target"] == TARGET)
                  & (terms["model"] == r["model"])] if terms is not None else pd.DataFrame()
        shown = [f"{x.term} {x.estimate:.3f} [{x.ci_low:.3f}, {x.ci_high:.3f}]" for x in t.itertuples()
                 if x.term != "log_A"]
        lines.append(f"  The paper's law on our own {r['model']} points ({int(r['n_points'])}): "
                     + ", ".join(shown) + f"; R^2 (logs) {r['r2_log']:.3f} (the paper: 0.97-0.99); "
                     "95% bootstrap intervals")
    return lines


def power_law_failure(energy: pd.DataFrame | None) -> list[str]:
    """Where energy is not a power law of FLOPs alone, on this workflow's points of one model and kind:
    energy per FLOP by resolution, and the exponent across resolutions (steps fixed) against the one
    within a resolution (steps vary)."""
    if energy is None or "source" not in energy:
        return []
    own = energy[(energy["source"] == THIS_WORKFLOW) & (energy["status"] == "ok")]
    lines = []
    for (model, gpu), part in own.groupby(["model", "gpu"]):
        if part["resolution"].nunique() < 2 or part["steps"].nunique() < 2:
            continue
        jpt = (part["energy_j"] / part["flops"] * 1e12).groupby(part["resolution"]).median()
        within = [np.polyfit(np.log(p["flops"]), np.log(p["energy_j"]), 1)[0]
                  for _, p in part.groupby("resolution") if len(p) >= 2]
        across = [np.polyfit(np.log(p["flops"]), np.log(p["energy_j"]), 1)[0]
                  for _, p in part.groupby("steps") if p["resolution"].nunique() >= 2]
        lo, hi = int(jpt.index.min()), int(jpt.index.max())
        lines.append(
            f"  Where a power law in FLOPs fails ({model} on {gpu}): {jpt.loc[lo]:.1f} J/TFLOP at {lo} px "
            f"against {jpt.loc[hi]:.1f} at {hi} px ({jpt.loc[lo] / jpt.loc[hi]:.1f}x: small images are "
            f"launch-bound); energy grows as FLOPs^{np.median(within):.2f} with the steps but as "
            f"FLOPs^{np.median(across):.2f} with the resolution, so one exponent in FLOPs cannot hold both "
            "(the paper's log(HW) term or the roofline's launch cost does)")
    return lines


def example_line(predictions: pd.DataFrame | None, cand: str) -> str:
    """A typical held-out prediction of the chosen law: batch 1, on the kind with the most points, the
    point with the median error (its architecture was left out of the fit)."""
    if predictions is None or predictions.empty:
        return ""
    p = predictions[(predictions["target"] == TARGET) & (predictions["candidate"] == cand)
                    & (predictions["batch"] == 1)]
    if p.empty:
        return ""
    gpu = p["gpu"].value_counts().index[0]
    p = p[p["gpu"] == gpu].assign(err=lambda f: f["log_ratio"].abs()).sort_values(["err", "model"])
    r = p.iloc[(len(p) - 1) // 2]
    return (f"  Example (held out): {r['model']} on {gpu}, {int(r['resolution'])} px, "
            f"{int(r['steps'])} steps, batch 1 ({r['source']}): predicted {r['predicted_j']:,.0f} J/image "
            f"[{r['low_j']:,.0f}, {r['high_j']:,.0f}], measured {r['measured_j']:,.0f} J "
            f"({100 * (r['predicted_j'] / r['measured_j'] - 1):+.1f}%), {r['model']} left out of the fit")


def _overall(metrics: pd.DataFrame | None, cand: str) -> pd.Series | None:
    if metrics is None or metrics.empty:
        return None
    m = metrics[(metrics["target"] == TARGET) & (metrics["candidate"] == cand) & (metrics["gpu"] == ALL)
                & (metrics["held_out"] == ALL)]
    return m.iloc[0] if len(m) else None


def nested_lines(lomo: pd.DataFrame | None, logo: pd.DataFrame | None, level: float) -> list[str]:
    """How sure, in plain words: the nested errors and coverage of the answer ``predict`` gives."""
    pct = round(level * 100)
    lines = []
    r = _overall(lomo, SELECTED)
    if r is not None:
        m = lomo[(lomo["target"] == TARGET) & (lomo["candidate"] == SELECTED)]
        per_arch = m[(m["gpu"] != ALL) & (m["held_out"] != ALL)].groupby("held_out")["median_ape"].median()
        kinds = m[(m["held_out"] == ALL) & (m["gpu"] != ALL)].set_index("gpu").sort_index()
        lines.append(f"  An architecture nobody has shown the laws: predicted within {_pct(r.median_ape)} "
                     "at the "
                     f"median ({_pct(r.p90_ape)} at P90, worst {_pct(r.max_ape)}); its {pct}% interval held "
                     f"{_pct(r.coverage)} of {int(r.n_points)} measured points (nested: each architecture "
                     "held out, every choice made without it)")
        if len(per_arch):
            lines.append(f"    per architecture, median error {_pct(per_arch.min())} to "
                         f"{_pct(per_arch.max())} "
                         f"(median {_pct(per_arch.median())}, {len(per_arch)} architectures); per GPU kind: "
                         + ", ".join(f"{g} {_pct(k.median_ape)} / {_pct(k.p90_ape)}, interval held "
                                     f"{_pct(k.coverage)}" for g, k in kinds.iterrows()))
    if logo is not None and not logo.empty:
        m = logo[(logo["target"] == TARGET) & (logo["candidate"] == SELECTED) & (logo["held_out"] != ALL)
                 & (logo["gpu"] != ALL)]
        if len(m):
            lines.append("  A GPU kind nobody measured (by its datasheet; nested, each kind held out): "
                         + ", ".join(f"{k.held_out} {_pct(k.median_ape)} median, {_pct(k.p90_ape)} P90, "
                                     f"interval held {_pct(k.coverage)}" for k in m.sort_values("held_out")
                                     .itertuples()))
    return lines


def bounds_line(law: Mapping[str, Any]) -> str:
    """The fitted constants of a roofline law (or a blend's roofline part) that ended at a bound."""
    from .roofline import at_bounds

    parts = [law] if law.get("kind") == "roofline" else [p for p in (law.get("parts") or {}).values()
                                                          if p.get("kind") == "roofline"]
    hits = [h for p in parts for c in p.get("constants", []) for h in at_bounds(c)]
    head = "  Warning, fitted constants at a bound of their physical range: "
    return head + "; ".join(hits) if hits else ""


def findings(root: str | Path = ".") -> list[str]:
    """The findings lines (empty when no law was fitted yet)."""
    root = Path(root)
    laws_path = root / "results" / "laws" / "laws.json"
    try:
        payload = json.loads(laws_path.read_text()) if laws_path.is_file() else {}
    except (OSError, ValueError):
        payload = {}
    entry = payload.get("pooled", {}).get(TARGET, {}) if isinstance(payload, dict) else {}
    if payload.get("status") != "ok" or not entry.get("selected"):
        reasons = sorted(set((entry.get("not_fitted") or {}).values())) if isinstance(entry, dict) else []
        if not reasons:
            return ["Findings: no law fitted (no measured points yet)."]
        return [f"Findings: no law fitted ({payload.get('n_points', 0)} single-GPU points: "
                f"{'; '.join(reasons)})."]
    tables = root / "results" / "tables"
    lomo, logo = _read_csv(tables / "lomo_metrics.csv"), _read_csv(tables / "logo_metrics.csv")
    nested_lomo = _read_csv(tables / "nested_lomo_metrics.csv")
    nested_logo = _read_csv(tables / "nested_logo_metrics.csv")
    chosen = entry["selected"]
    law = (entry.get("candidates", {}).get(chosen) or {}).get("law", {})
    others = [c for c in entry.get("baselines", []) if c != chosen]
    level = float(payload.get("settings", {}).get("prediction_level", 0.9))
    energy = None
    try:
        energy = pd.read_parquet(root / "results" / "energy.parquet")
    except (OSError, ValueError, ImportError):
        pass
    lines = [f"Findings (GPU energy per image; {payload.get('n_points', 0)} measured single-GPU points, "
             f"{len(payload.get('models', []))} architectures, "
             f"GPU kinds {', '.join(payload.get('gpus', []))}):"]
    lines += nested_lines(nested_lomo, nested_logo, level)
    lines.append(f"  The law that answers, one for every GPU kind: {chosen} ({entry.get('selection', '')}); "
                 "for a "
                 f"kind nobody measured: {entry.get('selected_unmeasured_gpu')} "
                 f"({entry.get('selection_unmeasured_gpu', '')})")
    lines += heldout_lines(nested_lomo, [SELECTED, chosen, *others], "Nested, architectures left out")
    lines += heldout_lines(nested_logo, [SELECTED, chosen, *others], "Nested, GPU kinds left out")
    lines += heldout_lines(lomo, [chosen], "Diagnostic, not a test (non-nested: the choices were made on "
                                           "these errors), architectures left out")
    cov = coverage_line(lomo, logo, chosen, level)
    lines += [cov.replace("Held-out coverage", "Diagnostic (non-nested): held-out coverage")] if cov else []
    lines.append(constants_line(law))
    warn = bounds_line(law)
    lines += [warn] if warn else []
    lines += paper_law_lines(_read_csv(tables / "laws.csv"), _read_csv(tables / "law_terms.csv"))
    lines += power_law_failure(energy)
    example = example_line(_read_csv(tables / "nested_lomo_predictions.csv"), SELECTED)
    lines += [example] if example else []
    return lines
