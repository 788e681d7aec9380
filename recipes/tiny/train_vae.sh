#!/usr/bin/env bash
# Reproduces vidtool/defaults/movq-tiny, the bundled autoencoder and tokenizer (FusionFrames' MoVQ,
# image stage: 64x64 frames -> 8x8x4 latents, 1024 VQ codes), then measures it on 200 held-out
# clips of each data set (seed 1). Measured on a 2-core CPU: about 20 minutes of training.
#   DATA=data RUNS=runs/tiny bash recipes/tiny/train_vae.sh
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs/tiny}
HERE=$(dirname "$0")
DATA=$DATA bash "$HERE/data.sh"
vidtool --quiet train-vae --family movq-temporal --data "$DATA/shapes/manifest.jsonl" --data "$DATA/photos/manifest.jsonl" \
  -o "$RUNS/movq-image" --steps 2000 --batch-size 4 --lr 1e-3 --warmup 100 --ema 0.995 --seed 0
python "$HERE/bundle.py" "$RUNS/movq-image" movq-tiny --dest "$RUNS/bundled" --command "$(cat "$0")"
python benchmarks/reconstruction.py --model "$RUNS/bundled/movq-tiny" --n 200 --json "$RUNS/movq-quality.json"
