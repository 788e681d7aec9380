#!/usr/bin/env bash
# FusionFrames text-to-video: prompts → keyframes (2 fps) → interpolation (4T−3 frames) → mp4s.
#
#   recipes/t2v_fusionframes.sh PROMPTS.txt OUT/
#
# PROMPTS.txt holds one prompt per line. Steps and the files they keep in OUT/:
#   embed-text   prompts.emb.safetensors   text embeddings, computed once (the encoder is not held after)
#   generate     keyframes.safetensors     keyframe latents
#   interpolate  latents.safetensors       full-rate latents
#   decode       video-0.mp4, video-1.mp4, … (one per prompt; a single prompt gives video.mp4)
# A step whose file exists is skipped: after a failure, rerun the same command (see recipes/lib.sh).
# Settings by variable (defaults: the bundled tiny models, vidtool's own defaults):
#   KEYFRAMES_MODEL INTERP_MODEL TEXT_ENCODER SEED STEPS CFG FRAMES INTERP_STEPS DEVICE FORCE
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
step generate "$OUT/keyframes.safetensors" \
  "${V[@]}" generate --prompts "$PROMPTS" --embeddings "$OUT/prompts.emb.safetensors" --seed "${SEED:-0}" \
  ${KEYFRAMES_MODEL:+--model "$KEYFRAMES_MODEL"} ${STEPS:+--steps "$STEPS"} ${CFG:+--cfg "$CFG"} \
  ${FRAMES:+--frames "$FRAMES"} -o "$OUT/keyframes.safetensors"
step interpolate "$OUT/latents.safetensors" \
  "${V[@]}" interpolate "$OUT/keyframes.safetensors" ${INTERP_MODEL:+--model "$INTERP_MODEL"} \
  ${INTERP_STEPS:+--steps "$INTERP_STEPS"} --seed "${SEED:-0}" -o "$OUT/latents.safetensors"
# decode writes one mp4 per prompt, so an empty marker file records that the step finished
step decode "$OUT/.decoded" \
  bash -c '"$@" && touch "$0"' "$OUT/.decoded" "${V[@]}" decode "$OUT/latents.safetensors" -o "$OUT/video.mp4"
ls "$OUT"/video*.mp4
