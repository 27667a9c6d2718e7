"""A campaign run's tarball, checked and merged into the shipped table of its GPU kind.

``diffusion-energy campaign-run`` returns one tarball per GPU run (``measurement.campaign``). Here,
on a CPU machine, its points are read and checked, and merged into ``<into>/<kind>.parquet``; the
datasheet ``<kind>.md`` is written again from the merged table, and the run is added to
``<kind>.runs.json`` (what each run was: its card, budget, points and fixed cost).

Checks, per point (a point that fails one is not merged, and the command says why and ends
with status 1; its tarball keeps it):

* the rows pass the measurement schema (no zero or negative energy, no unknown column);
* they are of the run's GPU kind, model and precision (the file's path says which);
* the GPU was really used: every ok row says how its energy was measured (``measured``; on a
  simulated campaign, ``simulated``), the card's name is of the kind and its UUID is recorded, and
  the whole-image windows drew more than the idle GPU;
* every ok point has its text, denoise, VAE and whole-image rows;
* the repeat spread and stage sums are reported per point: a point over the protocol's limits
  keeps its ``flag`` and is merged.

A point the table already holds is replaced by the run's measurement (the replaced rows are kept
in ``<into>/superseded/<kind>.parquet``, never dropped); the same rows merged twice change
nothing. A point that could not be measured (``status: error``) is not merged: the next run
measures it again. Simulated rows never enter the workflow's shipped folder (``reference_dir``).
"""

from __future__ import annotations

import json
import logging
import math
import tarfile
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd

from .. import atomic
from ..gpu_kinds import kind_of
from . import dataset, reference
from .schema import GRID_KEYS, STAGES, DatasetError, validate_measurements

log = logging.getLogger(__name__)

#: Whole-image windows must draw this much more than the idle GPU (the work ran on it).
BUSY_OVER_IDLE = 1.05
POINT_KEYS = [*GRID_KEYS, "frames"]


@dataclass
class MergeReport:
    """What merging one run did."""

    kind: str
    run_id: str
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    left_out: dict[str, str] = field(default_factory=dict)
    flagged: dict[str, str] = field(default_factory=dict)
    spreads: list[float] = field(default_factory=list)
    stage_sums: list[float] = field(default_factory=list)


def _name(key: tuple) -> str:
    gpu, model, precision, res, steps, cfg, batch, frames = key
    video = f"_{int(frames)}frames" if int(frames) != 1 else ""
    return f"{model} {precision}/{int(res)}px{video}_{int(steps)}steps_cfg{int(bool(cfg))}_b{int(batch)}"


def read_manifest(tarball: Path) -> dict[str, Any]:
    """A run's manifest (``manifest.json`` of its tarball)."""
    if not tarball.is_file():
        raise DatasetError(f"{tarball}: no such campaign tarball")
    try:
        with tarfile.open(tarball) as tar:
            member = tar.extractfile("manifest.json")
            return json.loads(member.read()) if member else {}
    except KeyError:
        raise DatasetError(f"{tarball}: no manifest.json: not a tarball of `diffusion-energy campaign-run`"
                           ) from None
    except (tarfile.TarError, OSError, ValueError) as exc:
        raise DatasetError(f"{tarball}: not a readable campaign tarball ({exc})") from None


def read_run(tarball: Path) -> tuple[dict[str, Any], dict[str, pd.DataFrame], dict[str, str]]:
    """The run's manifest, its points' rows by point file, and the files that could not be read."""
    if not tarball.is_file():
        raise DatasetError(f"{tarball}: no such campaign tarball")
    rows: dict[str, pd.DataFrame] = {}
    bad: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as tmp:
        try:
            with tarfile.open(tarball) as tar:
                tar.extractall(tmp, filter="data")
        except (tarfile.TarError, OSError) as exc:
            raise DatasetError(f"{tarball}: not a readable tarball ({exc})") from None
        root = Path(tmp)
        if not (root / "manifest.json").is_file():
            raise DatasetError(f"{tarball}: no manifest.json: not a tarball of "
                               "`diffusion-energy campaign-run`")
        manifest = json.loads((root / "manifest.json").read_text())
        for path in sorted((root / "journal").glob("*/*/*.parquet")):
            name = f"{tarball.name}:journal/{path.relative_to(root / 'journal')}"
            try:
                frame = validate_measurements(pd.read_parquet(path), name)
                model, precision = path.parent.parent.name, path.parent.name
                dataset.check_file_rows(frame, name, None, {"gpu": manifest["kind"], "model": model,
                                                            "precision": precision})
            except (DatasetError, OSError, ValueError) as exc:
                bad[name] = str(exc)
                continue
            rows[name] = frame
    return manifest, rows, bad


def point_problem(rows: pd.DataFrame, kind: str, gpu_kinds: Mapping[str, Any], simulated: bool) -> str:
    """Why a run's point must not be merged ("" when it may)."""
    ok = rows[rows["status"] == "ok"]
    if ok.empty:
        return ""
    wanted = "simulated" if simulated else "measured"
    how = ok["energy_status"].astype(str)
    if not (how.str.startswith("simulated") if simulated else how == "measured").all():
        return f"energy_status {how[~how.str.startswith(wanted)].iloc[0]!r}, not {wanted}"
    if not simulated:
        for name in ok["gpu_name"].dropna().unique():
            if kind_of(str(name), gpu_kinds) != kind:
                return f"measured on {name!r}, which is not a {kind}"
    if (ok["gpu_uuid"].fillna("").astype(str) == "").any():
        return "no GPU UUID recorded: the card that measured is unknown"
    stages = set(ok["stage"])
    if stages != set(STAGES):
        return f"no {sorted(set(STAGES) - stages)} rows"
    image = ok[ok["stage"] == "image"]
    power = (image["energy_j"] / image["time_s"]).median()
    idle = image["idle_power_w"].median()
    if not (math.isfinite(power) and math.isfinite(idle) and power > BUSY_OVER_IDLE * idle):
        return (f"whole-image windows drew {power:.1f} W, the idle GPU {idle:.1f} W: the work did not "
                "run on this GPU")
    return ""


def _key_of(rows: pd.DataFrame) -> tuple:
    first = rows.iloc[0]
    return tuple(first[k] for k in POINT_KEYS)


def _same_rows(a: pd.DataFrame, b: pd.DataFrame) -> bool:
    cols = [c for c in ("stage", "repeat", "energy_j", "time_s", "measured_at") if c in a and c in b]
    left = a[cols].astype(str).sort_values(cols).reset_index(drop=True)
    right = b[cols].astype(str).sort_values(cols).reset_index(drop=True)
    return left.equals(right)


def merge_run(tarball: Path, into: Path, gpu_kinds: Mapping[str, Any], reference_dir: Path | None = None
              ) -> tuple[MergeReport, pd.DataFrame]:
    """Check a run's points and merge them into ``into/<kind>.parquet`` (module docstring); return
    what happened and the merged table (written, with the superseded rows and the run ledger)."""
    manifest, found, bad = read_run(tarball)
    kind, run_id = str(manifest["kind"]), str(manifest["run_id"])
    simulated = bool(manifest.get("simulated")) or kind.endswith(f"-{dataset.SIMULATED}")
    if simulated and reference_dir is not None and into.resolve() == reference_dir.resolve():
        raise DatasetError(f"{tarball}: a simulated run ({kind}) never enters the shipped folder {into}: "
                           "merge it into another folder (--into), e.g. results/simulated-measurements")
    report = MergeReport(kind, run_id, left_out=dict(bad))
    table_path = into / f"{kind}.parquet"
    table = (validate_measurements(pd.read_parquet(table_path), str(table_path))
             if table_path.is_file() else dataset.empty_measurements())
    if not simulated:
        dataset.refuse_simulated(table, table_path)
    keep = [table]
    superseded = []
    for rows in found.values():
        key = _key_of(rows)
        point = _name(key)
        if (rows["status"] == "error").any():
            why = str(rows["error"].dropna().iloc[0])[:200] if rows["error"].notna().any() else "error"
            report.left_out[point] = f"not measured in this run ({why}); the next run measures it again"
            continue
        problem = point_problem(rows, kind, gpu_kinds, simulated)
        if problem:
            report.left_out[point] = problem
            continue
        current = keep[0]
        held = (current[POINT_KEYS].astype(str).apply(tuple, axis=1) == tuple(map(str, key))
                if not current.empty else pd.Series(False, index=current.index))
        if held.any():
            old = keep[0][held]
            if _same_rows(old, rows):
                report.unchanged.append(point)
                continue
            superseded.append(old)
            keep[0] = keep[0][~held]
            report.replaced.append(point)
        else:
            report.added.append(point)
        keep.append(rows.assign(campaign_run=run_id))
        image = rows[(rows["stage"] == "image") & (rows["status"] == "ok")]
        if len(image):
            report.spreads.append(float(image["repeat_spread"].iloc[0]))
            report.stage_sums.append(float(image["stage_sum_error"].abs().median()))
            flag = str(image["flag"].fillna("").iloc[0])
            if flag:
                report.flagged[point] = flag
    merged = pd.concat([f for f in keep if not f.empty], ignore_index=True) if any(
        not f.empty for f in keep) else dataset.empty_measurements()
    if report.added or report.replaced:
        merged = dataset.conform(merged.sort_values(POINT_KEYS + ["stage", "repeat"], ignore_index=True))
        validate_measurements(merged, str(table_path))
        if superseded:
            old_path = into / "superseded" / f"{kind}.parquet"
            before = [pd.read_parquet(old_path)] if old_path.is_file() else []
            atomic.write_parquet(dataset.conform(pd.concat(before + superseded, ignore_index=True)), old_path)
        atomic.write_parquet(merged, table_path)
    _add_to_ledger(into / f"{kind}.runs.json", manifest, report)
    return report, merged


def _add_to_ledger(path: Path, manifest: Mapping[str, Any], report: MergeReport) -> None:
    runs = json.loads(path.read_text()) if path.is_file() else []
    runs = [r for r in runs if r.get("run_id") != report.run_id]
    jobs = [{"model": j["model"], "measured": j.get("summary", {}).get("measured", 0),
             "total_s": j.get("summary", {}).get("total_s"),
             "fixed_share": j.get("summary", {}).get("fixed_share"),
             "stopped": j.get("summary", {}).get("stopped", "")} for j in manifest.get("jobs", [])]
    runs.append({"run_id": report.run_id, "started_at": manifest.get("started_at"),
                 "budget_s": manifest.get("budget_s"), "spent_s": manifest.get("spent_s"),
                 "simulated": manifest.get("simulated", False), "merged_at": datetime.now(UTC).isoformat(
                     timespec="seconds"), "points": len(report.added) + len(report.replaced),
                 "left_out": report.left_out, "jobs": jobs, "notes": []})
    atomic.write_text(json.dumps(runs, indent=2) + "\n", path)


def _job_text(job: Mapping[str, Any]) -> str:
    share = job.get("fixed_share")
    return f"{job['model']} {job['measured']}" + (f" ({share:.0%} fixed)" if share is not None else "")


def run_notes(frame: pd.DataFrame, ledger: Sequence[Mapping[str, Any]]) -> tuple[str, list[str]]:
    """The datasheet's code line and notes: every run whose rows are in the table (rows from before
    campaigns: the ledger's entry with an empty run id)."""
    held = set(frame["campaign_run"].fillna("").astype(str)) if "campaign_run" in frame else {""}
    codes = sorted({str(c) for c in frame.get("measurement_code", pd.Series(dtype=str)).dropna() if str(c)})
    code_parts, notes = [], []
    for run in ledger:
        rid = str(run.get("run_id", ""))
        if rid not in held:
            continue
        if run.get("code"):
            code_parts.append(str(run["code"]))
        uuids = sorted({str(u) for u in frame.loc[frame["campaign_run"].fillna("").astype(str) == rid,
                                                   "gpu_uuid"].dropna()}) if "campaign_run" in frame else []
        if rid:
            jobs = ", ".join(_job_text(j) for j in run.get("jobs", []))
            card = ", ".join(uuids) or "card unknown"
            notes.append(f"Campaign run {rid} ({run.get('started_at')}, {card}): "
                         f"{run.get('points', 0)} points merged, {run.get('spent_s') or 0:.0f} of "
                         f"{run.get('budget_s') or 0:.0f} s spent; jobs: {jobs or 'none'}")
        notes += [str(n) for n in run.get("notes", [])]
    if codes:
        code_parts.append("measuring code " + ", ".join(codes) + " (measurement_code of the rows)")
    return "; ".join(code_parts), notes


def write_datasheet(frame: pd.DataFrame, kind: str, into: Path, protocol: Mapping[str, Any],
                    expected: Sequence[reference.PointKey]) -> Path:
    """``into/<kind>.md`` written again from the merged table and the run ledger."""
    ledger_path = into / f"{kind}.runs.json"
    ledger = json.loads(ledger_path.read_text()) if ledger_path.is_file() else []
    code, notes = run_notes(frame, ledger)
    if kind.endswith(f"-{dataset.SIMULATED}"):
        notes = ["SIMULATED: rows of the simulated GPU (measurement.simulated_gpu), not measurements"] + notes
    summary = reference.summarize(frame, kind)
    out = into / f"{kind}.md"
    atomic.write_text(reference.datasheet(frame, summary, protocol, expected, code, notes), out)
    return out
