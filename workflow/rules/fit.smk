# Energy scaling laws: cross-validate the pooled models, then fit every law.
# Rules are thin calls of the CLI (`diffusion-energy crossval|fit|anchors`, run from
# the checkout as `python3 -m diffusion_energy.cli`);
# the logic is in workflow/diffusion_energy/{analysis,laws,roofline,crossval}.py.
# With no measurements yet every output is still written: empty tables with
# their header and a laws JSON whose status is "no data".
from diffusion_energy.laws.analysis_io import FIGURE_NAMES

ANALYSIS = config.get("analysis", {})
LAWS_JSON = "results/laws/laws.json"
CROSSVAL_TABLES = {
    name: f"results/tables/{name}.csv"
    for name in (
        "nested_lomo_predictions",
        "nested_lomo_metrics",
        "nested_logo_predictions",
        "nested_logo_metrics",
        "lomo_predictions",
        "lomo_metrics",
        "lomo_batch_metrics",
        "logo_predictions",
        "logo_metrics",
    )
}
# The GPU datasheets: how a GPU kind enters the shared models (only the analysis reads them).
GPU_DATASHEETS_JSON = json.dumps(
    {k: v["datasheet"] for k, v in config.get("gpu_kinds", {}).items() if v.get("datasheet")},
    sort_keys=True,
)
LAW_TABLES = {name: f"results/tables/{name}.csv" for name in ("laws", "law_terms", "roofline")}
ANCHOR_TABLES = {
    name: f"results/tables/{name}.csv" for name in ("anchors_energy", "anchors_laws")
}
FIGURE_FILES = [f"results/figures/{n}.{ext}" for n in FIGURE_NAMES for ext in ("pdf", "png")]

# What `rule all` requests of the analysis: the laws, every table, every figure.
ANALYSIS_TARGETS = [
    LAWS_JSON,
    *CROSSVAL_TABLES.values(),
    *LAW_TABLES.values(),
    *ANCHOR_TABLES.values(),
    *FIGURE_FILES,
]


report: "../report/workflow.rst"


rule crossval:
    input:
        energy="results/energy.parquet",
        flops="results/flops.parquet",
        ops="results/flops_ops.parquet",
    output:
        nested_lomo_predictions=CROSSVAL_TABLES["nested_lomo_predictions"],
        nested_lomo_metrics=report(
            CROSSVAL_TABLES["nested_lomo_metrics"],
            caption="../report/nested_lomo_metrics.rst",
            category="Tables",
        ),
        nested_logo_predictions=CROSSVAL_TABLES["nested_logo_predictions"],
        nested_logo_metrics=report(
            CROSSVAL_TABLES["nested_logo_metrics"],
            caption="../report/nested_logo_metrics.rst",
            category="Tables",
        ),
        lomo_predictions=CROSSVAL_TABLES["lomo_predictions"],
        lomo_metrics=report(
            CROSSVAL_TABLES["lomo_metrics"],
            caption="../report/lomo_metrics.rst",
            category="Tables",
        ),
        lomo_batch_metrics=report(
            CROSSVAL_TABLES["lomo_batch_metrics"],
            caption="../report/lomo_batch_metrics.rst",
            category="Tables",
        ),
        logo_predictions=CROSSVAL_TABLES["logo_predictions"],
        logo_metrics=report(
            CROSSVAL_TABLES["logo_metrics"],
            caption="../report/logo_metrics.rst",
            category="Tables",
        ),
    log:
        "logs/analysis/crossval.log",
    benchmark:
        "results/benchmarks/analysis/crossval.tsv"
    threads: 2
    params:
        min_points=ANALYSIS.get("min_points", 3),
        level=ANALYSIS.get("prediction_level", 0.90),
        datasheets=GPU_DATASHEETS_JSON,
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli crossval --energy {input.energy}"
        " --flops {input.flops} --ops {input.ops} --datasheets {params.datasheets:q}"
        " --min-points {params.min_points} --level {params.level} --workers {threads}"
        " --nested-lomo-predictions {output.nested_lomo_predictions}"
        " --nested-lomo-metrics {output.nested_lomo_metrics}"
        " --nested-logo-predictions {output.nested_logo_predictions}"
        " --nested-logo-metrics {output.nested_logo_metrics}"
        " --lomo-predictions {output.lomo_predictions} --lomo-metrics {output.lomo_metrics}"
        " --lomo-batch-metrics {output.lomo_batch_metrics}"
        " --logo-predictions {output.logo_predictions} --logo-metrics {output.logo_metrics}"
        " 2> {log}"


rule fit:
    input:
        energy="results/energy.parquet",
        flops="results/flops.parquet",
        ops="results/flops_ops.parquet",
        lomo_predictions=CROSSVAL_TABLES["lomo_predictions"],
        lomo_metrics=CROSSVAL_TABLES["lomo_metrics"],
        logo_predictions=CROSSVAL_TABLES["logo_predictions"],
        logo_metrics=CROSSVAL_TABLES["logo_metrics"],
    output:
        laws=LAWS_JSON,
        laws_table=report(
            LAW_TABLES["laws"], caption="../report/laws.rst", category="Tables"
        ),
        terms_table=report(
            LAW_TABLES["law_terms"], caption="../report/law_terms.rst", category="Tables"
        ),
        roofline_table=report(
            LAW_TABLES["roofline"], caption="../report/roofline.rst", category="Tables"
        ),
    log:
        "logs/analysis/fit.log",
    benchmark:
        "results/benchmarks/analysis/fit.tsv"
    params:
        bootstrap=ANALYSIS.get("bootstrap", 1000),
        seed=ANALYSIS.get("seed", 20261126),
        min_points=ANALYSIS.get("min_points", 3),
        level=ANALYSIS.get("prediction_level", 0.90),
        datasheets=GPU_DATASHEETS_JSON,
    resources:
        mem_mb=2000,
        runtime=10,
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli fit --energy {input.energy}"
        " --flops {input.flops} --ops {input.ops} --datasheets {params.datasheets:q}"
        " --lomo-predictions {input.lomo_predictions} --lomo-metrics {input.lomo_metrics}"
        " --logo-predictions {input.logo_predictions} --logo-metrics {input.logo_metrics}"
        " --bootstrap {params.bootstrap} --seed {params.seed} --min-points {params.min_points}"
        " --level {params.level} --laws {output.laws} --laws-table {output.laws_table}"
        " --terms-table {output.terms_table} --roofline-table {output.roofline_table} 2> {log}"


rule anchors:
    input:
        published="resources/anchors/published.csv",
        energy="results/energy.parquet",
        laws=LAWS_JSON,
    output:
        energy=report(
            ANCHOR_TABLES["anchors_energy"],
            caption="../report/anchors_energy.rst",
            category="Tables",
        ),
        laws=report(
            ANCHOR_TABLES["anchors_laws"],
            caption="../report/anchors_laws.rst",
            category="Tables",
        ),
    log:
        "logs/analysis/anchors.log",
    benchmark:
        "results/benchmarks/analysis/anchors.tsv"
    conda:
        "../../envs/analysis.yaml"
    shell:
        "python3 -m diffusion_energy.cli anchors --published {input.published}"
        " --energy {input.energy}"
        " --laws {input.laws} --energy-out {output.energy} --laws-out {output.laws} 2> {log}"
