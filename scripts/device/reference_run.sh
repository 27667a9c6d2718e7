#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (device tool `run`, carry [".whl"]):
#   bash scripts/device/reference_run.sh [BUDGET_S=480]
# 1. installs the carried wheels (scripts/device/fetch_wheels.sh made them here);
# 2. runs the GPU check (a few small points, printed);
# 3. measures the grid with the workflow itself (snakemake, local profile) for the
#    local GPU kind, stopping (SIGINT) after BUDGET_S seconds so the call ends in time;
# 4. packages what was measured (checks + datasheet) and copies everything to $OUT,
#    also every 30 s while measuring, so a call cut short still returns its data.
# To resume on a fresh machine, unpack the returned measurements.tgz into the
# repository first: finished points are reused from results/measurements/.journal.
set -uo pipefail
budget=${1:-480}
out=${OUT:-/tmp/out}
mkdir -p "$out"
started=$(date +%s)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
  --target /tmp/site .whl/*.whl || exit 1
# The project itself runs from the checkout (workflow/ on the path), as the rules do.
export PYTHONPATH=$PWD/workflow:/tmp/site PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
de() { python3 -m diffusion_energy.cli "$@"; }
nvidia-smi --query-gpu=name,driver_version,power.limit,memory.total --format=csv | tee "$out/gpu.csv"
kind=$(python3 -c "
import yaml; from diffusion_energy.measurement import gpu
print(gpu.local_kinds(yaml.safe_load(open('config/config.yaml'))['gpu_kinds'])[0])")
echo "GPU kind: $kind"

pack() {  # atomic copies into $OUT: what is there is always complete
  tar czf "$out/.m.tgz" results/measurements logs 2>/dev/null && mv "$out/.m.tgz" "$out/measurements.tgz"
}

timeout -s INT 120 python3 -m diffusion_energy.cli gpu-check --out results/gpu_check.parquet 2>&1 | tee "$out/gpu_check.txt"

( while sleep 30; do pack; done ) &
packer=$!
left=$(( budget - ($(date +%s) - started) ))
timeout -s INT "$left" snakemake measurements --workflow-profile profiles/local --cores 16 \
  --config "measure_gpus=[$kind]" --keep-incomplete 2>&1 | tail -n 200 > "$out/snakemake.txt"
kill "$packer" 2>/dev/null
de package-reference --gpu "$kind" --measurements results/measurements/.journal \
  --out "$out/reference" 2>&1 | tee "$out/package.txt"
pack
cat logs/measure/"$kind"/*/*.job.json > "$out/jobs.json" 2>/dev/null
echo "done in $(( $(date +%s) - started )) s"
