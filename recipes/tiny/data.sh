#!/usr/bin/env bash
# The offline training sets every tiny recipe uses (seed 0; evaluation uses seed 1).
# About 25 s on a 2-core machine. Rerunning skips clips that exist.
set -euo pipefail
DATA=${DATA:-data}
vidtool make-dataset shapes -n 2000 --seed 0 -o "$DATA/shapes"
vidtool make-dataset photos -n 600 --seed 0 -o "$DATA/photos"
