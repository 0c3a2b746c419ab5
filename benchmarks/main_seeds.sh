#!/usr/bin/env bash
# The main job's whole-split training of P4UNet and the plain U-Net, both with rotation augmentation, over seeds
# 1..N (seed 0 is the main job's own run): is the P4UNet lead a property of one seed? Validation Dice of each run
# (the bundle's validation split at 0°, after 15 epochs) into benchmarks/results/main_seeds.md.
# Usage: bash benchmarks/main_seeds.sh [N=6]   (about 1 min per run idle at 1 thread; two runs at a time)
set -euo pipefail
cd "$(dirname "$0")/.."
B=bundles/polyp_segmentation
OUT=$B/runs/seeds
N=${1:-6}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
run() {  # run <network_name> <seed>: prints "<net> <seed> <val dice>"
  local root=$OUT/$1_s$2
  mkdir -p "$root"
  .venv/bin/python -W ignore -m monai.bundle run --meta_file $B/configs/metadata.json \
    --logging_file $B/configs/logging.conf --config_file $B/configs/train.json --bundle_root "$root" --epochs 15 \
    --val_interval 15 --progress False --image_size 64 --synthetic_samples 96 --network_channels "[4,8,16,32]" \
    --network_name "$1" --augmentation rotate --seed "$2" >"$root/train.log" 2>&1
  echo "$1 $2 $(grep -oE 'val_mean_dice: [0-9.]+' "$root/train.log" | tail -n 1 | cut -d' ' -f2)"
}
for s in $(seq 1 "$N"); do run p4 "$s" >"$OUT.p4_$s" & run plain "$s" >"$OUT.plain_$s"; wait; done
cat "$OUT".p4_* "$OUT".plain_* | .venv/bin/python -c '
import statistics, sys
rows = {}
for line in sys.stdin:
    net, seed, dice = line.split()
    rows.setdefault(net, {})[int(seed)] = float(dice)
seeds = sorted(rows["p4"])
print("| model | " + " | ".join(f"seed {s}" for s in seeds) + " | mean ± sd |")
print("|---|" + "---|" * (len(seeds) + 1))
for net, label in (("p4", "P4UNet + rotation aug."), ("plain", "U-Net + rotation aug.")):
    v = [rows[net][s] for s in seeds]
    print(f"| {label} | " + " | ".join(f"{x:.3f}" for x in v) + f" | {statistics.mean(v):.3f} ± {statistics.stdev(v):.3f} |")
' | tee benchmarks/results/main_seeds.md
