#!/usr/bin/env bash
# The offline training sets every tiny recipe uses (seed 0; evaluation uses seed 1).
# About 2 minutes on a 2-core machine. Rerunning skips clips that exist.
set -euo pipefail
DATA=${DATA:-data}
vidtool make-dataset shapes -n 2000 --seed 0 -o "$DATA/shapes"
vidtool make-dataset photos -n 600 --seed 0 -o "$DATA/photos"
# Footage-like layered scenes for the default encode autoencoder (cm-vae-tiny), and the first 1,000
# shapes clips (the same clips as the first 1,000 of $DATA/shapes) it trains beside them.
vidtool make-dataset scenes -n 1500 --seed 0 -o "$DATA/scenes"
vidtool make-dataset shapes -n 1000 --seed 0 -o "$DATA/shapes-1k"
