"""Analysis subcommands: crossval, fit, anchors, figure, predict.

Each reads files and writes files (atomically); the logic lives in
``analysis``, ``crossval``, ``laws``, ``roofline``, ``anchors``, ``figures``
and ``predict``. With no measurements yet every command still writes valid,
empty outputs (tables with their header, a laws JSON saying "no data", figures
saying "no measurements yet").
"""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import json_argument
from ..figures import FIGURE_NAMES

if TYPE_CHECKING:  # pandas and the laws are imported by the commands that use them: --help starts fast
    import pandas as pd

if TYPE_CHECKING:
    from ..figures import FigureInputs

log = logging.getLogger(__name__)


def _settings(args: argparse.Namespace):  # noqa: ANN202 - analysis imported lazily
    from ..laws.analysis import Settings

    return Settings(bootstrap=getattr(args, "bootstrap", 0), seed=getattr(args, "seed", 0),
                    min_points=args.min_points, prediction_level=args.level,
                    workers=getattr(args, "workers", 1))


#: Columns of the per-op table (``counting.flops.OPS_COLUMNS``) the roofline inputs read.
_OPS_KEYS = ("model", "resolution", "cfg", "batch", "stage", "component", "op", "flops", "bytes", "count")
#: Columns that tell each CSV input apart (a table given in another's place is refused, naming it).
_PREDICTIONS = (("target", "candidate", "held_out", "measured_j", "predicted_j"),
                "predictions table of `crossval`")
_METRICS = (("target", "candidate", "gpu", "held_out", "p90_ape"), "metrics table of `crossval`")
_ANCHOR_ENERGY = (("published_j", "measured_j", "ratio"), "energy table of `anchors`")
_ANCHOR_LAWS = (("metric", "published", "ours"), "laws table of `anchors`")
_MULTI_GPU = (("modality", "held_out", "num_gpus", "ulysses_degree", "ring_degree", "measured_j",
               "predicted_j"), "multi-GPU predictions table of `parallel`")


def _optional_parquet(path: str | None, what: str = "FLOPs table") -> pd.DataFrame | None:
    """``--flops`` (a FLOPs table) or ``--ops`` (a per-op table), checked to be that table."""
    import pandas as pd

    from ..laws import analysis_io
    from ..sources import dataset

    if not path:
        return None
    if not Path(path).is_file():
        log.warning("%s not found: the roofline model uses stage-level counts", path)
        return None
    frame = pd.read_parquet(path)
    if what == "FLOPs table":
        return dataset.check_flops_table(frame, path)
    analysis_io.check_columns(frame, path, _OPS_KEYS, "per-op table (results/flops_ops.parquet)")
    return frame


def _sheets(args: argparse.Namespace):  # noqa: ANN202 - sources imported lazily
    from ..sources import gpu_datasheets

    raw = json_argument(args.datasheets, "--datasheets") if getattr(args, "datasheets", None) else {}
    return {kind: gpu_datasheets.Datasheet.from_config(sheet, f"--datasheets {kind}")
            for kind, sheet in raw.items()}


def _prepare(args: argparse.Namespace):  # noqa: ANN202
    """(points, roofline inputs, left-out lines): points whose energy, FLOPs or time cannot be fitted or
    are impossible on their GPU's datasheet are left out, each with a warning and its reason."""
    from ..laws import analysis_io, exclusions
    from ..laws.analysis import prepare

    sheets = _sheets(args)
    energy, left = exclusions.split(analysis_io.read_energy_table(args.energy), sheets)
    log.info("%d usable points from %s", len(energy), args.energy)
    ops = _optional_parquet(args.ops, "per-op table")
    points, inputs = prepare(energy, _optional_parquet(args.flops), ops, sheets)
    return points, inputs, left


def cmd_crossval(args: argparse.Namespace) -> int:
    from ..laws import analysis_io, crossval
    from ..laws.analysis import CROSSVAL_TABLES, run_crossval

    points, inputs, _ = _prepare(args)
    tables = run_crossval(points, inputs, _settings(args))
    for name in CROSSVAL_TABLES:
        columns = (crossval.BATCH_METRIC_COLUMNS if name.endswith("batch_metrics") else
                   crossval.METRIC_COLUMNS if name.endswith("metrics") else
                   [*crossval.PREDICTION_COLUMNS, "chosen"] if name.startswith("nested") else
                   crossval.PREDICTION_COLUMNS)
        analysis_io.write_table(tables[name], getattr(args, name), columns)
    for name, label in (("nested_lomo_metrics", "leave-one-model-out, nested"),
                        ("nested_logo_metrics", "leave-one-GPU-out, nested")):
        m = tables[name]
        overall = m[(m["held_out"] == crossval.ALL) & (m["target"] == "image")]
        if len(overall):
            log.info("%s, image energy, all points of each GPU kind:\n%s", label,
                     overall.to_string(index=False))
    return 0


def cmd_fit(args: argparse.Namespace) -> int:
    from ..laws import analysis_io
    from ..laws.analysis import LAW_COLUMNS, ROOFLINE_COLUMNS, TERM_COLUMNS, run_fit

    points, inputs, left = _prepare(args)
    def table(path: str | None, kind: tuple[Sequence[str], str]) -> pd.DataFrame | None:
        return analysis_io.read_table(path, *kind) if path else None

    predictions, metrics = table(args.lomo_predictions, _PREDICTIONS), table(args.lomo_metrics, _METRICS)
    logo_p, logo_m = table(args.logo_predictions, _PREDICTIONS), table(args.logo_metrics, _METRICS)
    payload, tables = run_fit(points, inputs, predictions, metrics, _settings(args), logo_p, logo_m,
                              _sheets(args))
    payload["left_out"] = left
    analysis_io.write_json(payload, args.laws)
    analysis_io.write_table(tables["laws"], args.laws_table, LAW_COLUMNS)
    analysis_io.write_table(tables["law_terms"], args.terms_table, TERM_COLUMNS)
    analysis_io.write_table(tables["roofline"], args.roofline_table, ROOFLINE_COLUMNS)
    if payload["status"] != "ok":
        log.info("no law fitted: %s", payload.get("reason"))
    else:
        for target, entry in payload["pooled"].items():
            log.info("%s: pooled model chosen per GPU kind: %s (%s); for a kind nobody measured: %s (%s)",
                     target, entry["selected_by_gpu"], entry["selection"], entry["selected_unmeasured_gpu"],
                     entry["selection_unmeasured_gpu"])
    return 0


def cmd_anchors(args: argparse.Namespace) -> int:
    from ..laws import analysis_io
    from ..sources import anchors

    published = anchors.read_published(args.published)
    energy = analysis_io.read_energy(args.energy)
    payload = analysis_io.read_laws(args.laws)
    analysis_io.write_table(anchors.compare_energy(published, energy), args.energy_out,
                            anchors.ENERGY_COLUMNS)
    analysis_io.write_table(anchors.compare_laws(published, payload), args.laws_out, anchors.LAW_COLUMNS)
    return 0


def figure_inputs(energy: str | None = None, laws: str | None = None, predictions: str | None = None,
                  metrics: str | None = None, anchor_energy: str | None = None,
                  anchor_laws: str | None = None, modality_predictions: str | None = None,
                  multi_gpu_predictions: str | None = None) -> FigureInputs:
    """The figures' inputs read from their files (each checked as its reader checks it); None where not
    given."""
    from ..figures import FigureInputs
    from ..laws import analysis_io

    def table(path: str | None, kind: tuple[Sequence[str], str] = ((), "table")) -> pd.DataFrame | None:
        return analysis_io.read_table(path, *kind) if path else None

    return FigureInputs(
        energy=analysis_io.read_energy(energy) if energy else None,
        laws=analysis_io.read_laws(laws) if laws else None,
        predictions=table(predictions, _PREDICTIONS), metrics=table(metrics, _METRICS),
        anchor_energy=table(anchor_energy, _ANCHOR_ENERGY), anchor_laws=table(anchor_laws, _ANCHOR_LAWS),
        modality_predictions=table(modality_predictions),
        multi_gpu_predictions=table(multi_gpu_predictions, _MULTI_GPU),
    )


def cmd_figure(args: argparse.Namespace) -> int:
    from ..figures import draw

    inputs = figure_inputs(args.energy, args.laws, args.predictions, args.metrics, args.anchor_energy,
                           args.anchor_laws, args.modality_predictions, args.multi_gpu_predictions)
    draw(args.name, inputs, args.out)
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .. import prediction
    from ..laws import analysis_io

    result = prediction.answer(
        args.model, steps=args.steps, resolution=args.resolution, frames=args.frames, fps=args.fps,
        precision=args.precision, batch=args.batch, gpu=args.gpu, gpu_datasheet=args.gpu_datasheet,
        cfg=args.cfg, energy=args.energy, law=args.law, source=args.source,
        grid_intensity=args.grid_intensity, images=args.images, laws=args.laws, video_laws=args.video_laws,
        stack=args.stack, gpus=args.gpus, ulysses_degree=args.ulysses_degree, ring_degree=args.ring_degree,
        parallel_laws=args.parallel_laws)
    print(json.dumps(analysis_io._clean(result.to_dict()), indent=1) if args.json else result.describe())
    return 0


def _analysis_options(p: argparse.ArgumentParser, bootstrap: bool) -> None:
    p.add_argument("--energy", required=True, help="results/energy.parquet")
    p.add_argument("--flops", help="results/flops.parquet (calls per image of each component)")
    p.add_argument("--ops", help="results/flops_ops.parquet (per-op counts for the roofline model)")
    p.add_argument("--datasheets", help="JSON: GPU kind -> datasheet (the config's gpu_kinds.*.datasheet)")
    p.add_argument("--min-points", type=int, default=3, help="fewest points a law is fitted on")
    p.add_argument("--level", type=float, default=0.90, help="prediction interval coverage")
    if bootstrap:
        p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
        p.add_argument("--seed", type=int, default=20261126, help="seed of the bootstrap")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("crossval", help="nested leave-one-model-out / leave-one-GPU-out of the pooled models")
    _analysis_options(p, bootstrap=False)
    for name in ("nested_lomo_predictions", "nested_lomo_metrics", "nested_logo_predictions",
                 "nested_logo_metrics", "lomo_predictions", "lomo_metrics", "lomo_batch_metrics",
                 "logo_predictions", "logo_metrics"):
        p.add_argument(f"--{name.replace('_', '-')}", required=True, help="CSV to write")
    p.add_argument("--workers", type=int, default=1, help="processes the fits run in")
    p.set_defaults(func=cmd_crossval)

    p = sub.add_parser("fit", help="fit every law (per architecture, per stage, pooled, roofline)")
    _analysis_options(p, bootstrap=True)
    p.add_argument("--lomo-predictions", required=True, help="from `crossval` (empirical intervals)")
    p.add_argument("--lomo-metrics", required=True, help="from `crossval` (chooses the pooled model)")
    p.add_argument("--logo-predictions", help="from `crossval` (intervals for GPU kinds nobody measured)")
    p.add_argument("--logo-metrics", help="from `crossval` (the model for GPU kinds nobody measured)")
    p.add_argument("--laws", required=True, help="laws JSON to write (what `predict` reads)")
    p.add_argument("--laws-table", required=True, help="CSV: one row per law")
    p.add_argument("--terms-table", required=True, help="CSV: one row per law term")
    p.add_argument("--roofline-table", required=True, help="CSV: roofline constants per GPU kind")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("anchors", help="compare with published energies and exponents")
    p.add_argument("--published", required=True, help="resources/anchors/published.csv")
    p.add_argument("--energy", required=True)
    p.add_argument("--laws", required=True)
    p.add_argument("--energy-out", required=True)
    p.add_argument("--laws-out", required=True)
    p.set_defaults(func=cmd_anchors)

    p = sub.add_parser("figure", help="draw one figure (PDF and/or PNG)")
    p.add_argument("name", choices=FIGURE_NAMES)
    p.add_argument("--energy")
    p.add_argument("--laws")
    p.add_argument("--predictions", help="leave-one-model-out predictions CSV")
    p.add_argument("--metrics", help="leave-one-model-out metrics CSV")
    p.add_argument("--anchor-energy", help="from `anchors`")
    p.add_argument("--anchor-laws", help="from `anchors`")
    p.add_argument("--modality-predictions", help="from `modalities` (held-out predictions of videos)")
    p.add_argument("--multi-gpu-predictions", help="from `parallel` (held-out multi-GPU predictions)")
    p.add_argument("--out", nargs="+", required=True, help="output files; the format follows the suffix")
    p.set_defaults(func=cmd_figure)

    p = sub.add_parser("predict", help="energy of one image (J and Wh) with a prediction interval")
    p.add_argument("--model", required=True, help="zoo name (e.g. flux-dev) or path to an architecture file")
    p.add_argument("--resolution", type=int, help="square image side, px; for a video its short side "
                                                 "(480 for 480p; default: the model's video)")
    p.add_argument("--frames", type=int, help="frames of a video (default: the video model's; 1 for images)")
    p.add_argument("--fps", type=float, help="frame rate a video is played at (default: the model's): "
                                             "adds the energy per second of video")
    p.add_argument("--steps", type=int, required=True, help="denoising steps")
    p.add_argument("--precision", default="default",
                   help="fp16, bf16, fp32, tf32 or default (the model's). fp32, where the laws hold no fp32 "
                        "point, is the half-precision answer times the roofline's fp32/half ratio, with a "
                        "wider interval; tf32 likewise, fp32 with its matrix multiplies on the TF32 tensor "
                        "cores (torch.backends.cuda.matmul.allow_tf32 = True)")
    p.add_argument("--batch", type=int, default=1, help="images per pipeline call (default 1)")
    p.add_argument("--gpu", help="GPU kind: a measured one, or one with a datasheet in the config")
    p.add_argument("--gpu-datasheet", metavar="KEY=VALUE,...",
                   help="a GPU nobody measured, by its datasheet: half_tflop_s=...,fp32_tflop_s=...,"
                        "bandwidth_gb_s=...,power_limit_w=... (TFLOP/s; GB/s; W). half_tflop_s is the dense "
                        "fp16/bf16 tensor-core peak, without sparsity (half the figure a datasheet quotes "
                        "'with sparsity'); for a GeForce card, the 'FP16 Tensor with FP32 accumulate' figure "
                        "of its architecture whitepaper (half its fp16-accumulate one). fp32_tflop_s is the "
                        "fp32 (non-tensor) peak, used for --precision fp32 (PyTorch runs fp32 matrix "
                        "multiplies there by default); tf32_tflop_s (optional, dense; default half of "
                        "half_tflop_s) is where fp32 convolutions and attention run")
    p.add_argument("--stack", help="the software stack to speak for: diffusers (eager PyTorch diffusers, one "
                                   "GPU; as this workflow and ML.ENERGY v2 run it) or xdit (xDiT sequence "
                                   "parallelism, as ML.ENERGY v3 runs it). Default: diffusers on one GPU, "
                                   "xdit on several, for every model on every GPU kind")
    p.add_argument("--source", help="answer with one data source's constants instead of a stack's (e.g. "
                                    "this-workflow, mlenergy-v2)")
    p.add_argument("--gpus", type=int, default=1,
                   help="GPUs one image or video runs on (xDiT sequence parallelism); the energy is summed "
                        "over them (default 1)")
    p.add_argument("--ulysses-degree", type=int, help="Ulysses sequence-parallel degree (default: --gpus)")
    p.add_argument("--ring-degree", type=int, help="ring-attention degree; Ulysses x ring = --gpus "
                                                   "(default: --gpus / --ulysses-degree)")
    p.add_argument("--grid-intensity", type=float, metavar="G",
                   help="carbon intensity of the electricity, gCO2e/kWh: adds the emissions")
    p.add_argument("--images", type=int, default=1, help="images in the job: adds its total energy")
    p.add_argument("--cfg", action=argparse.BooleanOptionalAction, default=None,
                   help="classifier-free guidance (default: the model's usual setting)")
    p.add_argument("--energy", choices=("raw", "dynamic"), default="raw",
                   help="raw GPU energy, or dynamic (idle power x time subtracted)")
    p.add_argument("--law", choices=("auto", "architecture", "pooled"), default="auto",
                   help="auto: the model's own law if it was measured, else the pooled model")
    p.add_argument("--laws", help="laws JSON written by `fit` (default: results/laws/laws.json where it "
                                  "exists, else the laws shipped with the package)")
    p.add_argument("--video-laws", help="the joint image + video model written by `modalities`, which "
                                        "answers video models (default: results/laws/modalities.json where "
                                        "it exists, else the one shipped with the package)")
    p.add_argument("--parallel-laws", help="the multi-GPU law written by `parallel`, which answers --gpus "
                                           "above 1 (default: results/laws/parallel.json where it exists, "
                                           "else the one shipped with the package)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_predict)
