"""Laws across modalities: do the image laws carry over to video, and one law for both.

A video point is a pipeline output with more than one frame (``frames > 1``):
its energy and FLOPs are per video. The same pooled candidates as the image
laws (``analysis.candidates``: the OLS power laws, the mixed law, the roofline
model; and the blends, ``choice.BLENDS``, built from their parts' predictions),
on the same single-GPU raw points, answer three questions:

``video_lomo``
    Leave-one-model-out over the video models alone: each video architecture
    predicted by a fit on the other video architectures.
``image_to_video``
    Fitted on every image point, predicting every video point: the image laws
    never saw a video. A video source is spoken for by the image source measured
    with the same harness (``IMAGE_STACK``), since an unseen source has no factor.
``joint_lomo``
    Fitted on image and video points together, each architecture (image or
    video) held out in turn.
``joint_lomo_nested``
    The same, nested over the video architectures: each held out, the law, its
    blend's weights and its interval chosen (``choice``) on the other video
    architectures held out: what ``predict``'s answer for a new video
    architecture errs.

Metrics (median / P90 / worst absolute percentage error, Spearman, ...) per
experiment, candidate and modality, per GPU kind and over all points. The
joint model, fitted on every point, is what ``predict`` answers video models
with: the law the choice picks on held-out video architectures, one for every
GPU kind, its interval calibrated on their held-out errors. Its JSON has the
laws file's layout, so ``predict`` reads either the same way.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict
from typing import Any

import numpy as np
import pandas as pd

from ..sources import gpu_datasheets
from ..sources.schema import single_gpu_raw
from . import analysis, blend, choice, crossval, nested, roofline
from .analysis_io import LAWS_SCHEMA_VERSION
from .crossval import ALL
from .powerlaw import NotIdentifiable
from .targets import TARGETS

log = logging.getLogger(__name__)

#: The energy modelled: raw whole-output energy (the published video data are raw only).
TARGET = "image"
EXPERIMENTS = {
    "joint_lomo_nested": "nested: each video architecture held out, the candidate, its blend weights and "
                         "its interval chosen on the other video architectures held out (fitted on image "
                         "and video points): what predict's answer for a new video architecture errs",
    "video_lomo": "leave-one-model-out over the video models (fitted on video points only)",
    "image_to_video": "fitted on every image point, predicting every video point (never saw a video)",
    "joint_lomo": "fitted on image and video points together, each architecture held out in turn",
}
#: A video source -> the image source measured with the same harness, software and GPUs (ML.ENERGY
#: v3's text-to-video and text-to-image runs: xDiT 0.4.5, the same benchmark code, H100 and B200 at
#: their default power limits). A law fitted on images only speaks for that source.
IMAGE_STACK = {"mlenergy-v3-video": "mlenergy-v3"}
PREDICTION_COLUMNS = ["experiment", "modality", "frames", "flops", *crossval.PREDICTION_COLUMNS]
METRIC_COLUMNS = ["experiment", "candidate", "modality", "gpu", "held_out", "n_points", "spearman", "kendall",
                  "r2_log", "median_ape", "p90_ape", "max_ape", "coverage"]


def modality(frame: pd.DataFrame) -> pd.Series:
    """``video`` for outputs of more than one frame, else ``image``."""
    frames = frame["frames"].astype(float) if "frames" in frame else pd.Series(1.0, index=frame.index)
    return pd.Series(np.where(frames > 1, "video", "image"), index=frame.index)


def modality_points(points: pd.DataFrame) -> pd.DataFrame:
    """Single-GPU raw points of both modalities, with their ``modality``."""
    if points.empty:
        return points.assign(modality=pd.Series(dtype=object))
    rows = points[single_gpu_raw(points, videos=True).to_numpy()]
    return rows.assign(modality=modality(rows))


def _tag(predictions: pd.DataFrame, experiment: str, rows: pd.DataFrame) -> pd.DataFrame:
    if predictions.empty:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    by_id = rows.set_index("point_id")
    ids = predictions["point_id"]
    return predictions.assign(experiment=experiment, modality=ids.map(by_id["modality"]).to_numpy(),
                              frames=ids.map(by_id["frames"]).to_numpy(),
                              flops=ids.map(by_id["flops"]).to_numpy()).reindex(columns=PREDICTION_COLUMNS)


def predict_unseen(train: pd.DataFrame, test: pd.DataFrame, candidates: list[crossval.Candidate],
                   experiment: str, level: float) -> pd.DataFrame:
    """Every candidate fitted once on ``train``, predicting every point of ``test``."""
    target = TARGETS[TARGET]
    train, test = train[target.valid(train)], test[target.valid(test)]
    if train.empty or test.empty:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    spoken = test.assign(source=test["source"].map(lambda s: IMAGE_STACK.get(s, s)))
    out = []
    for cand in candidates:
        try:
            pred = cand.fit(train).predict(spoken, level)
        except NotIdentifiable as exc:
            log.info("%s on %d training points: not fitted (%s)", cand.name, len(train), exc)
            continue
        measured = target.energy_j(test)
        part = test[[c for c in crossval.PREDICTION_COLUMNS if c in test.columns]].assign(
            target=target.name, candidate=cand.name, held_out=ALL, measured_j=measured,
            predicted_j=pred.energy_j, low_j=pred.low_j, high_j=pred.high_j,
            ape=np.abs(pred.energy_j / measured - 1), log_ratio=np.log(measured / pred.energy_j))
        out.append(part)
    if not out:
        return pd.DataFrame(columns=PREDICTION_COLUMNS)
    return _tag(pd.concat(out, ignore_index=True), experiment, test)


def metrics(predictions: pd.DataFrame) -> pd.DataFrame:
    """``METRIC_COLUMNS`` per (experiment, candidate, modality): per GPU kind (and over every kind, ``gpu``
    all) and held-out model, per GPU kind over its points (``held_out`` all), and over every point."""
    if predictions.empty:
        return pd.DataFrame(columns=METRIC_COLUMNS)
    rows = []
    for (exp, cand, mod), part in predictions.groupby(["experiment", "candidate", "modality"], sort=True):
        def one(p: pd.DataFrame, gpu: str, held: str, exp: str = exp, cand: str = cand, mod: str = mod
                ) -> dict[str, Any]:
            return {"experiment": exp, "candidate": cand, "modality": mod, "gpu": gpu, "held_out": held,
                    **crossval.score(p["measured_j"], p["predicted_j"], p["low_j"], p["high_j"])}
        for gpu, by_gpu in part.groupby("gpu", sort=True):
            for model, p in by_gpu.groupby("model", sort=True):
                rows.append(one(p, str(gpu), str(model)))
            rows.append(one(by_gpu, str(gpu), ALL))
        for model, p in part.groupby("model", sort=True):
            rows.append(one(p, ALL, str(model)))
        rows.append(one(part, ALL, ALL))
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def run_modalities(points: pd.DataFrame, inputs: roofline.RooflineInputs, settings: analysis.Settings
                   ) -> dict[str, pd.DataFrame]:
    """The three experiments' predictions and their metrics (``modality_predictions``, ``_metrics``)."""
    rows = modality_points(points)
    target = TARGETS[TARGET]
    level = settings.prediction_level
    video, image = rows[rows["modality"] == "video"], rows[rows["modality"] == "image"]
    parts = []
    if len(video):
        starts: dict[str, Any] = {}

        def cands() -> list[crossval.Candidate]:
            return analysis.candidates(target, inputs, settings, starts=starts)

        joint_folds = nested.fold_predictions(rows, "model", cands(), target, level, workers=settings.workers,
                                              inner_groups=sorted(set(video["model"].astype(str))))
        joint = _tag(analysis.with_blends(nested.outer(joint_folds)), "joint_lomo", rows)
        is_video = rows.set_index("point_id")["modality"] == "video"
        parts.append(_tag(nested.nested_predictions(
            joint_folds, level, rows=lambda f: f["point_id"].map(is_video)).drop(columns="chosen"),
            "joint_lomo_nested", rows))
        video_folds = nested.fold_predictions(video, "model", cands(), target, level, inner=False,
                                              workers=settings.workers)
        parts.append(_tag(analysis.with_blends(nested.outer(video_folds)), "video_lomo", rows))
        parts.append(with_unseen_blends(predict_unseen(image, video, cands(), "image_to_video", level),
                                        joint[joint["modality"] == "image"]))
        parts.append(joint)
    else:
        log.info("no video points: nothing to compare across modalities")
    parts = [p for p in parts if len(p)]
    predictions = (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=PREDICTION_COLUMNS))
    return {"modality_predictions": predictions, "modality_metrics": metrics(predictions)}


def with_unseen_blends(predictions: pd.DataFrame, image_heldout: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` (a fit that never saw a video) with every blend's (``choice.BLENDS``), its parts
    weighted by their errors on held-out image architectures (``image_heldout``): no video point's error
    enters its own prediction."""
    extra = []
    for name, parts in choice.BLENDS.items():
        weights = blend.inverse_mse_weights(image_heldout, parts) if len(image_heldout) else None
        if weights is not None and len(predictions):
            extra.append(blend.combined(predictions, name, parts, weights))
    extra = [e for e in extra if len(e)]
    return pd.concat([predictions, *extra], ignore_index=True) if extra else predictions


# --------------------------------------------------------------------------- the joint model


def _law_dict(fitted: Any) -> dict[str, Any] | None:
    """What ``predict`` can load back (a law or a roofline fit); None for a candidate that is not one."""
    law = fitted.fit if hasattr(fitted, "fit") and hasattr(fitted, "inputs") else fitted
    return law.to_dict() if hasattr(law, "to_dict") else None


def _ranges(frame: pd.DataFrame) -> dict[str, list[float]]:
    return {c: [float(frame[c].astype(float).min()), float(frame[c].astype(float).max())]
            for c in ("flops", "resolution", "steps", "batch", "frames") if c in frame and len(frame)}


def joint_laws(points: pd.DataFrame, inputs: roofline.RooflineInputs, predictions: pd.DataFrame,
               settings: analysis.Settings, sheets: Mapping[str, gpu_datasheets.Datasheet] | None = None
               ) -> dict[str, Any]:
    """The joint model for ``predict``: every candidate fitted on image and video points together, the
    one with the smallest held-out P90 error on video architectures chosen per GPU kind, its interval
    the quantiles of log(measured / predicted) over those held-out video points. Laws-file layout."""
    rows = modality_points(points)
    video = rows[rows["modality"] == "video"]
    payload: dict[str, Any] = {
        "schema_version": LAWS_SCHEMA_VERSION, "settings": asdict(settings),
        "scope": EXPERIMENTS["joint_lomo"],
        "datasheets": {k: s.to_config() for k, s in (sheets or {}).items()},
    }
    if video.empty:
        return {**payload, "status": "no data", "reason": "no single-GPU video points in the energy table"}
    target = TARGETS[TARGET]
    held = predictions[(predictions["experiment"] == "joint_lomo") & (predictions["modality"] == "video")]
    gpus = sorted(set(video["gpu"].astype(str)))
    entry: dict[str, Any] = {"candidates": {}, "unseen_gpu_candidates": {}}
    decided = choice.choose(held[~held["candidate"].isin(list(choice.BLENDS))], settings.prediction_level)
    for cand in analysis.candidates(target, inputs, settings):
        try:
            fitted = cand.fit(rows)
        except NotIdentifiable as exc:
            entry.setdefault("not_fitted", {})[cand.name] = str(exc)
            continue
        law = _law_dict(fitted)
        if law is None:
            continue
        entry["candidates"][cand.name] = {"law": law, "description": cand.description}
    for name, parts in choice.BLENDS.items():
        weights = decided.weights.get(name)
        if weights is None or not all(p in entry["candidates"] for p in parts):
            continue
        mix = blend.BlendFit(TARGET, name, {p: blend.load_law(entry["candidates"][p]["law"]) for p in parts},
                             weights)
        entry["candidates"][name] = {"law": mix.to_dict(), "description": analysis.DESCRIPTIONS[name]}
    for cand, d in entry["candidates"].items():
        d["lomo"] = {gpu: analysis.rule_dict(decided.rules.get(cand)) for gpu in [ALL, *gpus]}
    names = list(entry["candidates"])
    chosen = next((c for c in decided.ranking if c in names), None)
    entry["selected"] = chosen or (analysis.BASELINE if analysis.BASELINE in names else None)
    entry["selection"] = (f"{decided.why}, on held-out video architectures (fitted on image and video)"
                          if chosen else "no video architecture held out")
    entry["selected_by_gpu"] = {g: entry["selected"] for g in gpus}
    entry["selected_unmeasured_gpu"] = None
    if entry["selected"] is None:
        return {**payload, "status": "no data", "reason": "no candidate could be fitted on image and video"}
    counts = rows["source"].value_counts()
    return {
        **payload, "status": "ok", "n_points": len(rows), "models": sorted(set(rows["model"].astype(str))),
        "gpus": sorted(set(rows["gpu"].astype(str))), "sources": sorted(counts.index.astype(str)),
        "points_by_source": {str(s): int(n) for s, n in counts.items()},
        "measured_by": {f"{g}/{m}": str(p["source"].value_counts().index[0])
                        for (g, m), p in rows.groupby(["gpu", "model"])},
        "architecture_by_model": analysis.architectures_of(rows),
        "video_source": str(video["source"].value_counts().index[0]),
        "ranges": {ALL: _ranges(video), **{str(g): _ranges(p) for g, p in video.groupby("gpu")}},
        "pooled": {TARGET: entry},
    }
