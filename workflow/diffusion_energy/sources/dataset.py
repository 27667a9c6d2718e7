"""The measurement tables: schema, validation, merging and collection.

Only this module reads and writes measurement tables, so the schema lives in
one place. Three tables:

``results/measurements/{gpu}/{model}/{precision}/{slug}.parquet``
    One file per grid point, one row per (stage, repeat); ``MEASUREMENT_COLUMNS``.
``results/measurements.parquet``
    The shipped reference dataset merged with everything measured locally
    (same columns; a local point replaces a shipped one for the same GPU kind).
``results/energy.parquet``
    One row per measured grid point: medians over repeats, spread, stage
    energies, joined with the FLOPs, kernels and bytes of every stage;
    ``ENERGY_COLUMNS``.

Units are in the names: ``_j`` joules, ``_s`` seconds, ``_w`` watts.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .. import atomic

log = logging.getLogger(__name__)

SCHEMA_VERSION = 1
GRID_KEYS = ["gpu", "model", "precision", "resolution", "steps", "cfg", "batch"]
STAGES = ("text", "denoise", "vae", "image")

#: Column -> meaning, for the per-point measurement files (one row per stage and repeat).
MEASUREMENT_COLUMNS: dict[str, str] = {
    "schema_version": "version of this schema",
    "gpu": "GPU kind (wildcard), e.g. h100",
    "model": "architecture name from the zoo",
    "architecture": "denoiser kind: unet or mmdit",
    "precision": "fp16, bf16 or fp32",
    "resolution": "square image side, px",
    "steps": "denoising steps",
    "cfg": "classifier-free guidance on",
    "batch": "images per pipeline call",
    "stage": "text, denoise, vae or image (the whole image)",
    "repeat": "repeat index, 0-based",
    "status": "ok, oom or error (then energy columns are NaN and error says why)",
    "energy_status": "measured, or absent: <reason> (e.g. no NVIDIA GPU on a CPU test run)",
    "energy_j": "GPU energy per image for this stage, J (raw counter difference / calls)",
    "dynamic_energy_j": "energy_j minus idle_power_w x time_s, J",
    "time_s": "wall time per image for this stage, s (synchronised)",
    "window_s": "length of the energy window, s",
    "window_calls": "stage executions inside the window (short stages are repeated)",
    "idle_power_w": "mean GPU power with the CUDA context alive and the GPU idle, W",
    "stage_sum_error": "(text + denoise + vae) / image - 1 for this repeat (image rows only)",
    "repeat_spread": "max/min - 1 of the image energy over repeats (point level)",
    "flag": "empty, or why the point is suspect (spread, stage sum, throttling)",
    "gpu_name": "NVML device name",
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
    "weights_source": "random-init or local:<path>",
    "hostname": "machine",
    "measured_at": "UTC ISO time the point finished",
    "denoiser_calls": "denoiser forwards per image, counted by a hook (steps x CFG calls)",
    "warmup": "protocol: fewest warm-up calls before a point's (or stage's) first window",
    "warmup_s": "protocol: shortest warm-up, s",
    "warmup_images": "warm-up images run before this point's repeats (0: a point of the same shape "
                     "had just run, so its kernels were warm)",
    "min_window_s": "shortest energy window of the protocol, s",
    "error": "error message when status is not ok",
}

#: Column -> meaning, for results/energy.parquet (one row per measured grid point).
ENERGY_COLUMNS: dict[str, str] = {
    **{k: MEASUREMENT_COLUMNS[k] for k in GRID_KEYS},
    "architecture": "denoiser kind: unet or mmdit",
    "family": "pipeline family (sd, sdxl, sd3, flux, qwen)",
    "status": "ok or oom",
    "n_repeats": "repeats the medians are over",
    "energy_j": "median whole-image energy, J",
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
    "gpu_name": "NVML device name",
    "flops": "FLOPs per image: text + steps x denoiser calls + VAE decode",
    "text_flops": "FLOPs of all text encoders per image",
    "denoise_flops": "FLOPs of all denoiser calls per image",
    "vae_flops": "FLOPs of the VAE decode per image",
    "denoise_flops_per_step": "FLOPs of the denoiser calls of one step",
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


class DatasetError(ValueError):
    """A measurement table breaks the schema or a sanity rule."""


def empty_measurements() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype="object") for c in MEASUREMENT_COLUMNS})


def conform(frame: pd.DataFrame) -> pd.DataFrame:
    """Columns in schema order; missing ones added as NaN; unknown ones refused."""
    unknown = set(frame.columns) - set(MEASUREMENT_COLUMNS)
    if unknown:
        raise DatasetError(f"unknown measurement column(s) {sorted(unknown)}")
    out = frame.copy()
    for col in MEASUREMENT_COLUMNS:
        if col not in out:
            out[col] = np.nan
    out["schema_version"] = SCHEMA_VERSION
    return out[list(MEASUREMENT_COLUMNS)]


def check_measurements(frame: pd.DataFrame, source: str = "measurements") -> None:
    """Refuse rows that claim a measurement they do not hold.

    A row with status ok and energy_status measured must have a positive,
    finite energy: 0 J is never a result (Zeus reports 0 J when it measured no
    GPU). Every stage of every ok point must be present.
    """
    if frame.empty:
        return
    missing = [c for c in ("gpu", "model", "stage", "status", "energy_status") if c not in frame]
    if missing:
        raise DatasetError(f"{source}: missing column(s) {missing}")
    measured = frame[(frame["status"] == "ok") & (frame["energy_status"] == "measured")]
    bad = measured[~(measured["energy_j"].astype(float) > 0)]
    if len(bad):
        first = bad.iloc[0]
        raise DatasetError(
            f"{source}: {len(bad)} measured row(s) with non-positive energy, e.g. "
            f"{first['gpu']}/{first['model']} {first.get('resolution')}px stage {first['stage']}"
        )


def read_measurements(paths: Iterable[str | Path]) -> pd.DataFrame:
    frames = [pd.read_parquet(p) for p in paths]
    frames = [f for f in frames if not f.empty]
    if not frames:
        return empty_measurements()
    out = pd.concat(frames, ignore_index=True)
    check_measurements(out)
    return out


def merge_reference(reference: pd.DataFrame, local: pd.DataFrame) -> pd.DataFrame:
    """Shipped rows plus local rows; a locally measured point replaces the shipped one."""
    if local.empty:
        return reference.reset_index(drop=True)
    if reference.empty:
        return local.reset_index(drop=True)
    local_keys = set(map(tuple, local[GRID_KEYS].astype(str).itertuples(index=False)))
    shipped_keys = reference[GRID_KEYS].astype(str).apply(tuple, axis=1)
    kept = reference[~shipped_keys.isin(local_keys)]
    replaced = len(reference) - len(kept)
    if replaced:
        log.info("%d shipped rows replaced by local measurements of the same points", replaced)
    return pd.concat([kept, local], ignore_index=True)


def write_merged(reference_paths: list[str], local_paths: list[str], out: str | Path) -> pd.DataFrame:
    merged = merge_reference(read_measurements(reference_paths), read_measurements(local_paths))
    atomic.write_parquet(merged, out)
    return merged


def _stage_flops(flops: pd.DataFrame) -> pd.DataFrame:
    """Per-image FLOPs/kernels/bytes by stage, wide, keyed by (model, res, cfg, batch, steps)."""
    keys = ["model", "resolution", "cfg", "batch"]
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



def per_image_costs(points: pd.DataFrame, flops: pd.DataFrame) -> pd.DataFrame:
    """``points`` (grid keys and precision) with FLOPs, kernels and bytes per image added.

    Per stage and in total: text encoders + steps x the denoiser calls of a step +
    the VAE decode, from the per-call FLOPs table. Measured and predicted points
    share this one definition of "per image". Points without FLOPs in ``flops``
    (a model not in the current grid) are left out with a log line.
    """
    stage_flops = _stage_flops(flops)
    keys = ["model", "resolution", "cfg", "batch"]
    joined = points.copy()
    for stage in ("text", "denoise", "vae"):
        part = stage_flops[stage_flops["stage"] == stage].drop(columns="stage")
        part = part.rename(columns={c: f"{stage}__{c}" for c in part.columns if c not in keys})
        joined = joined.merge(part, on=keys, how="left")
    missing = joined["denoise__f_step"].isna()
    if missing.any():
        log.warning("%d points have no FLOPs in the FLOPs table and are left out: %s",
                    int(missing.sum()), sorted(joined.loc[missing, "model"].unique()))
        joined = joined[~missing].copy()
    steps = joined["steps"]
    # The counts are per pipeline call, which makes ``batch`` images: FLOPs per image do not
    # change with the batch, kernel launches and weight traffic per image fall with it.
    per_image = 1.0 / joined["batch"].astype(float)
    # Bytes were counted with 2-byte tensors; fp32 moves twice as many.
    byte_scale = joined["precision"].map({"fp32": 2.0}).fillna(1.0)
    for stage in ("text", "denoise", "vae"):
        j = joined
        joined[f"{stage}_flops"] = (j[f"{stage}__f_img"] + steps * j[f"{stage}__f_step"]) * per_image
        joined[f"{stage}_kernels"] = (j[f"{stage}__k_img"] + steps * j[f"{stage}__k_step"]) * per_image
        joined[f"{stage}_bytes"] = ((j[f"{stage}__b_img"] + steps * j[f"{stage}__b_step"]) * byte_scale
                                    * per_image)
    joined["denoise_flops_per_step"] = joined["denoise__f_step"] * per_image
    joined["denoiser_params"] = joined["denoise__p_den"]
    joined["flops_analytic"] = sum(
        joined[f"{s}__a_img"] + steps * joined[f"{s}__a_step"] for s in ("text", "denoise", "vae")
    ) * per_image
    for what in ("flops", "kernels", "bytes"):
        joined[what] = sum(joined[f"{s}_{what}"] for s in ("text", "denoise", "vae"))
    fam = flops.drop_duplicates("model").set_index("model")["family"]
    joined["family"] = joined["model"].map(fam)
    return joined.drop(columns=[c for c in joined.columns if "__" in c])


def collect_energy(measurements: pd.DataFrame, flops: pd.DataFrame) -> pd.DataFrame:
    """One row per grid point with a GPU measurement (or oom), joined with FLOPs.

    Points whose energy is absent (measured on a machine without an NVIDIA
    GPU) are left out: they hold times but no joules. Points without FLOPs in
    ``flops`` (a model not in the current grid) are left out with a log line.
    """
    if measurements.empty:
        return pd.DataFrame({c: pd.Series(dtype="object") for c in ENERGY_COLUMNS})
    m = measurements.copy()
    measured = m[(m["status"] == "ok") & (m["energy_status"] == "measured")]
    oom = m[m["status"] == "oom"].drop_duplicates(GRID_KEYS)
    absent = m[(m["status"] == "ok") & (m["energy_status"] != "measured")]
    if len(absent):
        log.info("%d points without GPU energy left out",
                 len(absent.drop_duplicates(GRID_KEYS)))
    first = {"architecture": "first", "gpu_name": "first", "idle_power_w": "median",
             "flag": lambda s: "; ".join(sorted({f for f in s.dropna() if f}))}
    image = measured[measured["stage"] == "image"].groupby(GRID_KEYS, as_index=False).agg(
        n_repeats=("repeat", "nunique"), energy_j=("energy_j", "median"),
        energy_min_j=("energy_j", "min"), energy_max_j=("energy_j", "max"),
        dynamic_energy_j=("dynamic_energy_j", "median"), time_s=("time_s", "median"),
        stage_sum_error=("stage_sum_error", "median"),
        **{k: (k, f) for k, f in first.items()},
    )
    image["repeat_spread"] = image["energy_max_j"] / image["energy_min_j"] - 1
    image["status"] = "ok"
    for stage in ("text", "denoise", "vae"):
        part = measured[measured["stage"] == stage].groupby(GRID_KEYS, as_index=False).agg(
            **{f"{stage}_energy_j": ("energy_j", "median"),
               f"{stage}_dynamic_energy_j": ("dynamic_energy_j", "median"),
               f"{stage}_time_s": ("time_s", "median")})
        image = image.merge(part, on=GRID_KEYS, how="left")
    if len(oom):
        oom_rows = oom[GRID_KEYS + ["architecture", "gpu_name"]].assign(status="oom", n_repeats=0)
        image = pd.concat([image, oom_rows], ignore_index=True)
    image["cfg"] = image["cfg"].astype(bool)
    for col in ("resolution", "steps", "batch"):
        image[col] = image[col].astype(int)

    joined = per_image_costs(image, flops)
    for col in ENERGY_COLUMNS:
        if col not in joined:
            joined[col] = np.nan
    out = joined[list(ENERGY_COLUMNS)].sort_values(GRID_KEYS, ignore_index=True)
    for col in ("flops", "denoiser_params"):
        out[col] = out[col].round().astype("int64")
    for col in ("kernels", "bytes"):  # per image: a batch shares its launches and weight reads
        out[col] = out[col].astype(float)
    return out
