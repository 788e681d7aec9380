#!/usr/bin/env bash
# Reproduces vidtool/defaults/mcd-vae-tiny and dmg-tiny (LaMD, image-to-video with text) on the
# captioned shapes clips: 8 frames at 4 fps (the whole 2-second clip) at 64x64, z_m 8x8x4. Then
# measures image-to-video on 100 held-out first frames (seed 1, never seen in training).
# About 33 + 15 minutes of training on one core.
#   DATA=data RUNS=runs/tiny bash recipes/tiny/lamd.sh
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs/tiny}
# VAE_STEPS and DMG_STEPS, when set, override the configs' 1800 and 2000 updates.
HERE=$(dirname "$0")
DATA=$DATA bash "$HERE/data.sh"
vidtool make-dataset shapes -n 200 --seed 1 -o "$DATA/shapes-seed1"

vidtool --quiet train-vae --config "$HERE/configs/mcd-vae.yaml" --data "$DATA/shapes/manifest.jsonl" -o "$RUNS/mcd-vae" \
  ${VAE_STEPS:+--steps "$VAE_STEPS"}
python "$HERE/bundle.py" "$RUNS/mcd-vae" mcd-vae-tiny --dest "$RUNS/bundled" --command "bash recipes/tiny/lamd.sh"

# The DMG learns the motion space of the bundled (float16) autoencoder, whose tag its config records.
vidtool --quiet train-denoiser --config "$HERE/configs/dmg.yaml" --vae "$RUNS/bundled/mcd-vae-tiny" \
  --data "$DATA/shapes/manifest.jsonl" -o "$RUNS/dmg" ${DMG_STEPS:+--steps "$DMG_STEPS"}
python "$HERE/bundle.py" "$RUNS/dmg" dmg-tiny --dest "$RUNS/bundled" --command "bash recipes/tiny/lamd.sh"

export VIDTOOL_MODELS="$RUNS/bundled"
python benchmarks/lamd_i2v.py --model "$RUNS/bundled/dmg-tiny" --data "$DATA/shapes-seed1/manifest.jsonl" --n 100 \
  --json "$RUNS/lamd-quality.json"
# Bundling again with the measured numbers gives the same weights (and tag), now with its README.
python "$HERE/bundle.py" "$RUNS/dmg" dmg-tiny --dest "$RUNS/bundled" --command "bash recipes/tiny/lamd.sh" \
  --quality "$RUNS/lamd-quality.json"
