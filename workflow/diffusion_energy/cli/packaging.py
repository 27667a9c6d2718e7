"""Ship the fitted laws with the package: ``diffusion-energy package-data`` (the ``package_data`` rule).

Copies what the workflow wrote, as written (the laws files, the counts they were
fitted on), and adds ``zoo.json``: the SHA-256 of each architecture file of those
counts and every zoo scheduler's denoiser evaluations (``package_data`` says why).
A zoo architecture the workflow did not count (no grid point, no published row)
is counted here at its usual output, so that ``predict`` answers it at once too:
a video model at its default video, an image model at 512 and 1024 px (where it
makes them), each with its usual CFG and batch 1.
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas as pd

    from ..models.spec import ModelSpec

log = logging.getLogger(__name__)


def zoo_facts(models: list[str]) -> dict:
    """``zoo.json``: the architecture files' SHA-256 (of the counted ``models``) and the scheduler answers
    of every architecture of the zoo that is not a test model (answered by diffusers: seconds each)."""
    from .. import package_data
    from ..models import schedulers, zoo

    specs = {name: zoo.load_spec(name) for name in zoo.available_models()}
    unknown = sorted(set(models) - set(specs))
    if unknown:
        raise zoo.ZooError(f"the FLOPs table counts model(s) {unknown}, which are not in the zoo")
    answers: dict[str, list[list[int]]] = {}
    for name, spec in specs.items():
        key = schedulers.config_key(spec.scheduler_class, spec.scheduler_config)
        if not spec.test_only and key not in answers:
            answers[key] = schedulers.answer_ranges(spec.scheduler_class, spec.scheduler_config, name)
    return {**schedulers.shipped_versions(),
            "architectures": {m: package_data.file_sha256(str(specs[m].source)) for m in sorted(models)},
            "schedulers": dict(sorted(answers.items()))}


def usual_shapes(spec: ModelSpec) -> list[tuple[int, bool, int]]:
    """(resolution, cfg, batch) of an architecture's usual output (see the module's docstring)."""
    if spec.video is not None:
        return [(spec.video.height, spec.cfg, 1)]
    shapes = []
    for resolution in (512, 1024):
        try:
            spec.check_resolution(resolution)
        except ValueError:
            continue
        shapes.append((resolution, spec.cfg, 1))
    return shapes


def uncounted(flops: pd.DataFrame, ops: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``flops`` and ``ops`` with the zoo architectures they lack counted at their usual output."""
    import pandas as pd

    from ..counting import flops as counting
    from ..models import zoo

    tables, op_tables = [flops], [ops]
    for name in zoo.available_models():
        spec = zoo.load_spec(name)
        if spec.test_only or name in set(flops["model"].astype(str)):
            continue
        table, op_table = counting.count_shapes(spec, usual_shapes(spec))
        log.info("%s: counted %d usual shape(s) (the workflow counted none)", name, len(usual_shapes(spec)))
        tables.append(table)
        op_tables.append(op_table)
    return (pd.concat(tables, ignore_index=True)[list(flops.columns)],
            pd.concat(op_tables, ignore_index=True)[list(ops.columns)])


def cmd_package_data(args: argparse.Namespace) -> int:
    import pandas as pd

    from .. import atomic, package_data
    from ..laws import analysis_io, parallelism
    from ..sources import dataset

    for path in (args.laws, args.video_laws):
        analysis_io.read_laws(path)  # a laws file of this version, or one line saying what to do
    parallelism.read_laws(args.parallel_laws)
    flops = dataset.check_flops_table(pd.read_parquet(args.flops), args.flops)
    flops, ops = uncounted(flops, pd.read_parquet(args.ops))
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for src, name in ((args.laws, package_data.LAWS), (args.video_laws, package_data.VIDEO_LAWS),
                      (args.parallel_laws, package_data.PARALLEL_LAWS)):
        with atomic.atomic_path(out / name) as tmp:
            shutil.copyfile(src, tmp)
    atomic.write_parquet(flops, out / package_data.FLOPS)
    atomic.write_parquet(ops, out / package_data.OPS)
    facts = zoo_facts(sorted(flops["model"].astype(str).unique()))
    atomic.write_text(json.dumps(facts, indent=1, sort_keys=True) + "\n", out / package_data.ZOO)
    log.info("shipped %s, %s, %s and the counts of %d architectures in %s", args.laws, args.video_laws,
             args.parallel_laws, len(facts["architectures"]), out)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("package-data", help="ship the fitted laws and their counts with the package "
                                            "(what `predict` answers from after `pip install`)")
    p.add_argument("--laws", required=True, help="results/laws/laws.json")
    p.add_argument("--video-laws", required=True, help="results/laws/modalities.json")
    p.add_argument("--parallel-laws", required=True, help="results/laws/parallel.json")
    p.add_argument("--flops", required=True, help="results/flops.parquet")
    p.add_argument("--ops", required=True, help="results/flops_ops.parquet")
    p.add_argument("--out-dir", required=True, help="workflow/diffusion_energy/data")
    p.set_defaults(func=cmd_package_data)
