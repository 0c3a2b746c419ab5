#!/usr/bin/env bash
# Install (if needed), then the main job: train the polyp bundle on its built-in synthetic data and evaluate it
# on the held-out test split, for P4UNet (the bundle default) and for the plain U-Net of equal parameters;
# prints test Dice/IoU and the equivariance figures (Dice of rotate(f(x)) vs f(rotate(x)) at 0..90 degrees,
# max relative error at the 90-degree rotations). Extra arguments go to every bundle run (e.g. --epochs 20).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
B=bundles/polyp_segmentation
SETTINGS=(--epochs 10 --image_size 64 --synthetic_samples 96 --network_channels "[8,16,32,64]" --progress False)
bundle() {
  .venv/bin/python -W ignore -m monai.bundle run --meta_file "$B/configs/metadata.json" \
    --logging_file "$B/configs/logging.conf" "$@"
}
start=$(date +%s)
for net in p4 plain; do
  root=$B/runs/$net
  echo "=== $net: train, then evaluate (outputs in $root)"
  bundle --config_file "$B/configs/train.json" --bundle_root "$root" --network_name "$net" "${SETTINGS[@]}" "$@" \
    | grep -E "Epoch\[[0-9]+\] Metrics -- .*val_mean_dice" | sed -E 's/equivariance_dice_[0-9]+: [0-9.]+ //g'
  bundle --config_file "['$B/configs/train.json','$B/configs/evaluate.json']" --bundle_root "$root" \
    --network_name "$net" "${SETTINGS[@]}" "$@" | grep -E "^(test Dice|equivariance)"
done
figure=$B/runs/equivariance_p4_vs_plain.png
.venv/bin/python -c "import sys; from monai_equivariant.metrics import plot_per_angle_csvs as plot
plot({'P4UNet': sys.argv[1], 'U-Net (plain, equal parameters)': sys.argv[2]}, sys.argv[3],
     title='polyp bundle, synthetic test split: rotate(f(x)) vs f(rotate(x))')" \
  "$B/runs/p4/eval/equivariance_per_angle.csv" "$B/runs/plain/eval/equivariance_per_angle.csv" "$figure"
echo "equivariance curves of both networks: $figure"
echo "main: train + evaluate of both networks took $(( $(date +%s) - start )) s"
