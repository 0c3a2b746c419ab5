#!/usr/bin/env bash
# Install (if needed), then the main job: train the polyp bundle (P4UNet) on its built-in synthetic data,
# evaluate it on the held-out test split, and print Dice/IoU and the equivariance figures.
# Extra arguments are passed to both bundle runs, e.g. `bash scripts/main.sh --network_name plain`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
B=bundles/polyp_segmentation
SETTINGS=(--bundle_root "$B" --epochs 6 --image_size 64 --synthetic_samples 96 --network_channels "[8,16,32,64]"
          --progress False)
bundle() {
  .venv/bin/python -W ignore -m monai.bundle run --meta_file "$B/configs/metadata.json" \
    --logging_file "$B/configs/logging.conf" "$@"
}
start=$(date +%s)
bundle --config_file "$B/configs/train.json" "${SETTINGS[@]}" "$@"
bundle --config_file "['$B/configs/train.json','$B/configs/evaluate.json']" "${SETTINGS[@]}" "$@"
echo "main: train + evaluate took $(( $(date +%s) - start )) s; model $B/models/model.pt, metrics $B/eval/metrics.csv"
