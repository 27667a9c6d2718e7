#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (device tool `run`, carry [".whl"]):
#   bash scripts/device/reference_run.sh [BUDGET_S=500]
# 1. installs the carried wheels (scripts/device/fetch_wheels.sh made them here);
# 2. with GPU_CHECK=1 first, runs `gpu-check` (same protocol, two small points, one verdict line);
# 3. measures the default grid with the workflow itself (snakemake `measurements`, local profile,
#    jobs in the config's measure_order) for the local GPU kind, stopping it with SIGINT after
#    BUDGET_S seconds: the running job ends with one line and every measured point is in the
#    journal (results/measurements/.journal);
# 4. packages what was measured (checks + datasheet), prints the protocol's figures (counter
#    update period and unit, repeat spreads, stage sums, fixed cost per job), and copies
#    everything to $OUT: the journal and logs also every 60 s while measuring, so a call cut
#    short still returns its data. The copies are plain tar at the lowest CPU priority: the
#    2026-12-04 run gzipped every 30 s beside launch-bound SD 1.5 windows, which were then
#    10-41% slower in 13 of 66 windows (host stalls; the protocol now re-measures those).
# To resume on a fresh machine, unpack the returned measurements.tar into the repository first:
# finished points are reused from the journal (same GPU, protocol and library versions).
# A dry run on a CPU machine: DIFFUSION_ENERGY_SIMULATED_GPU=h200 bash scripts/device/reference_run.sh 60
# (no wheels needed; the simulated H200 of diffusion_energy.measurement.simulated_gpu measures).
set -uo pipefail
budget=${1:-500}
out=${OUT:-/tmp/out}
mkdir -p "$out"
started=$(date +%s)
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
# The project itself runs from the checkout (workflow/ on the path), as the rules do.
export PYTHONPATH=$PWD/workflow:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
export CUDA_DEVICE_ORDER=PCI_BUS_ID
de() { python3 -m diffusion_energy.cli "$@"; }
if [ -n "${DIFFUSION_ENERGY_SIMULATED_GPU:-}" ]; then
  kind=$DIFFUSION_ENERGY_SIMULATED_GPU
else
  nvidia-smi --query-gpu=name,driver_version,power.limit,memory.total --format=csv | tee "$out/gpu.csv"
  kind=$(python3 -c "
import yaml; from diffusion_energy.measurement import gpu
print(gpu.local_kinds(yaml.safe_load(open('config/config.yaml'))['gpu_kinds'])[0])") || exit 1
fi
echo "GPU kind: $kind"

pack() {  # atomic copies into $OUT: what is there is always complete
  nice -n 19 tar cf "$out/.m.tar" results/measurements logs 2>/dev/null && mv "$out/.m.tar" "$out/measurements.tar"
}

if [ "${GPU_CHECK:-0}" = 1 ]; then
  timeout -s INT 90 python3 -m diffusion_energy.cli gpu-check --points 256px_10steps_cfg1_b1,512px_25steps_cfg1_b1 \
    --out results/gpu_check.parquet --windows-log logs/gpu_check_windows.csv 2>&1 | tee "$out/gpu_check.txt"
fi

( while sleep 60; do pack; done ) &
packer=$!
left=$(( budget - ($(date +%s) - started) ))
timeout -s INT "$left" snakemake measurements --workflow-profile profiles/local --cores 16 \
  --config "measure_gpus=[$kind]" --keep-incomplete > "$out/snakemake.txt" 2>&1
echo "snakemake ended with status $? after $(( $(date +%s) - started )) s"
kill "$packer" 2>/dev/null
tail -n 40 "$out/snakemake.txt"
de package-reference --gpu "$kind" --measurements results/measurements/.journal \
  --out "$out/reference" 2>&1 | tee "$out/package.txt"
python3 - "$kind" <<'EOF' 2>&1 | tee "$out/protocol.txt"
"""The protocol's figures on this run: counter, spreads, stage sums, re-measured windows, fixed cost."""
import glob, json, sys
import pandas as pd
files = glob.glob(f"results/measurements/.journal/{sys.argv[1]}/*/*/*.parquet")
rows = pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()
if rows.empty:
    print("no point measured")
else:
    ok = rows[rows["status"] == "ok"]
    image = ok[ok["stage"] == "image"]
    points = image.groupby(["model", "precision", "resolution", "steps", "cfg", "batch"]).agg(
        spread=("repeat_spread", "first"), stage_sum=("stage_sum_error", lambda v: v.abs().median()),
        remeasured=("remeasured", "first"), energy_j=("energy_j", "median"))
    print(f"counter: period {rows['counter_period_s'].median() * 1e3:.1f} ms "
          f"({rows['counter_period_s'].min() * 1e3:.1f}-{rows['counter_period_s'].max() * 1e3:.1f}), "
          f"unit {rows['counter_resolution_j'].median() * 1e3:g} mJ")
    print(f"{len(points)} points measured ({(rows.drop_duplicates(['model', 'resolution', 'steps'])['status'] != 'ok').sum()} not): "
          f"spread median {points['spread'].median():.2%}, worst {points['spread'].max():.2%}; "
          f"stage sums worst {points['stage_sum'].max():.2%}; "
          f"{(points['remeasured'].fillna('') != '').sum()} points with re-measured windows")
    print(points.to_string(float_format=lambda v: f"{v:.4g}"))
for job in sorted(glob.glob(f"logs/measure/{sys.argv[1]}/*/*.job.json")):
    j = json.load(open(job))
    print(f"{j['model']} {j['precision']}: {j['measured']} measured, {j['total_s']:.0f} s, fixed "
          f"{j['fixed_s']:.0f} s ({j['fixed_share']:.0%}) {j.get('stopped', '')}")
EOF
pack
cat logs/measure/"$kind"/*/*.job.json > "$out/jobs.json" 2>/dev/null
echo "done in $(( $(date +%s) - started )) s"
