#!/usr/bin/env bash
# HARIVO text-to-video: prompts → full-rate latents (frozen T2I U-Net + temporal layers, mitigating-
# gradient sampling) → mp4s.
#
#   recipes/t2v_harivo.sh PROMPTS.txt OUT/
#
# Steps and the files they keep in OUT/:
#   embed-text   prompts.emb.safetensors
#   generate     latents.safetensors
#   decode       video-0.mp4, … (a single prompt gives video.mp4)
# A step whose file exists is skipped: after a failure, rerun the same command (see recipes/lib.sh).
# Settings by variable: HARIVO_MODEL TEXT_ENCODER SEED STEPS CFG ALPHA FRAMES DEVICE FORCE
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
[ $# -eq 2 ] || { echo "usage: $0 PROMPTS.txt OUT_DIR" >&2; exit 2; }
PROMPTS=$1 OUT=$2
need "$PROMPTS" "prompt file"
mkdir -p "$OUT"
V=("$VIDTOOL" --device "${DEVICE:-auto}")
step embed-text "$OUT/prompts.emb.safetensors" \
  "${V[@]}" embed-text "$PROMPTS" ${TEXT_ENCODER:+--text-encoder "$TEXT_ENCODER"} -o "$OUT/prompts.emb.safetensors"
step generate "$OUT/latents.safetensors" \
  "${V[@]}" generate --family harivo --prompts "$PROMPTS" --embeddings "$OUT/prompts.emb.safetensors" \
  --seed "${SEED:-0}" ${HARIVO_MODEL:+--model "$HARIVO_MODEL"} ${STEPS:+--steps "$STEPS"} ${CFG:+--cfg "$CFG"} \
  ${ALPHA:+--alpha "$ALPHA"} ${FRAMES:+--frames "$FRAMES"} -o "$OUT/latents.safetensors"
# decode writes one mp4 per prompt, so an empty marker file records that the step finished
step decode "$OUT/.decoded" \
  bash -c '"$@" && touch "$0"' "$OUT/.decoded" "${V[@]}" decode "$OUT/latents.safetensors" -o "$OUT/video.mp4"
ls "$OUT"/video*.mp4
