#!/usr/bin/env bash
# Reproduces the bundled motionaura-tiny (MotionAura's spectral transformer over the ids of the
# bundled mbq-vae-tiny tokenizer: 8 frames of 64×64 → 2×16×16 tokens) and motionaura-inpaint-tiny
# (its sketch-inpainting LoRA), then measures prompt alignment on the 24-prompt set and inpainting
# on held-out clips. Needs the shapes set of recipes/tiny/data.sh.
#   DATA=data RUNS=runs/tiny bash recipes/tiny/motionaura.sh
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs/tiny}
DEST=${DEST:-vidtool/defaults}
HERE=$(dirname "$0")
COMMAND="bash recipes/tiny/motionaura.sh"

# The generator: ~45 + 25 min on one core (1,600 updates, then resumed to 2,800; the bundled model
# was made this way). The shapes clips carry object masks, so this token set also holds the
# inpainting inputs the adapter trains on.
# The tokenizer is named: mbq-vae-tiny-v1 gives the same ids as the default mbq-vae-tiny, and its tag
# makes decode use the decoder the bundled generator was measured with (see its README).
TRAIN=(--family spectral --data "$DATA/shapes/manifest.jsonl" --tokenizer vidtool/defaults/mbq-vae-tiny-v1 --frames 8 --size 64 -o "$RUNS/spectral"
       --batch-size 8 --lr 1e-3 --warmup 100 --ema 0.998 --checkpoint-every 200)
vidtool --quiet train-denoiser "${TRAIN[@]}" --steps 1600
vidtool --quiet train-denoiser "${TRAIN[@]}" --steps 2800 --resume
python "$HERE/bundle.py" "$RUNS/spectral" motionaura-tiny --dest "$DEST" --command "$COMMAND"

# Prompt alignment of the bundled generator, read by the shapes probe.
vidtool generate --prompts "$HERE/alignment-prompts.txt" --family motionaura --model "$DEST/motionaura-tiny" \
  | vidtool decode -o "$RUNS/motionaura-alignment.safetensors"
vidtool evaluate "$RUNS/motionaura-alignment.safetensors" --metric shapes-probe -o "$RUNS/motionaura-probe.json"

# The inpainting adapter on the frozen bundled generator (App. D.4: Adam, cosine decay; a higher
# rate than its 2e-4 for this short run): 400 updates, then resumed to 1,200, ~20 min on one core.
ADAPT=(--family spectral-inpaint --base "$DEST/motionaura-tiny" --token-set "$RUNS/spectral/token-set.safetensors"
       -o "$RUNS/inpaint" --set rank=16 --batch-size 4 --lr 1e-3 --warmup 20 --checkpoint-every 100)
vidtool --quiet train-denoiser "${ADAPT[@]}" --steps 400
vidtool --quiet train-denoiser "${ADAPT[@]}" --steps 1200 --resume
python "$HERE/bundle.py" "$RUNS/inpaint" motionaura-inpaint-tiny --dest "$DEST" --command "$COMMAND"
python benchmarks/motionaura_inpaint.py --model "$DEST/motionaura-inpaint-tiny" --n 48 -o "$RUNS/inpaint-quality.json"
python "$HERE/bundle.py" "$RUNS/inpaint" motionaura-inpaint-tiny --dest "$DEST" --command "$COMMAND" \
  --quality "$RUNS/inpaint-quality.json"
