#!/usr/bin/env bash
# MotionAura text-to-video: prompts → discrete video tokens by masked discrete diffusion (spectral
# transformer) → the 3D-MBQ-VAE decoder → mp4s.
#
#   recipes/t2v_motionaura.sh PROMPTS.txt OUT/
#
# Steps and the files they keep in OUT/:
#   embed-text   prompts.emb.safetensors
#   generate     tokens.safetensors        token ids [B, T, h, w]
#   decode       video-0.mp4, … (a single prompt gives video.mp4)
# A step whose file exists is skipped: after a failure, rerun the same command (see recipes/lib.sh).
# Settings by variable: MOTIONAURA_MODEL TEXT_ENCODER SEED STEPS CFG FRAMES DEVICE FORCE
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
step generate "$OUT/tokens.safetensors" \
  "${V[@]}" generate --family motionaura --prompts "$PROMPTS" --embeddings "$OUT/prompts.emb.safetensors" \
  --seed "${SEED:-0}" ${MOTIONAURA_MODEL:+--model "$MOTIONAURA_MODEL"} ${STEPS:+--steps "$STEPS"} \
  ${CFG:+--cfg "$CFG"} ${FRAMES:+--frames "$FRAMES"} -o "$OUT/tokens.safetensors"
# decode writes one mp4 per prompt, so an empty marker file records that the step finished
step decode "$OUT/.decoded" \
  bash -c '"$@" && touch "$0"' "$OUT/.decoded" "${V[@]}" decode "$OUT/tokens.safetensors" -o "$OUT/video.mp4"
ls "$OUT"/video*.mp4
