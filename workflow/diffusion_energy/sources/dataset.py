"""The measurement tables: reading, merging and collection (the schema is ``schema``).

Only this module and ``schema`` read and write measurement tables. Three tables:

``results/measurements/{gpu}/{model}/{precision}/{slug}.parquet``
    One file per grid point, one row per (stage, repeat); ``MEASUREMENT_COLUMNS``.
``results/measurements.parquet``
    The shipped reference dataset, the imported published rows and everything
    measured locally (same columns; a local point replaces a shipped one of this
    workflow for the same GPU kind; every row says its ``source``).
``results/energy.parquet``
    One row per measured point: medians over repeats, spread, stage energies,
    joined with the FLOPs, kernels and bytes of every stage; ``ENERGY_COLUMNS``.

Units are in the names: ``_j`` joules, ``_s`` seconds, ``_w`` watts.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from .. import atomic
from ..errors import UserError
from ..models import zoo
from . import duplicates
from .schema import (  # noqa: F401 - the schema's names are the dataset's
    GRID_KEYS,
    MEASUREMENT_COLUMNS,
    POINT_KEYS,
    SCHEMA_VERSION,
    STAGES,
    THIS_WORKFLOW,
    DatasetError,
    _row_label,
    conform,
    empty_measurements,
    validate_measurements,
)

log = logging.getLogger(__name__)

#: Column -> meaning, for results/energy.parquet (one row per measured grid point).
ENERGY_COLUMNS: dict[str, str] = {
    **{k: MEASUREMENT_COLUMNS[k] for k in POINT_KEYS},
    "quoted": MEASUREMENT_COLUMNS["quoted"],
    "guidance_scale": MEASUREMENT_COLUMNS["guidance_scale"],
    "fps": MEASUREMENT_COLUMNS["fps"],
    "height": MEASUREMENT_COLUMNS["height"],
    "width": MEASUREMENT_COLUMNS["width"],
    "architecture": "denoiser kind: unet or mmdit",
    "family": "pipeline family (sd, sdxl, sd3, flux, qwen)",
    "status": "ok or oom",
    "n_repeats": "repeats the medians are over",
    "energy_j": "median whole-image energy, J (per video for a video)",
    "energy_per_frame_j": "energy_j / frames, J (derived; equals energy_j for an image)",
    "energy_min_j": "smallest repeat, J",
    "energy_max_j": "largest repeat, J",
    "dynamic_energy_j": "median whole-image energy minus idle, J",
    "time_s": "median whole-image time, s",
    "text_energy_j": "median text-encoding energy per image, J",
    "denoise_energy_j": "median denoising energy per image (all steps), J",
    "vae_energy_j": "median VAE-decode energy per image, J",
    "text_dynamic_energy_j": "idem, minus idle, J",
    "denoise_dynamic_energy_j": "idem, minus idle, J",
    "vae_dynamic_energy_j": "idem, minus idle, J",
    "text_time_s": "median text time per image, s",
    "denoise_time_s": "median denoise time per image, s",
    "vae_time_s": "median VAE time per image, s",
    "idle_power_w": "idle power of the job, W",
    "repeat_spread": "max/min - 1 of whole-image energy",
    "stage_sum_error": "median over repeats of (text + denoise + vae) / image - 1",
    "flag": "empty, or why the point is suspect",
    "gpu_name": "NVML device name (or the source's GPU name)",
    "power_limit_w": MEASUREMENT_COLUMNS["power_limit_w"],
    "batch_time_s": "median wall time of one pipeline call of batch images, s",
    "avg_power_w": MEASUREMENT_COLUMNS["avg_power_w"],
    "energy_scope": MEASUREMENT_COLUMNS["energy_scope"],
    "weights_source": MEASUREMENT_COLUMNS["weights_source"],
    "denoiser_evaluations": "denoiser evaluations per image: the scheduler's timesteps at steps (steps + 1 "
                            "for PNDM, SD 1.5 and Openjourney, whose PLMS warm-up repeats a timestep)",
    "flops": "FLOPs per image: text + denoiser_evaluations x denoiser calls + VAE decode",
    "text_flops": "FLOPs of all text encoders per image",
    "denoise_flops": "FLOPs of all denoiser calls per image",
    "vae_flops": "FLOPs of the VAE decode per image",
    "denoise_flops_per_step": "FLOPs of the denoiser calls of one step: denoise_flops / steps (a PNDM "
                              "step's share includes the repeated evaluation, as the per-step energy "
                              "denoise_energy_j / steps does)",
    "kernels": "kernels (non-view ATen ops, SDPA fused) per image",
    "text_kernels": "per image",
    "denoise_kernels": "per image",
    "vae_kernels": "per image",
    "bytes": "bytes read and written by those kernels per image",
    "text_bytes": "per image",
    "denoise_bytes": "per image",
    "vae_bytes": "per image",
    "denoiser_params": "parameters of the denoiser",
    "flops_analytic": "Kaplan-style estimate per image (2N + 2 n_layer n_ctx d_attn per token)",
}


def check_measurements(frame: pd.DataFrame, where: str = "measurements") -> None:
    """Refuse a table that breaks the schema (``schema.validate_measurements``)."""
    validate_measurements(frame, where)


def read_table(path: str | Path) -> pd.DataFrame:
    """One measurement file, validated; every error names the file."""
    try:
        frame = pd.read_parquet(path)
    except FileNotFoundError:
        raise DatasetError(f"{path}: no such measurement file") from None
    except (OSError, ValueError) as exc:
        raise DatasetError(f"{path}: not a readable parquet file ({exc})") from None
    return validate_measurements(frame, str(path))


def check_file_rows(frame: pd.DataFrame, path: str | Path, models: Collection[str] | None = None,
                    expected: Mapping[str, str] | None = None) -> None:
    """Rows a file cannot hold: a model outside the zoo, or a key its name contradicts.

    ``expected`` is what the file's name says (``resources/measurements/h100.parquet``:
    gpu h100; ``results/measurements/h100/sd15/fp16/...``: gpu, model, precision); a
    row that says otherwise was put in the wrong file. Errors name the file and a row.
    """
    if frame.empty:
        return
    if models is not None:
        bad = ~frame["model"].astype(str).isin(set(models))
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            name = frame["model"].iloc[i]
            raise DatasetError(
                f"{path}: model {name!r} in {_row_label(frame, i)} is not in the zoo ({int(bad.sum())} "
                f"row(s)); add config/models/{name}.yaml or remove the rows "
                f"(zoo: {', '.join(sorted(models))})")
    for col, value in (expected or {}).items():
        bad = frame[col].astype(str) != str(value)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DatasetError(
                f"{path}: {_row_label(frame, i)} has {col} {frame[col].iloc[i]!r}, but the file's name says "
                f"{col} {value!r} ({int(bad.sum())} row(s)); move the rows to the right file")


def reference_keys(path: str | Path) -> dict[str, str]:
    """What a shipped reference file's name says: ``resources/measurements/{gpu}.parquet``."""
    return {"gpu": Path(path).stem}


def local_keys(path: str | Path) -> dict[str, str]:
    """What a measured point's path says: ``results/measurements/{gpu}/{model}/{precision}/{slug}``."""
    parts = Path(path).parts
    if len(parts) < 4:
        return {}
    return {"gpu": parts[-4], "model": parts[-3], "precision": parts[-2]}


#: What a simulated GPU's rows carry: a kind ending in this, and an energy_status starting with it.
SIMULATED = "simulated"


def simulated_rows(frame: pd.DataFrame) -> pd.Series:
    """Rows of a simulated GPU (``measurement.simulated_gpu``): its kind (``h200-simulated``) or its
    energy status says so."""
    if frame.empty:
        return pd.Series(False, index=frame.index)
    kind = frame["gpu"].astype(str).str.endswith(f"-{SIMULATED}")
    status = frame["energy_status"].astype(str).str.startswith(SIMULATED)
    return kind | status


def refuse_simulated(frame: pd.DataFrame, where: str | Path) -> None:
    """Simulated rows never enter the merged, collected or fitted tables, nor a shipped one: they
    would stand in for (or replace) real measurements of the same points."""
    bad = simulated_rows(frame)
    if bad.any():
        i = int(np.flatnonzero(bad.to_numpy())[0])
        raise DatasetError(
            f"{where}: {int(bad.sum())} simulated row(s), e.g. {_row_label(frame, i)} (gpu "
            f"{frame['gpu'].iloc[i]!r}, energy_status {frame['energy_status'].iloc[i]!r}); simulated "
            "measurements stay apart from real ones (results/measurements/<kind>-simulated/) and never "
            "enter merged, collected, fitted or shipped tables: leave the file out")


def read_measurements(paths: Iterable[str | Path], models: Collection[str] | None = None,
                      keys_of: Callable[[str | Path], Mapping[str, str]] | None = None,
                      simulated: bool = False) -> pd.DataFrame:
    """Every file's rows, each file validated, a point in two files refused (both named).

    A stale copy of a file beside the real one would otherwise enter the medians
    and the fits twice, with nothing to show for it. With ``models`` (the zoo's
    names), rows of another model are refused; with ``keys_of``, rows that
    contradict their file's name (``check_file_rows``). Simulated rows are refused
    unless ``simulated`` (a simulated campaign's own table).
    """
    frames = []
    for path in paths:
        frame = read_table(path)
        if not simulated:
            refuse_simulated(frame, path)
        check_file_rows(frame, path, models, keys_of(path) if keys_of else None)
        if not frame.empty:
            frames.append(frame.assign(_file=str(path)))
    if not frames:
        return empty_measurements()
    out = pd.concat(frames, ignore_index=True)
    keys = [*POINT_KEYS, "stage", "repeat"]
    dup = out.duplicated(keys, keep=False)
    if dup.any():
        first = out[dup].iloc[0]
        same = out[dup & out[keys].astype(str).eq(first[keys].astype(str)).all(axis=1)]
        files = sorted(set(same["_file"]))
        key = ", ".join(f"{k}={first[k]}" for k in POINT_KEYS)
        raise DatasetError(f"the same point is in {len(files)} files: {', '.join(files)} ({key}); "
                           "keep one (a stale copy beside the real file?)")
    return out.drop(columns="_file")


def merge_reference(reference: pd.DataFrame, local: pd.DataFrame,
                    published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Shipped, local and published rows; a locally measured point replaces the shipped one.

    Published rows keep their own ``source``: they never replace, nor are replaced by,
    this workflow's measurements of the same settings.
    """
    parts = [f for f in (reference, local, published) if f is not None and not f.empty]
    if not parts:
        return empty_measurements()
    if not local.empty and not reference.empty:
        local_keys = set(map(tuple, local[POINT_KEYS].astype(str).itertuples(index=False)))
        shipped_keys = reference[POINT_KEYS].astype(str).apply(tuple, axis=1)
        kept = reference[~shipped_keys.isin(local_keys)]
        replaced = len(reference) - len(kept)
        if replaced:
            log.info("%d shipped rows replaced by local measurements of the same points", replaced)
        parts = [f for f in (kept, local, published) if f is not None and not f.empty]
    return pd.concat(parts, ignore_index=True)


def write_merged(reference_paths: list[str], local_paths: list[str], out: str | Path,
                 published_paths: list[str] | None = None, models: Collection[str] | None = None
                 ) -> pd.DataFrame:
    """Merge the three kinds of tables; with ``models`` (the zoo), rows of other models are refused.
    Shipped and local rows must agree with their file's name (GPU kind; model and precision)."""
    published = read_measurements(published_paths or [], models)
    duplicates.refuse_same_points(published)
    merged = merge_reference(read_measurements(reference_paths, models, reference_keys),
                             read_measurements(local_paths, models, local_keys), published)
    atomic.write_parquet(conform(merged), out)
    return merged


#: Columns ``per_image_costs`` reads from a FLOPs table (``counting.flops.FLOPS_COLUMNS``).
FLOPS_TABLE_KEYS = ("model", "resolution", "cfg", "batch", "stage", "calls", "per", "flops", "kernels",
                    "bytes", "flops_analytic", "params")


def check_flops_table(frame: pd.DataFrame, path: str | Path) -> pd.DataFrame:
    """``frame`` if it is a FLOPs table (``results/flops.parquet``), else a DatasetError naming ``path``."""
    missing = [c for c in FLOPS_TABLE_KEYS if c not in frame]
    if missing:
        hint = " (it is an energy table)" if "energy_j" in frame else ""
        raise DatasetError(f"{path}: not a FLOPs table (results/flops.parquet, written by `count-flops`): "
                           f"no column(s) {', '.join(missing)}{hint}")
    return frame


def _stage_flops(flops: pd.DataFrame) -> pd.DataFrame:
    """Per-image FLOPs/kernels/bytes by stage, wide, keyed by (model, res, [frames,] cfg, batch)."""
    keys = _flops_keys(flops)
    # Counts multiply in float64: a per-call count times calls times steps passes int64's 9.2e18
    # (10 million steps of SD 1.5, a batch of 10,000 FLUX images) and would wrap round to negative.
    counts = ["calls", "flops", "kernels", "bytes", "flops_analytic", "params"]
    flops = flops.astype({c: "float64" for c in counts})
    rows = flops.assign(per_image=flops["calls"].where(flops["per"] == "image", 0),
                        per_step=flops["calls"].where(flops["per"] == "step", 0))
    out = []
    for stage, part in rows.groupby("stage"):
        agg = part.assign(
            f_img=part["flops"] * part["per_image"], f_step=part["flops"] * part["per_step"],
            k_img=part["kernels"] * part["per_image"], k_step=part["kernels"] * part["per_step"],
            b_img=part["bytes"] * part["per_image"], b_step=part["bytes"] * part["per_step"],
            a_img=part["flops_analytic"] * part["per_image"],
            a_step=part["flops_analytic"] * part["per_step"],
            p_den=part["params"].where(part["stage"] == "denoise", 0),
        ).groupby(keys, as_index=False)[
            ["f_img", "f_step", "k_img", "k_step", "b_img", "b_step", "a_img", "a_step", "p_den"]
        ].sum()
        agg["stage"] = stage
        out.append(agg)
    return pd.concat(out, ignore_index=True)



def _flops_keys(flops: pd.DataFrame) -> list[str]:
    """What a FLOPs table's rows are keyed by: frames too since videos (older tables are of images)."""
    return ["model", "resolution", *(["frames"] if "frames" in flops else []), "cfg", "batch"]


class EvaluationsError(UserError):
    """The denoiser evaluations of a point cannot be known (its model is not in the zoo by name)."""


def denoiser_evaluations(points: pd.DataFrame) -> pd.Series:
    """Denoiser evaluations per image of each point (float, aligned with ``points``).

    The ``denoiser_evaluations`` column where it has a value (a model given as an
    architecture file carries its spec's own); else the zoo's model of that name
    at the point's steps (``ModelSpec.denoiser_evaluations``: PNDM runs steps + 1).
    Never ``steps`` by default: a model the zoo does not know is an error naming it.
    """
    given = (pd.to_numeric(points["denoiser_evaluations"], errors="coerce")
             if "denoiser_evaluations" in points else pd.Series(np.nan, index=points.index))
    missing = given.isna()
    if not missing.any():
        return given.astype(float)
    pairs = points.loc[missing, ["model", "steps"]].drop_duplicates()
    answers = {}
    for model, steps in pairs.itertuples(index=False):
        try:
            answers[(str(model), int(steps))] = zoo.zoo_spec(str(model)).denoiser_evaluations(int(steps))
        except zoo.ZooError as exc:
            raise EvaluationsError(f"cannot count the denoiser evaluations of model {model!r} at {steps} "
                                   f"steps (per-image FLOPs need them): {exc}") from None
    filled = [answers[(str(m), int(s))] for m, s in points.loc[missing, ["model", "steps"]].itertuples(
        index=False)]
    return given.where(~missing, pd.Series(filled, index=given.index[missing], dtype=float)).astype(float)


def per_image_costs(points: pd.DataFrame, flops: pd.DataFrame) -> pd.DataFrame:
    """``points`` (grid keys and precision) with FLOPs, kernels and bytes per image added.

    Per stage and in total: text encoders + denoiser evaluations x the denoiser calls
    of a step + the VAE decode, from the per-call FLOPs table. The evaluations are
    the scheduler's timesteps (``denoiser_evaluations``; steps + 1 for PNDM), not
    ``steps``; ``denoise_flops_per_step`` is the denoise FLOPs / steps, as the
    per-step energy is the denoise energy / steps. Measured and predicted points
    share this one definition of "per image". Points without FLOPs in ``flops``
    (a model not in the current grid) are left out with a log line.
    """
    stage_flops = _stage_flops(flops)
    keys = _flops_keys(flops)
    joined = points.copy()
    if "frames" in keys and "frames" not in joined:
        joined["frames"] = 1  # points of a table from before videos are images
    for stage in ("text", "denoise", "vae"):
        part = stage_flops[stage_flops["stage"] == stage].drop(columns="stage")
        part = part.rename(columns={c: f"{stage}__{c}" for c in part.columns if c not in keys})
        joined = joined.merge(part, on=keys, how="left")
    missing = joined["denoise__f_step"].isna()
    if missing.any():
        log.warning("%d points have no FLOPs in the FLOPs table and are left out: %s",
                    int(missing.sum()), sorted(joined.loc[missing, "model"].unique()))
        joined = joined[~missing].copy()
    if joined.empty:
        return joined
    joined["denoiser_evaluations"] = denoiser_evaluations(joined)
    steps = joined["steps"].astype(float)
    evals = joined["denoiser_evaluations"]
    # The counts are per pipeline call, which makes ``batch`` images: FLOPs per image do not
    # change with the batch, kernel launches and weight traffic per image fall with it.
    per_image = 1.0 / joined["batch"].astype(float)
    # Bytes were counted with 2-byte tensors; fp32 moves twice as many.
    byte_scale = joined["precision"].map({"fp32": 2.0}).fillna(1.0)
    for stage in ("text", "denoise", "vae"):
        j = joined
        joined[f"{stage}_flops"] = (j[f"{stage}__f_img"] + evals * j[f"{stage}__f_step"]) * per_image
        joined[f"{stage}_kernels"] = (j[f"{stage}__k_img"] + evals * j[f"{stage}__k_step"]) * per_image
        joined[f"{stage}_bytes"] = ((j[f"{stage}__b_img"] + evals * j[f"{stage}__b_step"]) * byte_scale
                                    * per_image)
    joined["denoise_flops_per_step"] = joined["denoise__f_step"] * evals / steps * per_image
    joined["denoiser_params"] = joined["denoise__p_den"]
    joined["flops_analytic"] = sum(
        joined[f"{s}__a_img"] + evals * joined[f"{s}__a_step"] for s in ("text", "denoise", "vae")
    ) * per_image
    for what in ("flops", "kernels", "bytes"):
        joined[what] = sum(joined[f"{s}_{what}"] for s in ("text", "denoise", "vae"))
    fam = flops.drop_duplicates("model").set_index("model")["family"]
    joined["family"] = joined["model"].map(fam)
    return joined.drop(columns=[c for c in joined.columns if "__" in c])


def empty_energy() -> pd.DataFrame:
    """An energy table without points (every analysis target still builds from it)."""
    return pd.DataFrame({c: pd.Series(dtype="object") for c in ENERGY_COLUMNS})


def collect_energy(measurements: pd.DataFrame, flops: pd.DataFrame) -> pd.DataFrame:
    """One row per measured point (or oom), of every source, joined with FLOPs.

    Points whose energy is absent (measured on a machine without an NVIDIA
    GPU) are left out: they hold times but no joules. Points without FLOPs in
    ``flops`` (a model not counted) are left out with a warning. A published
    point has one measurement (its ``n_repeats`` is 1 and its spread unknown)
    and no stage rows: its stage columns stay empty, nothing is filled in.
    """
    if measurements.empty:
        log.warning("no point to collect: the merged table holds no rows (no shipped reference file, "
                    "no local measurement and no published source in the merge)")
        return empty_energy()
    refuse_simulated(measurements, "the measurements to collect")
    m = conform(measurements)
    for col in ("resolution", "steps", "batch", "frames", "num_gpus", "ulysses_degree", "ring_degree"):
        m[col] = m[col].astype(int)
    m["cfg"] = m["cfg"].astype(bool)
    measured = m[(m["status"] == "ok") & (m["energy_status"] == "measured")]
    oom = m[m["status"] == "oom"].drop_duplicates(POINT_KEYS)
    absent = m[(m["status"] == "ok") & (m["energy_status"] != "measured")]
    if len(absent):
        log.info("%d points without GPU energy left out",
                 len(absent.drop_duplicates(POINT_KEYS)))
    first = {k: "first" for k in ("architecture", "gpu_name", "quoted", "guidance_scale", "power_limit_w",
                                  "energy_scope", "weights_source", "fps", "height", "width")}
    first.update(idle_power_w="median", batch_time_s="median", avg_power_w="median",
                 flag=lambda s: "; ".join(sorted({f for f in s.dropna() if f})))
    image = measured[measured["stage"] == "image"].groupby(POINT_KEYS, as_index=False, dropna=False).agg(
        n_repeats=("repeat", "nunique"), energy_j=("energy_j", "median"),
        energy_min_j=("energy_j", "min"), energy_max_j=("energy_j", "max"),
        dynamic_energy_j=("dynamic_energy_j", "median"), time_s=("time_s", "median"),
        stage_sum_error=("stage_sum_error", "median"),
        **{k: (k, f) for k, f in first.items()},
    )
    image["repeat_spread"] = (image["energy_max_j"] / image["energy_min_j"] - 1).where(image["n_repeats"] > 1)
    image["energy_per_frame_j"] = image["energy_j"] / image["frames"]
    image["status"] = "ok"
    for stage in ("text", "denoise", "vae"):
        part = measured[measured["stage"] == stage].groupby(POINT_KEYS, as_index=False).agg(
            **{f"{stage}_energy_j": ("energy_j", "median"),
               f"{stage}_dynamic_energy_j": ("dynamic_energy_j", "median"),
               f"{stage}_time_s": ("time_s", "median")})
        image = image.merge(part, on=POINT_KEYS, how="left")
    if len(oom):
        oom_rows = oom[POINT_KEYS + ["architecture", "gpu_name"]].assign(status="oom", n_repeats=0)
        image = pd.concat([image, oom_rows], ignore_index=True)
    if image.empty:
        sources = ", ".join(f"{s} ({n} rows)" for s, n in m["source"].value_counts().sort_index().items())
        log.warning("no point to collect: none of the merged table's %d rows (%s) is a point with GPU "
                    "energy or out of memory", len(m), sources)
        return empty_energy()

    joined = per_image_costs(image, flops) if not flops.empty else image.iloc[0:0]
    if joined.empty:
        log.warning("no point to collect: none of the %d measured points has FLOPs in the FLOPs table "
                    "(count its models with `diffusion-energy count-flops`)", len(image))
        return empty_energy()
    for col in ENERGY_COLUMNS:
        if col not in joined:
            joined[col] = np.nan
    out = joined[list(ENERGY_COLUMNS)].sort_values(POINT_KEYS, ignore_index=True)
    # FLOPs per image stay float64 (exact to 2^53, 16 digits beyond): int64 would wrap round past
    # 9.2e18 (SD 1.5 at ten million steps) and turn a point's FLOPs negative.
    out["flops"] = out["flops"].astype(float).round()
    out["denoiser_params"] = out["denoiser_params"].round().astype("int64")
    for col in ("kernels", "bytes"):  # per image: a batch shares its launches and weight reads
        out[col] = out[col].astype(float)
    return out
