#!/usr/bin/env bash
# Reproduces the bundled FusionFrames pipeline: t2i-tiny (the frozen text-to-image U-Net),
# keyframes-tiny (its temporal blocks, Conv1dAttn1dBlocks) and interp-tiny (the interpolation
# U-Net), in the latent space of VAE (movq-tiny for the bundled models; a retrained VAE is another
# latent space, so name it here), then scores prompt alignment on the 24-prompt set.
#   DATA=data RUNS=runs/tiny VAE=vidtool/defaults/movq-tiny bash recipes/tiny/fusionframes.sh
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs/tiny}
VAE=${VAE:-vidtool/defaults/movq-tiny}
HERE=$(dirname "$0")
DATA=$DATA bash "$HERE/data.sh"
SET="$RUNS/latent-set.safetensors"
CONFIGS="$HERE/configs"  # each run's options: family, steps, batch size, rate, warmup, EMA
# The T2I base: 1,500 updates (t2i-short, also HARIVO's base), then 4,000 more with EMA weights.
vidtool --quiet train-denoiser --config "$CONFIGS/t2i-short.yaml" \
  --data "$DATA/shapes/manifest.jsonl" --data "$DATA/photos/manifest.jsonl" --vae "$VAE" --latent-set "$SET" -o "$RUNS/t2i-short"
vidtool --quiet train-denoiser --config "$CONFIGS/t2i.yaml" --init "$RUNS/t2i-short" --latent-set "$SET" -o "$RUNS/t2i"
vidtool --quiet train-denoiser --config "$CONFIGS/keyframes.yaml" --base "$RUNS/t2i" --latent-set "$SET" -o "$RUNS/keyframes"
# The interpolation U-Net is a whole copy of the T2I U-Net, trained all through (no text): 1,600
# updates from the 1,500-update base (800, then resumed to 1,600; resume recomputes the cosine
# schedule for the new length), then 3,000 more from the final base.
INTERP_SHORT=(--config "$CONFIGS/interp-short.yaml" --base "$RUNS/t2i-short" --latent-set "$SET" -o "$RUNS/interp-short")
vidtool --quiet train-denoiser "${INTERP_SHORT[@]}" --steps 800
vidtool --quiet train-denoiser "${INTERP_SHORT[@]}" --resume
vidtool --quiet train-denoiser --config "$CONFIGS/interp.yaml" --base "$RUNS/t2i" --init "$RUNS/interp-short" \
  --latent-set "$SET" -o "$RUNS/interp"
for name in t2i keyframes interp; do
  python "$HERE/bundle.py" "$RUNS/$name" "$name-tiny" --dest "$RUNS/bundled" --command "bash recipes/tiny/fusionframes.sh"
done
export VIDTOOL_MODELS="$RUNS/bundled"
vidtool generate --prompts "$HERE/alignment-prompts.txt" --model "$RUNS/bundled/keyframes-tiny" \
  | vidtool interpolate --model "$RUNS/bundled/interp-tiny" | vidtool decode -o "$RUNS/fusionframes-alignment.safetensors"
vidtool evaluate "$RUNS/fusionframes-alignment.safetensors" --metric shapes-probe -o "$RUNS/fusionframes-probe.json"
