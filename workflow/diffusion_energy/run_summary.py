"""The end of every run says what happened: what was measured here, what the results rest on.

``summarize`` reads what the run left behind (never the logs alone): the measuring
jobs' ``logs/measure/**/*.job.json`` (points measured, reused from the journal,
measured again and why), ``results/measurements.parquet`` and
``results/energy.parquet`` (points per source and GPU kind; points left out and
why: no GPU energy, no FLOPs, out of memory), and the WARNING lines the rules
wrote to ``logs/`` during this run. The Snakefile prints it at the end of the
default run and of ``snakemake measurements`` (their rules have no output, so they
run every time, even when nothing else is to be done) and when a run fails.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd

from .figures import FIGURE_NAMES
from .laws import findings
from .sources.schema import POINT_KEYS, THIS_WORKFLOW, point_slug, single_gpu_raw

SUMMARY_PATH = "results/summary.txt"
_WARNING = re.compile(r"^\S+ \S+ WARNING (\S+): (.*)$")
_ERROR = re.compile(r"^(diffusion-energy \S+: error: .*)$")
_SHOWN = 12


def _recent(paths: Iterable[Path], since: float | None) -> list[Path]:
    return sorted(p for p in paths if p.is_file() and (since is None or p.stat().st_mtime >= since - 1))


def job_summaries(root: Path, since: float | None) -> list[dict]:
    """The measuring jobs' summaries written during this run."""
    out = []
    for path in _recent((root / "logs" / "measure").rglob("*.job.json"), since):
        try:
            out.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    return out


def _log_lines(root: Path, since: float | None, pattern: re.Pattern[str]) -> list[str]:
    """Lines of this run's rule logs that match ``pattern``, as ``log file: message``, without repeats."""
    seen: dict[str, None] = {}
    for path in _recent((root / "logs").rglob("*.log"), since):
        try:
            lines = path.read_text(errors="replace").splitlines()
        except OSError:
            continue
        for line in lines:
            found = pattern.match(line)
            if found:
                seen.setdefault(f"{path.relative_to(root)}: {found.group(found.lastindex or 0)}", None)
    return list(seen)


def run_warnings(root: Path, since: float | None) -> list[str]:
    """WARNING lines the rules logged during this run."""
    return _log_lines(root, since, _WARNING)


def run_errors(root: Path, since: float | None) -> list[str]:
    """The one-line errors of this run's failed commands (``diffusion-energy <command>: error: ...``)."""
    return _log_lines(root, since, _ERROR)


def _read(path: Path) -> pd.DataFrame | None:
    try:
        return pd.read_parquet(path) if path.is_file() else None
    except Exception:  # noqa: BLE001 - a summary reports what it can read
        return None


def _points(frame: pd.DataFrame) -> pd.DataFrame:
    keys = [k for k in POINT_KEYS if k in frame]
    return frame.drop_duplicates(keys)[keys + [c for c in ("status", "energy_status") if c in frame]]


def _origin(row: pd.Series, root: Path, local_kinds: Sequence[str], reference_dir: str) -> str:
    if row["source"] != THIS_WORKFLOW:
        return f"{row['source']} (published)"
    frames = int(row["frames"]) if "frames" in row and pd.notna(row["frames"]) else 1
    slug = point_slug(int(row["resolution"]), int(row["steps"]), bool(row["cfg"]), int(row["batch"]), frames)
    local = root / "results" / "measurements" / str(row["gpu"]) / str(row["model"]) / str(row["precision"])
    if row["gpu"] in local_kinds and (local / f"{slug}.parquet").is_file():
        return f"{THIS_WORKFLOW}, measured on this machine"
    return f"{THIS_WORKFLOW}, shipped reference ({reference_dir}/{row['gpu']}.parquet)"


def sources_table(energy: pd.DataFrame, root: Path, local_kinds: Sequence[str], reference_dir: str) -> str:
    """Points per origin and GPU kind: measured here, shipped reference, each published source;
    how many are out of memory, and how many flagged (kept, with their flag)."""
    if energy.empty:
        return "  (none)"
    frame = energy.copy()
    frame["origin"] = frame.apply(_origin, axis=1, args=(root, local_kinds, reference_dir))
    frame["oom"] = frame["status"].eq("oom")
    flags = frame["flag"] if "flag" in frame else pd.Series("", index=frame.index)
    frame["flagged"] = flags.fillna("").astype(str).ne("")
    table = frame.groupby(["origin", "gpu"]).agg(points=("model", "size"), oom=("oom", "sum"),
                                                 flagged=("flagged", "sum"),
                                                 models=("model", "nunique")).reset_index()
    width = max(len(o) for o in table["origin"])
    return "\n".join(f"  {r.origin:<{width}}  {r.gpu:<6} {r.points:>4} points, {r.models} models"
                     + (f" ({r.oom} out of memory)" if r.oom else "")
                     + (f" ({r.flagged} flagged, kept with their flag)" if r.flagged else "")
                     for r in table.itertuples())


def left_out(measurements: pd.DataFrame, energy: pd.DataFrame) -> list[str]:
    """Points of the merged table that have no energy row, grouped by why."""
    if measurements.empty:
        return []
    points = _points(measurements)
    keys = [k for k in POINT_KEYS if k in points and k in energy]
    kept = set(map(tuple, energy[keys].astype(str).itertuples(index=False))) if len(energy) else set()
    present = points[keys].astype(str).apply(tuple, axis=1).isin(kept)
    lines = []
    oom = points[points["status"] == "oom"]
    if len(oom):
        lines.append(f"{len(oom)} point(s) out of memory (in energy.parquet with status oom, no energy): "
                     + _names(oom))
    errors = points[points["status"] == "error"]
    if len(errors):
        lines.append(f"{len(errors)} point(s) failed (status error): {_names(errors)}")
    ok = points["status"] == "ok"
    absent = points[ok & (points["energy_status"] != "measured")]
    if len(absent):
        reasons = sorted(set(absent["energy_status"].astype(str)))
        lines.append(f"{len(absent)} point(s) without GPU energy ({'; '.join(reasons)}): {_names(absent)}")
    no_flops = points[ok & (points["energy_status"] == "measured") & ~present]
    if len(no_flops):
        lines.append(f"{len(no_flops)} point(s) without FLOPs (their model and shape were not counted): "
                     + _names(no_flops))
    return lines


#: What each list of the laws JSON's ``left_out`` is left out of (``laws.exclusions``).
_LEFT_OUT_OF = {"all": "left out of every fit", "dynamic": "left out of the dynamic (idle-subtracted) laws",
                "datasheets": "datasheet(s) suspect"}


def analysis_left_out(laws_path: Path) -> list[str]:
    """What the fits left out and why, as ``fit`` wrote it into the laws JSON."""
    try:
        left = json.loads(laws_path.read_text()).get("left_out", {}) if laws_path.is_file() else {}
    except (OSError, ValueError, AttributeError):
        return []
    lines = []
    for key, entries in left.items() if isinstance(left, dict) else ():
        shown = "; ".join(entries[:3]) + (f"; ... {len(entries) - 3} more in logs/analysis/"
                                          if len(entries) > 3 else "")
        lines.append(f"{len(entries)} {'point(s) ' if key != 'datasheets' else ''}"
                     f"{_LEFT_OUT_OF.get(key, key)}: {shown}")
    return lines


def _names(points: pd.DataFrame) -> str:
    groups = points.groupby(["source", "gpu", "model"]).size()
    text = ", ".join(f"{m} on {g} ({s}): {n}" for (s, g, m), n in groups.items())
    return text if len(text) < 400 else text[:400] + " ..."


def figure_count(folder: Path) -> str:
    """How many of the workflow's figures (``FIGURE_NAMES``) are drawn, each as PDF and PNG."""
    files = [folder / f"{n}.{ext}" for n in FIGURE_NAMES for ext in ("pdf", "png")]
    drawn = sum(f.is_file() for f in files)
    return (f"{len(FIGURE_NAMES)} figures, {len(files)} files (PDF and PNG)"
            + ("" if drawn == len(files) else f"; {drawn} drawn so far"))


def _listing(folder: Path, pattern: str) -> str:
    files = sorted(folder.glob(pattern)) if folder.is_dir() else []
    if not files:
        return "none yet"
    names = ", ".join(f.name for f in files[:6]) + (", ..." if len(files) > 6 else "")
    return f"{len(files)} files: {names}"


def summarize(root: str | Path = ".", *, measure_kinds: Sequence[str] = (), measure_reason: str = "",
              reference_dir: str = "resources/measurements", since: float | None = None,
              part: str = "all", failed: bool = False) -> str:
    """The end-of-run summary (``part`` "measurements": only what was measured here)."""
    root = Path(root)
    lines = ["", "=" * 78, "diffusion-energy: " + ("the run FAILED (errors above); what it did"
                                                    if failed else "what this run did"), "=" * 78]
    if part != "measurements" and not failed:
        lines += findings.findings(root) + ["-" * 78]
    jobs = job_summaries(root, since)
    measured = sum(int(j.get("measured", 0)) for j in jobs)
    reused = sum(len(j.get("reused", [])) for j in jobs)
    if not measure_kinds:
        lines.append(f"Measured on this machine: nothing. Why: {measure_reason or 'no GPU kind to measure'}.")
        if part == "measurements":
            lines.append("Nothing to measure here. To measure, run on a machine with an NVIDIA GPU of a kind "
                         "in gpu_kinds, or name the kinds: --config 'measure_gpus=[h100]' (on a cluster).")
    else:
        lines.append(f"GPU kinds measured here: {', '.join(measure_kinds)} ({measure_reason}).")
        simulated = any(str(k).endswith("-simulated") for k in measure_kinds)
        what = ("simulated point(s) (kept apart: never merged, collected or fitted)" if simulated
                else "point(s)")
        lines.append(f"This run: {measured} {what} measured, {reused} reused from the journal "
                     f"(results/measurements/.journal), in {len(jobs)} measuring job(s).")
        again = [f"{j['model']} {slug}: {why}" for j in jobs
                 for slug, why in j.get("remeasured", {}).items()]
        if again:
            lines.append(f"Journaled points measured again ({len(again)}):")
            lines += [f"  {a}" for a in again[:_SHOWN]] + ([f"  ... {len(again) - _SHOWN} more"]
                                                            if len(again) > _SHOWN else [])
    measurements = _read(root / "results" / "measurements.parquet")
    energy = _read(root / "results" / "energy.parquet")
    if part != "measurements":
        shipped = sorted((root / reference_dir).glob("*.parquet")) if (root / reference_dir).is_dir() else []
        lines.append(f"Shipped reference files in {reference_dir}: "
                     + (", ".join(p.name for p in shipped) if shipped else "none"))
        if energy is None:
            lines.append("results/energy.parquet: not written (yet).")
        else:
            rest = "nothing measured locally" if not measure_kinds else "local and other"
            lines.append(f"Data the results rest on (results/energy.parquet, {len(energy)} points; {rest}):")
            lines.append(sources_table(energy, root, measure_kinds, reference_dir))
            lines.append(how_points_enter(energy))
            gaps = left_out(measurements, energy) if measurements is not None else []
            gaps += analysis_left_out(root / "results" / "laws" / "laws.json")
            lines.append("Left out of the fits: " + ("none" if not gaps else ""))
            lines += [f"  {g}" for g in gaps]
    errors = run_errors(root, since)
    if errors:
        lines.append(f"Errors during this run: {len(errors)}")
        lines += [f"  {e}" for e in errors[:_SHOWN]]
    warnings = run_warnings(root, since) + [w for j in jobs for w in j.get("warnings", [])]
    warnings = list(dict.fromkeys(warnings))
    lines.append(f"Warnings during this run: {len(warnings) or 'none'}")
    lines += [f"  {w}" for w in warnings[:_SHOWN]]
    if len(warnings) > _SHOWN:
        lines.append(f"  ... {len(warnings) - _SHOWN} more in logs/")
    if part == "measurements":
        lines.append("Measured points: results/measurements/<gpu>/<model>/<precision>/ (logs: logs/measure/)")
    else:
        lines.append("Where things are:")
        lines.append(f"  figures: results/figures/ ({figure_count(root / 'results' / 'figures')})")
        lines.append(f"  tables:  results/tables/ ({_listing(root / 'results' / 'tables', '*.csv')}); "
                     "laws: results/laws/laws.json")
        lines.append("  points:  results/energy.parquet (one row per point), results/measurements.parquet "
                     "(every row), results/flops.parquet")
        lines.append("  report:  snakemake --report report.html;  logs: logs/")
    lines.append("=" * 78)
    return "\n".join(lines) + "\n"


def how_points_enter(energy: pd.DataFrame) -> str:
    """Which points train the pooled laws (``schema.single_gpu_raw``), and where the others go."""
    ok = energy[energy["status"].astype(str) == "ok"] if "status" in energy else energy
    multi = (ok["num_gpus"].astype(float) > 1) if "num_gpus" in ok else pd.Series(False, index=ok.index)
    quoted = ok["quoted"].fillna(False).astype(bool) if "quoted" in ok else pd.Series(False, index=ok.index)
    single = int(single_gpu_raw(ok).sum())
    videos = int(single_gpu_raw(ok, videos=True).sum()) - single
    return (f"How they enter: {single} single-GPU points of raw data fit and cross-validate the pooled "
            f"laws; {videos} single-GPU video points the laws across modalities (modality_*.csv); "
            f"{int(multi.sum())} multi-GPU points the multi-GPU law and its figure (multi_gpu_*.csv); "
            f"{int(quoted.sum())} "
            "figures quoted from a paper only that paper's own law.")


def write_summary(text: str, root: str | Path = ".") -> Path:
    """Write the summary to results/summary.txt (best effort: a summary never fails a run)."""
    path = Path(root) / SUMMARY_PATH
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    except OSError:
        pass
    return path
