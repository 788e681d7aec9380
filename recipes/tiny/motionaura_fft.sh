#!/usr/bin/env bash
# The FFT ablation of motionaura-tiny: MotionAura's spectral transformer with the paper's FFT
# attention (Eq. 2-5) over the ids of mbq-vae-tiny-v1, 16 frames of 64x64 -> 4x16x16 tokens, then
# its prompt alignment. Not bundled: motionaura-tiny (recipes/tiny/motionaura.sh, --no-fft) aligns
# better at this size (its model card has both). About 4 hours on one core.
#   DATA=data RUNS=runs/tiny bash recipes/tiny/motionaura_fft.sh
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs/tiny}
DEST=${DEST:-$RUNS/bundled}
HERE=$(dirname "$0")
COMMAND="bash recipes/tiny/motionaura_fft.sh"

# First an 8-frame generator (2x16x16 tokens): 1,600 updates, then resumed to 2,800 (~70 min).
FFT8=(--config "$HERE/configs/spectral-fft-8.yaml" --data "$DATA/shapes/manifest.jsonl" -o "$RUNS/spectral-fft-8")
vidtool --quiet train-denoiser "${FFT8[@]}" --steps 1600
vidtool --quiet train-denoiser "${FFT8[@]}" --resume

# Then 16 frames, warm-started from it (RoPE and the FFT hold no length-sized weights): 5,100
# updates at a constant rate, ~3 hours (0.5 updates/s).
vidtool --quiet train-denoiser --config "$HERE/configs/spectral-fft.yaml" --data "$DATA/shapes/manifest.jsonl" \
  --init "$RUNS/spectral-fft-8" -o "$RUNS/spectral-fft"
python "$HERE/bundle.py" "$RUNS/spectral-fft" motionaura-tiny-fft --dest "$DEST" --command "$COMMAND"

vidtool generate --prompts "$HERE/alignment-prompts.txt" --family motionaura --model "$DEST/motionaura-tiny-fft" \
  | vidtool decode -o "$RUNS/motionaura-fft-alignment.safetensors"
vidtool evaluate "$RUNS/motionaura-fft-alignment.safetensors" --metric shapes-probe -o "$RUNS/motionaura-fft-probe.json"
