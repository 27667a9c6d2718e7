#!/usr/bin/env bash
# Download, here (with network), the Python 3.12 wheels a lent GPU machine lacks:
# snakemake, diffusers and zeus with their dependencies, minus what that machine
# already has (scripts/device/device_packages.txt: the Python packages already there, as the
# lending service lists them),
# plus this project as a wheel. They travel with `carry: [".whl"]`.
# Usage: scripts/device/fetch_wheels.sh [DEST=.whl]
set -euo pipefail
dest=${1:-.whl}
here=$(cd "$(dirname "$0")" && pwd)
rm -rf "$dest" && mkdir -p "$dest"
platforms=()
for p in manylinux_2_39_x86_64 manylinux_2_35_x86_64 manylinux_2_34_x86_64 manylinux_2_31_x86_64 \
         manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64 \
         manylinux2014_x86_64 manylinux1_x86_64 any; do
  platforms+=(--platform "$p")
done
# connection_pool exists only as a source archive: build its wheel first.
python3 -m pip wheel -q --no-deps -w "$dest" connection_pool
python3 -m pip download -q --only-binary=:all: --python-version 3.12 --implementation cp \
  "${platforms[@]}" --find-links "$dest" -d "$dest" \
  snakemake==9.27.1 diffusers==0.42.1 zeus==0.16.0 jsonschema pyyaml
# Packages the device image already holds (KINDS.md): drop our copies so that one
# version of each is installed there.
while read -r name; do
  norm=$(echo "$name" | tr 'A-Z-' 'a-z_')
  for f in "$dest"/*.whl; do
    base=$(basename "$f" | cut -d- -f1 | tr 'A-Z-' 'a-z_')
    [ "$base" = "$norm" ] && rm -f "$f"
  done
done < "$here/device_packages.txt"
du -sh "$dest"
ls "$dest" | wc -l
