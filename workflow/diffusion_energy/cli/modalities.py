"""Laws across modalities: image and video points, three cross-validations and the joint model.

The logic is in ``laws.modalities``; this reads the energy table (and the
counts the roofline model needs) and writes two tables and the joint model's
JSON (what ``predict`` answers video models with), atomically.
"""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def cmd_modalities(args: argparse.Namespace) -> int:
    from ..laws import analysis_io, modalities
    from .analysis import _prepare, _settings, _sheets

    points, inputs = _prepare(args)[:2]  # the same points as the image laws' (exclusions, datasheets)
    settings = _settings(args)
    tables = modalities.run_modalities(points, inputs, settings)
    analysis_io.write_table(tables["modality_predictions"], args.predictions_out,
                            modalities.PREDICTION_COLUMNS)
    analysis_io.write_table(tables["modality_metrics"], args.metrics_out, modalities.METRIC_COLUMNS)
    payload = modalities.joint_laws(points, inputs, tables["modality_predictions"], settings, _sheets(args))
    analysis_io.write_json(payload, args.laws_out)
    m = tables["modality_metrics"]
    overall = m[(m["held_out"] == "all") & (m["gpu"] == "all")]
    if len(overall):
        log.info("laws across modalities, all points of each experiment:\n%s",
                 overall.drop(columns=["gpu", "held_out"]).to_string(index=False))
    else:
        log.info("no video points: the tables are empty (%s)", payload.get("reason", ""))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("modalities", help="laws across image and video: video leave-one-model-out, "
                                          "image laws predicting video, one joint model held out by "
                                          "architecture")
    p.add_argument("--energy", required=True, help="results/energy.parquet")
    p.add_argument("--flops", help="results/flops.parquet (calls per output of each component)")
    p.add_argument("--ops", help="results/flops_ops.parquet (per-op counts for the roofline model)")
    p.add_argument("--datasheets", help="JSON: GPU kind -> datasheet (the config's gpu_kinds.*.datasheet)")
    p.add_argument("--min-points", type=int, default=3, help="fewest points a law is fitted on")
    p.add_argument("--level", type=float, default=0.90, help="prediction interval coverage")
    p.add_argument("--workers", type=int, default=1, help="processes the fits run in")
    p.add_argument("--predictions-out", required=True, help="CSV: every held-out prediction")
    p.add_argument("--metrics-out", required=True, help="CSV: errors per experiment, candidate and modality")
    p.add_argument("--laws-out", required=True, help="JSON: the joint model (what predict uses for video)")
    p.set_defaults(func=cmd_modalities)
