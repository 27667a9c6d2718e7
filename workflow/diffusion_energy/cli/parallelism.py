"""The multi-GPU law: energy on N GPUs from the energy on one, held out by architecture.

The logic is in ``laws.parallelism``; this reads the energy table, the per-op
counts and the single-GPU laws' nested held-out predictions (images from the
nested leave-one-model-out table, videos from the joint model's), and writes
the held-out predictions, their metrics and the law ``predict --gpus`` uses.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)

#: Which held-out single-GPU predictions answer each modality: (experiment, candidate) in its table.
IMAGE_HELDOUT = "selected"
VIDEO_HELDOUT = ("joint_lomo_nested", "selected")


def _heldout(args: argparse.Namespace) -> dict:  # noqa: ANN401 - pandas imported lazily
    """Per modality, the nested held-out single-GPU predictions (the answer of the procedure that picks
    the law without the held-out architecture)."""
    from ..laws import analysis_io

    out = {}
    keys = ["candidate", "source", "gpu", "model", "precision", "resolution", "steps", "cfg", "batch",
            "predicted_j"]
    if args.nested_predictions:
        t = analysis_io.read_table(args.nested_predictions, [*keys, "target"],
                                   "nested leave-one-model-out table")
        out["image"] = t[(t["candidate"] == IMAGE_HELDOUT) & (t["target"] == "image")].assign(frames=1)
    if args.modality_predictions:
        t = analysis_io.read_table(args.modality_predictions, [*keys, "experiment", "frames"],
                                   "table of predictions across modalities")
        out["video"] = t[(t["experiment"] == VIDEO_HELDOUT[0]) & (t["candidate"] == VIDEO_HELDOUT[1])]
    return out


def cmd_parallel(args: argparse.Namespace) -> int:
    from ..laws import analysis_io, parallelism
    from .analysis import _optional_parquet, _prepare, _sheets

    points, _, _ = _prepare(args)
    ops, flops = _optional_parquet(args.ops, "per-op table"), _optional_parquet(args.flops)
    # Only the architectures a source measured on several GPUs (and their one-GPU points) are read.
    multi = points["num_gpus"].astype(float) > 1
    groups = points.loc[multi, ["source", "gpu", "model"]].drop_duplicates()
    usable = points.reset_index(drop=True).merge(groups, on=["source", "gpu", "model"], how="inner")
    usable.index = usable["point_id"].to_numpy()
    if len(usable) and ops is not None and flops is not None:
        work = parallelism.attention_work(usable, ops, flops)
    else:
        work = usable.assign(attention_bytes=0.0, attention_calls=0.0)
    table, metrics, payload = parallelism.run(usable, work, _sheets(args), _heldout(args), args.level)
    analysis_io.write_table(table, args.predictions_out, parallelism.PREDICTION_COLUMNS)
    analysis_io.write_table(metrics, args.metrics_out, parallelism.METRIC_COLUMNS)
    analysis_io.write_json({"kind": parallelism.KIND, "level": args.level, **payload}, args.laws_out)
    for modality, entry in payload.items():
        if entry.get("status") == "ok":
            log.info("%s on several GPUs: %s", modality, parallelism.describe(
                parallelism.ParallelLaw.from_dict(entry)))
        else:
            log.warning("%s on several GPUs: %s", modality, entry.get("reason"))
    overall = metrics[(metrics["held_out"] == "all") & (metrics["gpu"] == "all")]
    if len(overall):
        log.info("multi-GPU leave-one-model-out:\n%s", overall.to_string(index=False))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("parallel", help="the multi-GPU law (xDiT sequence parallelism): energy on N GPUs "
                                        "from the energy on one, held out by architecture")
    p.add_argument("--energy", required=True, help="results/energy.parquet")
    p.add_argument("--flops", required=True, help="results/flops.parquet (calls per output of a component)")
    p.add_argument("--ops", required=True, help="results/flops_ops.parquet (the attention work exchanged)")
    p.add_argument("--datasheets", help="JSON: GPU kind -> datasheet (nvlink_gb_s and power_limit_w read)")
    p.add_argument("--nested-predictions", help="results/tables/nested_lomo_predictions.csv: the one-GPU "
                                               "energy of each held-out image architecture")
    p.add_argument("--modality-predictions", help="results/tables/modality_predictions.csv: the one-GPU "
                                                 "energy of each held-out video architecture")
    p.add_argument("--level", type=float, default=0.90, help="prediction interval coverage")
    p.add_argument("--predictions-out", required=True, help="CSV: every held-out multi-GPU prediction")
    p.add_argument("--metrics-out", required=True, help="CSV: their errors by modality, GPU, architecture")
    p.add_argument("--laws-out", required=True, help="JSON: the law predict --gpus answers with")
    p.set_defaults(func=cmd_parallel)
