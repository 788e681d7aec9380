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
TRAIN=(--family spectral --data "$DATA/shapes/manifest.jsonl" --tokenizer vidtool/defaults/mbq-vae-tiny-v1 --size 64
       --batch-size 8 --ema 0.998)
vidtool --quiet train-denoiser "${TRAIN[@]}" --frames 8 -o "$RUNS/spectral-fft-8" --lr 1e-3 --warmup 100 --checkpoint-every 200 --steps 1600
vidtool --quiet train-denoiser "${TRAIN[@]}" --frames 8 -o "$RUNS/spectral-fft-8" --lr 1e-3 --warmup 100 --checkpoint-every 200 --steps 2800 --resume

# Then 16 frames, warm-started from it (RoPE and the FFT hold no length-sized weights): 5,100
# updates at a constant rate, ~3 hours (0.5 updates/s).
vidtool --quiet train-denoiser "${TRAIN[@]}" --frames 16 --init "$RUNS/spectral-fft-8" -o "$RUNS/spectral-fft" \
  --lr 5e-4 --warmup 50 --schedule constant --checkpoint-every 100 --steps 5100
python "$HERE/bundle.py" "$RUNS/spectral-fft" motionaura-tiny-fft --dest "$DEST" --command "$COMMAND"

vidtool generate --prompts "$HERE/alignment-prompts.txt" --family motionaura --model "$DEST/motionaura-tiny-fft" \
  | vidtool decode -o "$RUNS/motionaura-fft-alignment.safetensors"
vidtool evaluate "$RUNS/motionaura-fft-alignment.safetensors" --metric shapes-probe -o "$RUNS/motionaura-fft-probe.json"
