#!/usr/bin/env bash
# The one prepared command for a lent GPU machine (device tool `run`, carry [".whl"]):
#   bash scripts/device/campaign_run.sh [BUDGET_S=480]
# One run of the measurement campaign (diffusion_energy/measurement/campaign.py):
# 1. installs the carried wheels (scripts/device/fetch_wheels.sh made them here);
# 2. with GPU_CHECK=1, runs `gpu-check` first (its output goes into the tarball; its time comes off
#    the budget);
# 3. `diffusion-energy campaign-run`: measures the next points of the config's grid, in
#    measure_order, that resources/measurements/<kind>.parquet does not hold yet as this code,
#    protocol and library versions would measure them (any card of the kind), one process per model,
#    until BUDGET_S seconds are spent (a job starts no point it has no time for);
# 4. everything comes back as ONE file under $OUT: campaign-<kind>-<run id>.tar (manifest, the
#    measured points, logs), written again after every job, so a run cut short still returns them.
# Back on a CPU machine, with the tarball in the checkout:
#   diffusion-energy campaign-merge campaign-<kind>-<run id>.tar
# checks its points, merges them into resources/measurements/<kind>.parquet (replaced rows are kept in
# resources/measurements/superseded/), adds the run to <kind>.runs.json and rewrites <kind>.md.
# Commit them: the next run (a fresh machine, another card) goes on where that table ends.
# A dry run on a CPU machine (no wheels needed; the simulated H200 measures, in virtual time, and
# its tarball merges into results/simulated-measurements, never into resources/):
#   DIFFUSION_ENERGY_SIMULATED_GPU=h200 OUT=/tmp/out bash scripts/device/campaign_run.sh 480
set -uo pipefail
budget=${1:-480}
out=${OUT:-/tmp/out}
mkdir -p "$out" logs/campaign
started=$(date +%s)
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl || exit 1
fi
# The project itself runs from the checkout (workflow/ on the path), as the rules do.
export PYTHONPATH=$PWD/workflow:/tmp/site${PYTHONPATH:+:$PYTHONPATH} PATH=/tmp/site/bin:$PATH PYTHONUNBUFFERED=1
export CUDA_DEVICE_ORDER=PCI_BUS_ID
extra=()
if [ -z "${DIFFUSION_ENERGY_SIMULATED_GPU:-}" ]; then
  nvidia-smi --query-gpu=name,uuid,driver_version,power.limit,memory.total --format=csv \
    > logs/campaign/nvidia_smi.csv 2>&1 && extra+=(--log logs/campaign/nvidia_smi.csv)
fi
if [ "${GPU_CHECK:-0}" = 1 ]; then
  timeout -s INT 120 python3 -m diffusion_energy.cli gpu-check \
    --points 256px_10steps_cfg1_b1,512px_25steps_cfg1_b1 --windows-log logs/campaign/gpu_check_windows.csv \
    > logs/campaign/gpu_check.txt 2>&1
  tail -n 3 logs/campaign/gpu_check.txt
  extra+=(--log logs/campaign/gpu_check.txt --log logs/campaign/gpu_check_windows.csv)
fi
left=$(( budget - ($(date +%s) - started) ))
# The campaign stops its jobs at its budget itself; SIGINT 60 s later is the last resort (the
# running job keeps every measured point, and the tarball is packed before the command ends).
timeout -s INT $(( left + 60 )) python3 -m diffusion_energy.cli campaign-run --budget-s "$left" \
  --out "$out" "${extra[@]}"
status=$?
echo "campaign-run ended with status $status after $(( $(date +%s) - started )) s; in $out: $(ls "$out")"
exit $status
