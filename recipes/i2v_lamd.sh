#!/usr/bin/env bash
# LaMD image-to-video: a first frame (+ optional text) → a latent motion sampled by the DMG
# diffusion model → the motion-content decoder renders the clip → mp4.
#
#   recipes/i2v_lamd.sh ITEMS.tsv OUT/
#
# ITEMS.tsv: one item per line, `IMAGE<TAB>TEXT` (TEXT may be empty; relative image paths are read
# from the folder of ITEMS.tsv). For item i, the files kept in OUT/:
#   generate  motion-i.safetensors    LaMD motion latent + the content image
#   decode    video-i.mp4
# A step whose file exists is skipped: after a failure, rerun the same command (see recipes/lib.sh).
# Settings by variable: DMG_MODEL SEED STEPS CFG FRAMES DEVICE FORCE
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
. "$HERE/lib.sh"
[ $# -eq 2 ] || { echo "usage: $0 ITEMS.tsv OUT_DIR" >&2; exit 2; }
ITEMS=$1 OUT=$2
need "$ITEMS" "item list"
mkdir -p "$OUT"
V=("$VIDTOOL" --device "${DEVICE:-auto}")
BASE=$(dirname "$ITEMS")
i=0
# The list is read on descriptor 3, so the stages' stdin stays free.
while IFS=$'\t' read -r -u 3 image text || [ -n "$image" ]; do
  [ -n "$image" ] || continue
  case $image in /*) ;; *) image="$BASE/$image" ;; esac
  need "$image" "image of item $i"
  step "generate" "$OUT/motion-$i.safetensors" \
    "${V[@]}" generate --family lamd --image "$image" ${text:+--text "$text"} --seed "$(( ${SEED:-0} + i ))" \
    ${DMG_MODEL:+--model "$DMG_MODEL"} ${STEPS:+--steps "$STEPS"} ${CFG:+--cfg "$CFG"} ${FRAMES:+--frames "$FRAMES"} \
    -o "$OUT/motion-$i.safetensors"
  step "decode" "$OUT/video-$i.mp4" \
    "${V[@]}" decode "$OUT/motion-$i.safetensors" -o "$OUT/video-$i.mp4"
  i=$((i + 1))
done 3< "$ITEMS"
ls "$OUT"/video-*.mp4
