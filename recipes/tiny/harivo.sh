#!/usr/bin/env bash
# Reproduces the bundled harivo-tiny: HARIVO's temporal layers, mapping network and frame-wise
# tokens on a frozen T2I base, then scores prompt alignment on the 24-prompt set with the shapes
# probe. The base is the 1,500-update T2I run of recipes/tiny/fusionframes.sh (RUNS/t2i-short: run
# that first), which aligned better here than the longer-trained t2i-tiny (see the model card).
#   RUNS=runs/tiny bash recipes/tiny/harivo.sh
set -euo pipefail
RUNS=${RUNS:-runs/tiny}
HERE=$(dirname "$0")
vidtool --quiet train-denoiser --config "$HERE/configs/harivo.yaml" --base "$RUNS/t2i-short" \
  --latent-set "$RUNS/latent-set.safetensors" -o "$RUNS/harivo"
python "$HERE/bundle.py" "$RUNS/harivo" harivo-tiny --dest "$RUNS/bundled" --command "bash recipes/tiny/harivo.sh"
export VIDTOOL_MODELS="$RUNS/bundled"
vidtool generate --prompts "$HERE/alignment-prompts.txt" --family harivo --model "$RUNS/bundled/harivo-tiny" \
  | vidtool decode -o "$RUNS/harivo-alignment.safetensors"
vidtool evaluate "$RUNS/harivo-alignment.safetensors" --metric shapes-probe -o "$RUNS/harivo-probe.json"
