#!/usr/bin/env bash
# Install (if needed), then the main job: does the equivariant U-Net beat what a MONAI user does instead?
# Trains the polyp bundle (bundles/polyp_segmentation) on its built-in synthetic endoscopy frames, at equal
# parameters, four ways -- P4UNet; P4UNet + rotation augmentation; the plain U-Net; plain + rotation
# augmentation -- and evaluates a fifth: plain + rotation augmentation + p4 ensemble at inference; a sixth row is
# plain + rotation augmentation at equal FLOPs (4x the parameters, as many multiply-adds as P4UNet). All training
# goes through `python -m monai.bundle run` with overrides. Once with the whole training split, once with 10
# training images. Prints two tables (test Dice at 0/30/45/90 degrees of input rotation, equivariance Dice at
# 45 degrees, max error at the 90-degree rotations, train seconds per epoch, inference ms per image) and draws
# one figure of measured 0-360 degree curves. Outputs in bundles/polyp_segmentation/runs/comparison/.
# Extra arguments go to every bundle training run (e.g. --epochs 20).
set -euo pipefail
cd "$(dirname "$0")/.."
# Install only when there is no working environment (a fresh machine): an existing .venv is used as it is, and
# this checkout's package is imported through PYTHONPATH (so a shared venv is never re-pointed).
# MONAI_EQ_SKIP_SETUP=1 skips the check altogether.
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if [ -z "${MONAI_EQ_SKIP_SETUP:-}" ] \
  && ! .venv/bin/python -c "import monai_equivariant, escnn, monai, ignite, fire" >/dev/null 2>&1; then
  bash scripts/setup_env.sh
fi
B=bundles/polyp_segmentation
OUT=$B/runs/comparison
EPOCHS=${MAIN_EPOCHS:-15}              # whole training split (68 images, batch 8): 9 steps an epoch
SMALL=${MAIN_SMALL_TRAIN:-10}          # the small training set
SMALL_EPOCHS=${MAIN_SMALL_EPOCHS:-60}  # 10 images: 2 steps an epoch, so about as many steps as above
CHANNELS=${MAIN_CHANNELS:-[4,8,16,32]} # p4 fields per level; the plain U-Net gets twice as many (equal parameters)
# The equal-FLOPs row: the bundle's plain net of twice these p4 fields has 4x the p4 fields as channels (a p4 conv of
# C fields does |G|^2 C^2 = 16 C^2 multiply-adds per tap, a plain conv of 4C channels as many): 4x the parameters.
FLOPS_CHANNELS=$(python3 -c "import json, sys; print(json.dumps([2 * c for c in json.loads(sys.argv[1])]))" "$CHANNELS")
DATA=(--image_size 64 --synthetic_samples 96 --network_channels "$CHANNELS")
PY=(.venv/bin/python -W ignore)
# Runs go through a pool of MAIN_JOBS processes (default 2, one per core) of MAIN_THREADS torch threads each
# (default 1): small convolutions scale poorly over threads, and a 1-thread run does not lose time spinning when
# the machine is busy. Every row's seconds per epoch and ms per image are then those of one thread.
JOBS=${MAIN_JOBS:-2}
export OMP_NUM_THREADS=${MAIN_THREADS:-1} MKL_NUM_THREADS=${MAIN_THREADS:-1}
start=$(date +%s)

train() {  # train <bundle_root> <epochs> <bundle overrides...>: one bundle training run, its log in <root>/train.log
  local root=$1 epochs=$2
  shift 2
  mkdir -p "$root"
  local t0=$(date +%s)
  "${PY[@]}" -m monai.bundle run --meta_file "$B/configs/metadata.json" --logging_file "$B/configs/logging.conf" \
    --config_file "$B/configs/train.json" --bundle_root "$root" --epochs "$epochs" --val_interval "$epochs" \
    --progress False "${DATA[@]}" "$@" "${EXTRA[@]}" >"$root/train.log" 2>&1 \
    || { tail -n 30 "$root/train.log"; exit 1; }
  echo "  trained $root in $(( $(date +%s) - t0 )) s: $(grep -oE 'val_mean_dice: [0-9.]+' "$root/train.log" | tail -n 1)"
}

run_json() {  # run_json <label> <root> [<key> <json value>]...: one --run spec for the comparison table
  local label=$1 root=$2
  shift 2
  local json="{\"label\": \"$label\", \"bundle_root\": \"$root\", \"train_log\": \"$root/train.log\""
  while [ $# -gt 0 ]; do json="$json, \"$1\": $2"; shift 2; done
  echo "$json}"
}

EXTRA=("$@")
pids=()
submit() {  # submit <command...>: run it in the background once fewer than $JOBS submitted commands are running
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do sleep 1; done
  "$@" &
  pids+=($!)
}
wait_all() {  # wait for every submitted command; stop when one failed
  local pid failed=0
  for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
  pids=()
  [ "$failed" = 0 ] || { echo "main: a run failed (its log is printed above)"; exit 1; }
}

echo "=== training 10 networks ($JOBS at a time, $OMP_NUM_THREADS thread(s) each): the whole training split" \
  "($EPOCHS epochs) and $SMALL training images ($SMALL_EPOCHS epochs)"
for net in p4 plain; do  # the slower p4 runs first, so the pool ends evenly
  for size in full small; do
    dir=$OUT/$size
    if [ "$size" = full ]; then epochs=$EPOCHS; subset=(); else epochs=$SMALL_EPOCHS; subset=(--train_samples "$SMALL"); fi
    submit train "$dir/$net" "$epochs" --network_name "$net" --augmentation none "${subset[@]}"
    submit train "$dir/${net}_rotate" "$epochs" --network_name "$net" --augmentation rotate "${subset[@]}"
    if [ "$net" = plain ]; then
      submit train "$dir/plain_flops_rotate" "$epochs" --network_name plain --augmentation rotate \
        --network_channels "$FLOPS_CHANNELS" "${subset[@]}"
    fi
  done
done
wait_all

echo "=== evaluation at rotated inputs (test split)"
SHARED="{\"image_size\": 64, \"synthetic_samples\": 96, \"network_channels\": $CHANNELS}"
evaluate() {  # evaluate <size>: the six-row table of one training-set size, printed to <dir>/table.log
  local size=$1 dir=$OUT/$1 title
  if [ "$size" = full ]; then title="whole training split"; else title="$SMALL training images"; fi
  "${PY[@]}" benchmarks/polyp_comparison.py table --bundle "$B" --title "$title" --out-dir "$dir" --set "$SHARED" \
    --run "$(run_json "P4UNet" "$dir/p4" network_name '"p4"')" \
    --run "$(run_json "P4UNet + rotation aug." "$dir/p4_rotate" network_name '"p4"')" \
    --run "$(run_json "U-Net (plain)" "$dir/plain" network_name '"plain"')" \
    --run "$(run_json "U-Net + rotation aug." "$dir/plain_rotate" network_name '"plain"')" \
    --run "$(run_json "U-Net + rotation aug. + p4 ensemble" "$dir/plain_rotate" network_name '"plain"' inferer '"group_ensemble"')" \
    --run "$(run_json "U-Net + rotation aug., equal FLOPs" "$dir/plain_flops_rotate" network_name '"plain"' network_channels "$FLOPS_CHANNELS")" \
    >"$dir/table.log" 2>&1 || { cat "$dir/table.log"; exit 1; }
}
submit evaluate full
submit evaluate small
wait_all
cat "$OUT/full/table.log"; echo; cat "$OUT/small/table.log"; echo
"${PY[@]}" benchmarks/polyp_comparison.py figure "$OUT/full/curves.csv" "$OUT/small/curves.csv" --out "$OUT/comparison.png"
mkdir -p benchmarks/results
for size in full small; do
  cp "$OUT/$size/table.md" "benchmarks/results/main_comparison_$size.md"
  cp "$OUT/$size/table.csv" "benchmarks/results/main_comparison_$size.csv"
done
cp "$OUT/comparison.png" benchmarks/results/main_comparison.png
echo "main: tables and figure copied to benchmarks/results/main_comparison_{full,small}.{md,csv}, main_comparison.png"
echo "main: training and evaluation took $(( $(date +%s) - start )) s"
