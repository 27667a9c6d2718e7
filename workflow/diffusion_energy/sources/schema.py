"""The measurement table's schema and its one validation, for every source of rows.

Rows measured here (``this-workflow``), shipped reference files, rows imported
from published data and journaled points all pass ``validate_measurements``
before anything uses them: required columns, types, allowed values, units
(energies and times positive where a row claims a measurement) and unique
keys. Every error names the file, the column and a row, so a bad table stops
the run where it enters instead of as a traceback one rule later.

Units are in the names: ``_j`` joules, ``_s`` seconds, ``_w`` watts.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

#: Version 2 added the source and multi-GPU columns (version 1 rows are this workflow's, one GPU);
#: version 3 the video columns (frames, fps, height, width; older rows are images: one frame);
#: version 4 the counter's physics and host noise columns (empty in older rows).
SCHEMA_VERSION = 4
GRID_KEYS = ["gpu", "model", "precision", "resolution", "steps", "cfg", "batch"]
#: What makes a point unique across sources: the grid keys plus where it comes from and how
#: many GPUs (and which sequence-parallel split) made it.
POINT_KEYS = ["source", *GRID_KEYS, "frames", "num_gpus", "ulysses_degree", "ring_degree"]
STAGES = ("text", "denoise", "vae", "image")
STATUSES = ("ok", "oom", "error")
PRECISIONS = ("fp16", "bf16", "fp32")
#: The source of rows measured by this workflow (on a GPU, with the protocol of the README).
THIS_WORKFLOW = "this-workflow"

#: Column -> meaning, for measurement tables (one row per stage and repeat).
MEASUREMENT_COLUMNS: dict[str, str] = {
    "schema_version": "version of this schema",
    "source": "where the row comes from: this-workflow (measured here) or a published source "
              "(mlenergy-v2, mlenergy-v3, paper-2511.17031)",
    "quoted": "true for figures quoted from a paper's text (not the raw data of a measurement)",
    "gpu": "GPU kind (wildcard), e.g. h100",
    "model": "architecture name from the zoo",
    "architecture": "denoiser kind: unet or mmdit",
    "precision": "fp16, bf16 or fp32",
    "resolution": "square image side, px; for a video, the frame height (as in 480p; width in width)",
    "steps": "denoising steps",
    "cfg": "classifier-free guidance on",
    "guidance_scale": "CFG scale the pipeline ran with",
    "batch": "images (or videos) per pipeline call",
    "frames": "frames per output: 1 for an image, the frame count of a video",
    "fps": "frame rate a video is exported at, as the source set it (it changes no computation); "
           "empty for an image",
    "height": "output height, px, as the source gives it (videos); empty where resolution says it",
    "width": "output width, px, as the source gives it (videos); empty where resolution says it",
    "num_gpus": "GPUs one image batch ran on (energy is summed over them)",
    "ulysses_degree": "xDiT Ulysses sequence-parallel degree (1 on one GPU)",
    "ring_degree": "xDiT ring-attention sequence-parallel degree (1 on one GPU)",
    "stage": "text, denoise, vae or image (the whole image)",
    "repeat": "repeat index, 0-based",
    "status": "ok, oom or error (then energy columns are NaN and error says why)",
    "energy_status": "measured, or absent: <reason> (e.g. no NVIDIA GPU on a CPU test run)",
    "energy_j": "GPU energy per image (per video for a video) for this stage, J (raw counter difference "
                "/ calls)",
    "dynamic_energy_j": "energy_j minus idle_power_w x time_s, J",
    "time_s": "wall time per image for this stage, s (synchronised)",
    "batch_time_s": "wall time of one pipeline call of batch images, s (as the source reports it)",
    "avg_power_w": "mean GPU power over the measurement, W, summed over the GPUs (as the source reports it)",
    "window_s": "length of the energy window, s",
    "window_calls": "stage executions inside the window (short stages are repeated)",
    "idle_power_w": "mean GPU power with the CUDA context alive and the GPU idle, W",
    "stage_sum_error": "(text + denoise + vae) / image - 1 for this repeat (image rows only)",
    "repeat_spread": "max/min - 1 of the image energy over repeats (point level)",
    "flag": "empty, or why the point is suspect (spread, stage sum, throttling)",
    "energy_scope": "what the energy covers: stages, whole GPU, idle subtracted or not",
    "gpu_name": "NVML device name (or the source's GPU name)",
    "gpu_uuid": "NVML device UUID",
    "gpu_index": "CUDA device index used (after CUDA_VISIBLE_DEVICES)",
    "driver_version": "NVIDIA driver",
    "cuda_version": "CUDA version torch was built with",
    "power_limit_w": "enforced power limit, W",
    "sm_clock_mhz": "SM clock at the end of the point, MHz",
    "temperature_before_c": "GPU temperature before the point, C",
    "temperature_after_c": "GPU temperature after the point, C",
    "throttle_reasons": "NVML clock throttle reasons seen during the point",
    "torch_version": "torch",
    "diffusers_version": "diffusers",
    "transformers_version": "transformers",
    "zeus_version": "zeus",
    "software": "inference stack of a published source (e.g. diffusers 0.29.2)",
    "weights_source": "random-init, local:<path>, or real:<upstream model>@<revision> (published rows)",
    "upstream_model": "the source's own model id (published rows)",
    "upstream_commit": "commit of the source's repository the row was imported from",
    "upstream_file": "file (and entry) of the source the row was imported from",
    "hostname": "machine",
    "measured_at": "UTC ISO time the point finished",
    "denoiser_calls": "denoiser forwards per image, counted by a hook (steps x CFG calls)",
    "warmup": "protocol: fewest warm-up calls before a point's (or stage's) first window",
    "warmup_s": "protocol: shortest warm-up, s",
    "warmup_images": "warm-up images run before this point's repeats (0: a point of the same shape "
                     "had just run, so its kernels were warm)",
    "min_window_s": "shortest energy window of the protocol, s",
    "counter_period_s": "update period of the GPU's energy counter, measured at the job's start, s",
    "counter_resolution_j": "the energy counter's unit, measured at the job's start, J",
    "counter_lag_s": "how long before its update the energy an update shows ends, s (step probe at the "
                     "job's start; windows close after it)",
    "counter_sampled_fraction": "share of each update period the energy counter integrates (1: all of it; "
                                "below, it samples power and windows are corrected for it), step probe",
    "power_tail_s": "time constant of the GPU power's decay to idle after work, s (step probe); the tail is "
                    "counted in the window of the work that left it",
    "host_noise": "relative noise of the host's speed measured at the job's start (launch-bound blocks)",
    "remeasure_tolerance": "a repeat further off its stage's median time per call was measured again "
                           "(noise_factor x host_noise, at least the protocol's outlier_tolerance)",
    "energy_counter": "what read the energy counter (e.g. zeus 0.16.0: zeus.device.get_gpus() "
                      "NVIDIAGPUs[0].get_total_energy_consumption), or that it was simulated",
    "simulated_true_energy_j": "simulated GPU only: the energy it really spent per image for this stage, "
                               "J (energy_j is what the protocol measured of it)",
    "remeasured": "windows measured again and why (too short, or a repeat slower than the others: "
                  "the host stalled); empty when none",
    "error": "error message when status is not ok",
}

_INT = ("schema_version", "resolution", "steps", "batch", "frames", "height", "width", "num_gpus",
        "ulysses_degree", "ring_degree", "repeat", "window_calls", "gpu_index", "warmup", "warmup_images")
_FLOAT = ("guidance_scale", "fps", "energy_j", "dynamic_energy_j", "time_s", "batch_time_s", "avg_power_w",
          "window_s", "idle_power_w", "stage_sum_error", "repeat_spread", "power_limit_w", "sm_clock_mhz",
          "temperature_before_c", "temperature_after_c", "denoiser_calls", "warmup_s", "min_window_s",
          "counter_period_s", "counter_resolution_j", "counter_lag_s", "counter_sampled_fraction",
          "power_tail_s", "host_noise", "remeasure_tolerance", "simulated_true_energy_j")
_BOOL = ("quoted", "cfg")
#: Type of every column that is not text.
COLUMN_TYPES: dict[str, str] = {**{c: "int" for c in _INT}, **{c: "float" for c in _FLOAT},
                                **{c: "bool" for c in _BOOL}}
#: Columns every measurement table must have.
REQUIRED = ("gpu", "model", "precision", "resolution", "steps", "cfg", "batch", "stage", "status",
            "energy_status", "energy_j")
#: Columns that are positive wherever they are given (integers) or wherever a row is measured.
POSITIVE_INT = ("resolution", "steps", "batch", "frames", "num_gpus", "ulysses_degree", "ring_degree")
POSITIVE_WHEN_MEASURED = ("energy_j", "time_s", "batch_time_s", "avg_power_w")
#: Columns positive wherever they are given (and empty where a source does not give them).
POSITIVE_WHEN_GIVEN = ("fps", "height", "width")
#: Defaults of columns added in schemas 2 and 3, for older tables (this workflow's rows, one GPU,
#: images).
V1_DEFAULTS: dict[str, Any] = {"source": THIS_WORKFLOW, "quoted": False, "num_gpus": 1,
                               "ulysses_degree": 1, "ring_degree": 1, "frames": 1}


class DatasetError(ValueError):
    """A measurement table breaks the schema or a sanity rule."""


def empty_measurements() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in MEASUREMENT_COLUMNS})


def conform(frame: pd.DataFrame, where: str | None = None) -> pd.DataFrame:
    """Columns in schema order; missing ones added as NaN; unknown ones refused (naming ``where``,
    the file, when given).

    Rows of schema version 1 (no ``source`` column) are this workflow's, on one GPU.
    """
    unknown = set(frame.columns) - set(MEASUREMENT_COLUMNS)
    if unknown:
        raise DatasetError(f"{where + ': ' if where else ''}unknown measurement column(s) {sorted(unknown)}; "
                           f"known: diffusion_energy.sources.schema.MEASUREMENT_COLUMNS")
    out = frame.copy()
    for col in MEASUREMENT_COLUMNS:
        if col not in out:
            out[col] = V1_DEFAULTS.get(col, np.nan)
        elif col in V1_DEFAULTS:
            out[col] = out[col].where(out[col].notna(), V1_DEFAULTS[col])
    out["schema_version"] = SCHEMA_VERSION
    return out[list(MEASUREMENT_COLUMNS)]


def point_slug(resolution: int, steps: int, cfg: bool, batch: int, frames: int = 1) -> str:
    """A point's file stem inside ``{gpu}/{model}/{precision}/``: ``512px_50steps_cfg1_b1`` for an
    image (as before videos: existing files keep their names), ``480px_81frames_50steps_cfg1_b1``
    for a video."""
    video = f"_{frames}frames" if frames != 1 else ""
    return f"{resolution}px{video}_{steps}steps_cfg{int(cfg)}_b{batch}"


def single_gpu_raw(frame: pd.DataFrame, videos: bool = False) -> pd.Series:
    """Rows of raw data from one GPU: the points the pooled laws are fitted and cross-validated on.

    Quoted figures feed only their paper's own law and multi-GPU runs only the
    multi-GPU figure; the laws, the figures and the run summary all split rows here.
    Videos (more than one frame) feed the laws across modalities (``videos=True``:
    both), not the image laws. A column a table lacks takes its older schema's
    default (one GPU, not quoted, one frame).
    """
    def column(name: str) -> pd.Series:
        return frame[name] if name in frame else pd.Series(V1_DEFAULTS[name], index=frame.index)

    rows = (column("num_gpus").astype(float) == 1) & ~column("quoted").fillna(False).astype(bool)
    return rows if videos else rows & (column("frames").astype(float) == 1)


def _row_label(frame: pd.DataFrame, i: int) -> str:
    """``row 3 (source=mlenergy-v2, gpu=h100, model=sd21, ...)``: a row a person can find."""
    r = frame.iloc[i]
    named = ("source", "gpu", "model", "resolution", "frames", "steps", "batch", "stage")
    keys = [f"{k}={_plain(r[k])}" for k in named
            if k in frame and pd.notna(r[k]) and not (k == "frames" and r[k] == 1)]
    return f"row {i} ({', '.join(keys)})"


def _plain(value: Any) -> Any:
    """A cell as a person writes it: 768 rather than np.float64(768.0)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _as_number(series: pd.Series, col: str, where: str, frame: pd.DataFrame) -> pd.Series:
    if series.dtype == object or pd.api.types.is_string_dtype(series):
        texts = series.map(lambda v: isinstance(v, str | bytes))
        if texts.any():
            i = int(np.flatnonzero(texts.to_numpy())[0])
            raise DatasetError(f"{where}: column {col!r} holds text ({series.iloc[i]!r} in "
                               f"{_row_label(frame, i)}); numbers must be stored as numbers")
    if series.dtype == bool or series.map(lambda v: isinstance(v, bool | np.bool_)).any():
        i = int(np.flatnonzero(series.map(lambda v: isinstance(v, bool | np.bool_)).to_numpy())[0])
        raise DatasetError(f"{where}: column {col!r} holds a true/false value in {_row_label(frame, i)}; "
                           "it must be a number")
    try:
        return pd.to_numeric(series, errors="raise").astype(float)
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"{where}: column {col!r} is not numeric ({exc})") from None


def validate_measurements(frame: pd.DataFrame, where: str = "measurements") -> pd.DataFrame:
    """Check a measurement table; return it typed. ``where`` names the file in every error.

    Checks: required columns; numbers stored as numbers (never as text); integers
    where counts are meant; allowed values of stage, status, precision and the
    booleans; positive resolution, steps, batch and GPU counts; a measured ok row
    has a positive, finite energy (0 J is never a result: Zeus reports 0 J when it
    measured no GPU) and positive times and power where given; keys unique.
    """
    if frame.empty:
        return conform(frame) if set(frame.columns) <= set(MEASUREMENT_COLUMNS) else frame
    missing = [c for c in REQUIRED if c not in frame]
    if missing:
        raise DatasetError(f"{where}: missing column(s) {missing} (required: {list(REQUIRED)})")
    out = conform(frame, where).reset_index(drop=True)
    for col, kind in COLUMN_TYPES.items():
        if kind == "bool":
            bad = ~out[col].map(lambda v: isinstance(v, bool | np.bool_) or v in (0, 1) or
                                (isinstance(v, float) and math.isnan(v)))
            if bad.any():
                i = int(np.flatnonzero(bad.to_numpy())[0])
                raise DatasetError(f"{where}: column {col!r} must be true or false, not "
                                   f"{_plain(out[col].iloc[i])!r} ({_row_label(out, i)})")
            continue
        values = _as_number(out[col], col, where, out)
        if kind == "int":
            frac = values.notna() & (values != values.round())
            if frac.any():
                i = int(np.flatnonzero(frac.to_numpy())[0])
                raise DatasetError(f"{where}: column {col!r} must hold whole numbers, not "
                                   f"{_plain(values.iloc[i])} ({_row_label(out, i)})")
        out[col] = values.astype("Int64") if kind == "int" else values
    for col, allowed in (("stage", STAGES), ("status", STATUSES), ("precision", PRECISIONS)):
        bad = ~out[col].isin(allowed)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DatasetError(f"{where}: column {col!r} has {out[col].iloc[i]!r} in {_row_label(out, i)}; "
                               f"allowed: {list(allowed)}")
    for col in ("source", "gpu", "model", "energy_status"):
        bad = out[col].isna() | (out[col].astype(str).str.strip() == "")
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DatasetError(f"{where}: column {col!r} is empty in {_row_label(out, i)}")
    for col in POSITIVE_INT:
        bad = out[col].isna() | ~(out[col] > 0)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DatasetError(f"{where}: column {col!r} must be a positive integer, not "
                               f"{_plain(out[col].iloc[i])!r} ({_row_label(out, i)})")
    for col in POSITIVE_WHEN_GIVEN:
        bad = out[col].notna() & ~(out[col] > 0)
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise DatasetError(f"{where}: column {col!r} must be positive where given, not "
                               f"{_plain(out[col].iloc[i])!r} ({_row_label(out, i)})")
    measured = ((out["status"] == "ok") & (out["energy_status"] == "measured")).to_numpy()
    for col in POSITIVE_WHEN_MEASURED:
        v = out[col].to_numpy(dtype=float)
        required = col == "energy_j"
        with np.errstate(invalid="ignore"):
            bad = measured & ((~np.isfinite(v) & required) | (np.isfinite(v) & (v <= 0)) | np.isinf(v))
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            what = "missing" if np.isnan(v[i]) else _plain(v[i])
            unit = "energy" if col == "energy_j" else "value"
            raise DatasetError(f"{where}: {int(bad.sum())} measured row(s) with non-positive {unit} or none "
                               f"in column {col!r}, e.g. {_row_label(out, i)}: {what}")
    _check_unique(out, where)
    for col, kind in COLUMN_TYPES.items():
        if kind == "bool":
            out[col] = out[col].map(lambda v: bool(v) if pd.notna(v) else v)
    return out


def _check_unique(frame: pd.DataFrame, where: str) -> None:
    keys = [*POINT_KEYS, "stage", "repeat"]
    dup = frame.duplicated(keys, keep=False)
    if dup.any():
        rows = np.flatnonzero(dup.to_numpy())
        first = frame.iloc[rows[0]]
        same = frame.iloc[rows][keys].astype(str).eq(first[keys].astype(str)).all(axis=1)
        twins = rows[same.to_numpy()]
        exact = frame.iloc[twins].drop(columns=["schema_version"]).astype(str).nunique().max() == 1
        key = ", ".join(f"{k}={first[k]}" for k in keys)
        raise DatasetError(
            f"{where}: {len(rows)} rows share their keys with another row, e.g. rows "
            f"{', '.join(map(str, twins[:4]))} ({key}); "
            + ("they are exact copies: remove the copy" if exact else "their values differ: "
               "which one is the measurement?"))
