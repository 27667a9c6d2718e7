"""Running the workflow through the Snakemake Python API in tests (one helper for every test file).

Snakemake's Python API (``snakemake.api.SnakemakeApi``) does not read workflow profiles, so every setting a
test needs is given here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from snakemake.api import SnakemakeApi
from snakemake.settings.enums import Quietness
from snakemake.settings.types import ConfigSettings, DAGSettings, OutputSettings, ResourceSettings

TINY_CONFIG = Path("tests/configs/tiny.yaml")


def run_workflow(
    workdir: Path,
    targets: Iterable[str] = (),
    executor: str = "dryrun",
    config: Mapping[str, Any] | None = None,
    configfile: Path | None = None,
    cores: int = 2,
    forcerun: Iterable[str] = (),
) -> list[str]:
    """Run Snakemake in ``workdir``; return the outputs of the jobs it planned (dry run) or ran.

    A ``configfile`` replaces config/config.yaml instead of being merged into it, as
    ``--configfile F --replace-workflow-config`` does.
    """
    outputs: list[str] = []
    config_settings = ConfigSettings(
        config=dict(config or {}),
        configfiles=[workdir / configfile] if configfile else [],
        replace_workflow_config=configfile is not None,
    )
    with SnakemakeApi(OutputSettings(quiet={Quietness.ALL})) as api:
        workflow_api = api.workflow(
            resource_settings=ResourceSettings(cores=cores),
            config_settings=config_settings,
            snakefile=workdir / "Snakefile",
            workdir=workdir,
        )
        dag_api = workflow_api.dag(DAGSettings(targets=frozenset(targets), forcerun=frozenset(forcerun)))
        dag_api.execute_workflow(executor=executor, updated_files=outputs)
    return outputs
