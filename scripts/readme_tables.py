"""Print the result tables of docs/reference/validation.md (markdown) from a run's tables, or write them
into that page, so no number is typed by hand.

    python scripts/readme_tables.py [--results results]                  # print them
    python scripts/readme_tables.py --write docs/reference/validation.md  # replace them in the page

Tables: the points per source and GPU kind, the leave-one-model-out table per GPU kind and candidate
(and per held-out architecture on the H100), the leave-one-GPU-out table, the paper's law on this
workflow's own points and refitted on the paper's own numbers beside the published exponents, and
the laws across modalities (image and video). With ``--write`` each table replaces the text between
``<!-- tables:NAME -->`` and ``<!-- /tables:NAME -->`` in the page; a page missing a table's markers
is an error, so no table is left stale without a word.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def pct(v: float) -> str:
    return f"{100 * v:.1f}%"


def errors(r: pd.Series) -> str:
    return f"{pct(r['median_ape'])} | {pct(r['p90_ape'])} | {pct(r['max_ape'])} | {r['spearman']:.3f}"


def role(candidate: str, chosen: str, baselines: list[str]) -> str:
    """The procedure's answer and the chosen law in bold, the baselines marked."""
    if candidate == "selected":
        return "**selected** (the procedure: its choice made without the group)"
    if candidate == chosen:
        return f"{candidate} **(chosen on all data)**"
    return f"{candidate} (baseline)" if candidate in baselines else candidate


def lomo_table(results: Path, table: str = "nested_lomo") -> str:
    """Every candidate per GPU kind and over all kinds, architectures left out: errors and the coverage
    of the 90% intervals (nested: the choice of law, the blend's weights and the intervals' calibration
    made without the architecture predicted; ``lomo``: the non-nested diagnostic)."""
    m = pd.read_csv(results / "tables" / f"{table}_metrics.csv")
    entry = json.loads((results / "laws" / "laws.json").read_text())["pooled"]["image"]
    m = m[(m["target"] == "image") & (m["held_out"] == "all")]
    lines = ["| GPU | candidate | points | median APE | P90 APE | worst APE | Spearman | "
             "90% interval coverage |", "|---|---|---|---|---|---|---|---|"]
    order = {g: i for i, g in enumerate(["all", "a100", "h100", "h200", "b200"])}
    m = m.assign(o=m["gpu"].map(order).fillna(9), s=m["candidate"] != "selected").sort_values(
        ["o", "gpu", "s", "p90_ape"])
    for _, r in m.iterrows():
        name = role(r["candidate"], entry["selected"], entry.get("baselines", []))
        lines.append(f"| {r['gpu']} | {name} | {int(r['n_points'])} | {errors(r)} | {pct(r['coverage'])} |")
    return "\n".join(lines)


def lomo_per_model(results: Path) -> str:
    """Median APE per held-out architecture (every GPU kind), nested, per candidate."""
    m = pd.read_csv(results / "tables" / "nested_lomo_metrics.csv")
    predictions = pd.read_csv(results / "tables" / "nested_lomo_predictions.csv")
    m = m[(m["target"] == "image") & (m["gpu"] == "all") & (m["held_out"] != "all")]
    p = predictions[(predictions["target"] == "image") & (predictions["candidate"] == "selected")]
    chosen = p.groupby("held_out")["chosen"].first()
    cov = m[m["candidate"] == "selected"].set_index("held_out")["coverage"]
    wide = m.pivot_table(index="held_out", columns="candidate", values="median_ape")
    cols = ["selected"] + [c for c in wide.columns if c != "selected"]
    lines = ["| held-out architecture | points | law chosen without it | " + " | ".join(cols)
             + " | interval coverage (selected) |", "|---|---|---|" + "---|" * (len(cols) + 1)]
    counts = m[m["candidate"] == "selected"].set_index("held_out")["n_points"]
    for model, row in wide.iterrows():
        lines.append(f"| {model} | {int(counts.get(model, 0))} | {chosen.get(model, '—')} | "
                     + " | ".join(pct(row[c]) for c in cols) + f" | {pct(cov.get(model, float('nan')))} |")
    return "Median APE per held-out architecture (nested, every GPU kind):\n\n" + "\n".join(lines)


def logo_table(results: Path, table: str = "nested_logo") -> str:
    m = pd.read_csv(results / "tables" / f"{table}_metrics.csv")
    entry = json.loads((results / "laws" / "laws.json").read_text())["pooled"]["image"]
    chosen = entry["selected_unmeasured_gpu"]
    m = m[(m["target"] == "image") & (m["held_out"] != "all") & (m["gpu"] != "all")]
    lines = ["| held-out GPU | candidate | points | median APE | P90 APE | worst APE | Spearman | "
             "90% interval coverage |", "|---|---|---|---|---|---|---|---|"]
    m = m.assign(s=m["candidate"] != "selected")
    for _, r in m.sort_values(["held_out", "s", "p90_ape"]).iterrows():
        lines.append(f"| {r['held_out']} | {role(r['candidate'], chosen, entry.get('baselines', []))} | "
                     f"{int(r['n_points'])} | {errors(r)} | {pct(r['coverage'])} |")
    return "\n".join(lines)


def nested_vs_diagnostic(results: Path) -> str:
    """The chosen law's errors nested beside non-nested, per GPU kind: how optimistic the old figures
    were (the non-nested choice and calibration saw the errors they report)."""
    entry = json.loads((results / "laws" / "laws.json").read_text())["pooled"]["image"]
    rows = []
    for table, what, cand in (("nested_lomo", "nested", "selected"), ("lomo", "non-nested (diagnostic)",
                                                                      entry["selected"])):
        m = pd.read_csv(results / "tables" / f"{table}_metrics.csv")
        m = m[(m["target"] == "image") & (m["held_out"] == "all") & (m["candidate"] == cand)]
        for _, r in m.iterrows():
            rows.append((r["gpu"], what, r))
    lines = ["| GPU | held out | median APE | P90 APE | worst APE | 90% interval coverage |",
             "|---|---|---|---|---|---|"]
    for gpu, what, r in sorted(rows, key=lambda x: (x[0] != "all", x[0], x[1])):
        lines.append(f"| {gpu} | {what} | {pct(r['median_ape'])} | {pct(r['p90_ape'])} | "
                     f"{pct(r['max_ape'])} | "
                     f"{pct(r['coverage'])} |")
    return "\n".join(lines)


def own_law_table(results: Path) -> str:
    """The paper's law on this workflow's own points, per architecture and GPU kind, with its 95%
    bootstrap intervals."""
    laws = pd.read_csv(results / "tables" / "laws.csv")
    terms = pd.read_csv(results / "tables" / "law_terms.csv")
    own = laws[(laws["source"] == "this-workflow") & (laws["law"] == "paper") & (laws["status"] == "fitted")]
    lines = ["| energy | architecture | points | α (95% CI) | β_res (95% CI) | R² (log) | dropped |",
             "|---|---|---|---|---|---|---|"]
    for _, f in own.sort_values(["target", "model"]).iterrows():
        t = terms[(terms["source"] == "this-workflow") & (terms["law"] == "paper")
                  & (terms["target"] == f["target"]) & (terms["model"] == f["model"])].set_index("term")

        def est(term: str, t: pd.DataFrame = t) -> str:
            if term not in t.index:
                return "—"
            r = t.loc[term]
            return f"{r['estimate']:.3f} ({r['ci_low']:.3f}–{r['ci_high']:.3f})"

        lines.append(f"| {f['target']} | {f['model']} | {int(f['n_points'])} | {est('alpha')} | "
                     f"{est('beta_res')} | {f['r2_log']:.3f} | {f['dropped']} |")
    return "\n".join(lines)


def paper_table(results: Path) -> str:
    laws = pd.read_csv(results / "tables" / "laws.csv")
    anchors = pd.read_csv(results / "tables" / "anchors_laws.csv")
    alpha = anchors[(anchors["metric"] == "alpha") & (anchors["published_gpu"] == "a100")]
    fits = laws[(laws["source"] == "paper-2511.17031") & (laws["target"] == "image")
                & (laws["status"] == "fitted")]
    lines = ["| architecture | published α (A100) | α refitted on the paper's 3 points (95% CI) | R² (log) | "
             "terms kept | dropped |", "|---|---|---|---|---|---|"]
    for _, f in fits.sort_values("model").iterrows():
        pub = alpha[alpha["model"] == f["model"]]["published"]
        ci = f"{f['alpha_ci_low']:.3f}–{f['alpha_ci_high']:.3f}"
        lines.append(f"| {f['model']} | {pub.iloc[0] if len(pub) else '—'} | {f['alpha']:.3f} ({ci}) | "
                     f"{f['r2_log']:.4f} | {f['terms']} | {f['dropped']} |")
    return "\n".join(lines)


def sources_table(results: Path) -> str:
    e = pd.read_parquet(results / "energy.parquet")
    g = e.groupby(["source", "gpu"]).agg(points=("model", "size"), models=("model", "nunique"),
                                         single_gpu=("num_gpus", lambda s: int((s == 1).sum())))
    lines = ["| source | GPU | points | single-GPU points | architectures |", "|---|---|---|---|---|"]
    for (s, gpu), r in g.iterrows():
        lines.append(f"| {s} | {gpu} | {r['points']} | {r['single_gpu']} | {r['models']} |")
    return "\n".join(lines)


def predict_marks(entry: dict) -> dict[str, str]:
    """Candidate -> the GPU kinds ``predict`` answers a video model on with it: each kind's own choice
    (``selected_by_gpu``), and ``selected`` for every other kind."""
    kinds: dict[str, list[str]] = {}
    for gpu, candidate in sorted(entry.get("selected_by_gpu", {}).items()):
        kinds.setdefault(candidate, []).append(gpu)
    kinds.setdefault(entry["selected"], []).append("other kinds")
    return {c: f" **(predict: {', '.join(g)})**" for c, g in kinds.items()}


def modality_table(results: Path) -> str:
    """Laws across modalities: every experiment and candidate over all GPU kinds, per modality; the rows
    of the joint model on videos marked with the GPU kinds ``predict`` answers with each."""
    m = pd.read_csv(results / "tables" / "modality_metrics.csv")
    marks = predict_marks(json.loads((results / "laws" / "modalities.json").read_text())["pooled"]["image"])
    m = m[(m["gpu"] == "all") & (m["held_out"] == "all")]
    lines = ["| experiment | predicts | candidate | points | median APE | P90 APE | worst APE | Spearman |",
             "|---|---|---|---|---|---|---|---|"]
    for _, r in m.sort_values(["experiment", "modality", "p90_ape"]).iterrows():
        star = marks.get(r["candidate"], "") if (r["experiment"], r["modality"]) == ("joint_lomo", "video") \
            else " **(the procedure, nested)**" if r["candidate"] == "selected" else ""
        lines.append(f"| {r['experiment']} | {r['modality']} | {r['candidate']}{star} | "
                     f"{int(r['n_points'])} | {errors(r)} |")
    return "\n".join(lines)


def modality_per_video_model(results: Path) -> str:
    """Median APE per video architecture (all GPU kinds) in each experiment, for predict's candidate."""
    m = pd.read_csv(results / "tables" / "modality_metrics.csv")
    chosen = json.loads((results / "laws" / "modalities.json").read_text())["pooled"]["image"]["selected"]
    m = m[(m["gpu"] == "all") & (m["held_out"] != "all") & (m["modality"] == "video")
          & (m["candidate"] == chosen)]
    wide = m.pivot_table(index="held_out", columns="experiment", values="median_ape")
    counts = m.groupby("held_out")["n_points"].max()
    lines = ["| video architecture | points | " + " | ".join(wide.columns) + " |",
             "|---|---|" + "---|" * len(wide.columns)]
    for model, row in wide.iterrows():
        lines.append(f"| {model} | {int(counts[model])} | " + " | ".join(pct(v) for v in row) + " |")
    return f"Median APE per video architecture ({chosen}):\n\n" + "\n".join(lines)


def multi_gpu_table(results: Path) -> str:
    """The multi-GPU law held out by architecture: per modality, GPU kind and architecture."""
    m = pd.read_csv(results / "tables" / "multi_gpu_metrics.csv")
    laws = json.loads((results / "laws" / "parallel.json").read_text())
    lines = ["| predicts | held out | GPU | points | ratio only, median APE | end to end, median APE | "
             "P90 APE | worst APE | 90% interval coverage |", "|---|---|---|---|---|---|---|---|---|"]
    for _, r in m.sort_values(["modality", "held_out", "gpu"], key=lambda c: c.replace("all", "")).iterrows():
        lines.append(f"| {r['modality']} | {r['held_out']} | {r['gpu']} | {int(r['n_points'])} | "
                     f"{pct(r['ratio_median_ape'])} | {pct(r['median_ape'])} | {pct(r['p90_ape'])} | "
                     f"{pct(r['max_ape'])} | {pct(r['coverage'])} |")
    fitted = ["", "Fitted on every pair:", ""] + [
        f"- {mod}: replicated share {e['replicated_share']:.3f} of the one-GPU energy per added GPU; "
        f"exposure over NVLink Ulysses {e['ulysses_exposure']:.2f}, ring {e['ring_exposure']:.2f}; "
        f"{e['collective_latency_s'] * 1e6:.0f} us per collective at the power limit ({e['n_points']} "
        f"points of {len(e['models'])} architectures; {len(e['unpaired'])} multi-GPU points without a "
        "one-GPU point at the same settings, listed in the laws file)"
        for mod, e in laws.items() if isinstance(e, dict) and e.get("status") == "ok"]
    return "\n".join(lines + fitted)


#: Marker name in the page -> (title, the function printing the table), in page order.
TABLES: dict[str, tuple[str, Callable[[Path], str]]] = {
    "sources": ("Points per source", sources_table),
    "lomo": ("Leave-one-model-out, nested", lomo_table),
    "lomo_h100": ("Per held-out architecture, nested", lomo_per_model),
    "logo": ("Leave-one-GPU-out, nested", logo_table),
    "nested_vs_diagnostic": ("Nested beside non-nested", nested_vs_diagnostic),
    "lomo_diagnostic": ("Leave-one-model-out, non-nested (a diagnostic)",
                        lambda results: lomo_table(results, "lomo")),
    "own_law": ("The paper's law on this workflow's own points", own_law_table),
    "paper_law": ("The paper's law on the paper's numbers", paper_table),
    "modalities": ("Laws across modalities", modality_table),
    "modalities_per_video": ("Per video architecture", modality_per_video_model),
    "multi_gpu": ("Several GPUs", multi_gpu_table),
}


def tables(results: Path) -> dict[str, tuple[str, str]]:
    """Marker name -> (title, markdown) of every table, from a run's results."""
    return {name: (title, table(results)) for name, (title, table) in TABLES.items()}


def write_tables(page: Path, found: dict[str, tuple[str, str]]) -> str:
    """``page``'s text with each table between its markers replaced; every table must have them."""
    text = page.read_text()
    for name, (_, table) in found.items():
        block = re.compile(rf"(<!-- tables:{name} -->\n).*?(\n<!-- /tables:{name} -->)", re.DOTALL)
        if not block.search(text):
            raise SystemExit(f"{page}: no <!-- tables:{name} --> ... <!-- /tables:{name} --> markers "
                             f"for the table {name!r}")
        text = block.sub(lambda m, table=table: m.group(1) + table + m.group(2), text)
    return text


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--results", default=str(REPO / "results"))
    parser.add_argument("--write", metavar="PAGE", help="replace the tables in this page (markers) "
                                                       "instead of printing them")
    args = parser.parse_args()
    found = tables(Path(args.results))
    if args.write:
        page = Path(args.write)
        page.write_text(write_tables(page, found))
        print(f"{page}: {len(found)} tables written", file=sys.stderr)
        return 0
    for title, text in found.values():
        print(f"### {title}\n\n{text}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
