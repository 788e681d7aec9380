#!/usr/bin/env bash
# Reproduces the bundled motionaura-tiny (MotionAura's spectral transformer over the ids of the
# bundled mbq-vae-tiny tokenizer: 16 frames of 64×64 → 4×16×16 tokens) and motionaura-inpaint-tiny
# (its sketch-inpainting LoRA), then measures prompt alignment on the 24-prompt set and inpainting
# on held-out clips. Needs the shapes set of recipes/tiny/data.sh. About 3 hours on one core.
# The generator is trained with the paper's "w/o fft" switch (--no-fft): at this size it learns the
# caption's direction in under half the updates of the FFT model (recipes/tiny/motionaura_fft.sh).
#   DATA=data RUNS=runs/tiny bash recipes/tiny/motionaura.sh
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs/tiny}
DEST=${DEST:-vidtool/defaults}
HERE=$(dirname "$0")
COMMAND="bash recipes/tiny/motionaura.sh"

# 4,000 updates of batch 8 at a constant rate from scratch, ~2 h 15 min on one core (0.5 updates/s);
# the bundled run was stopped and resumed several times with these flags (resume is exact).
# The tokenizer is mbq-vae-tiny-v1 (2^10 codes). The token set it writes also holds the inpainting
# inputs (the shapes clips carry object masks) the adapter trains on.
vidtool --quiet train-denoiser --config "$HERE/configs/spectral.yaml" --data "$DATA/shapes/manifest.jsonl" -o "$RUNS/spectral"
python "$HERE/bundle.py" "$RUNS/spectral" motionaura-tiny --dest "$DEST" --command "$COMMAND"

# Prompt alignment of the bundled generator, read by the shapes probe (seeds 0, 1, 2).
for seed in 0 1 2; do
  vidtool generate --prompts "$HERE/alignment-prompts.txt" --family motionaura --model "$DEST/motionaura-tiny" --seed $seed \
    | vidtool decode -o "$RUNS/motionaura-alignment-$seed.safetensors"
  vidtool evaluate "$RUNS/motionaura-alignment-$seed.safetensors" --metric shapes-probe -o "$RUNS/motionaura-probe-$seed.json"
done

# The inpainting adapter on the frozen bundled generator (App. D.4: Adam, cosine decay; a higher
# rate than its 2e-4 for this short run): 400 updates, then resumed to 1,200, ~50 min on one core.
ADAPT=(--config "$HERE/configs/inpaint.yaml" --base "$DEST/motionaura-tiny"
       --token-set "$RUNS/spectral/token-set.safetensors" -o "$RUNS/inpaint")
vidtool --quiet train-denoiser "${ADAPT[@]}" --steps 400
vidtool --quiet train-denoiser "${ADAPT[@]}" --resume
python "$HERE/bundle.py" "$RUNS/inpaint" motionaura-inpaint-tiny --dest "$DEST" --command "$COMMAND"
python benchmarks/motionaura_inpaint.py --model "$DEST/motionaura-inpaint-tiny" --n 48 -o "$RUNS/inpaint-quality.json"
python "$HERE/bundle.py" "$RUNS/inpaint" motionaura-inpaint-tiny --dest "$DEST" --command "$COMMAND" \
  --quality "$RUNS/inpaint-quality.json"
