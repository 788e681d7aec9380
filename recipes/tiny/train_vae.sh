#!/usr/bin/env bash
# Reproduces vidtool/defaults/movq-tiny, the bundled autoencoder and tokenizer (FusionFrames' MoVQ,
# image stage: 64x64 frames -> 8x8x4 latents, 1024 VQ codes), then measures it on 200 held-out
# clips of each data set (seed 1); then the same for mbq-vae-tiny (MotionAura's tokenizer). Measured on
# a 2-core CPU: about 15 + 55 + 25 + 75 minutes of training (movq-tiny, its video-stage decoder
# movq-tiny-video, mbq-vae-tiny, and mbq-vae-tiny's decoder alone).
#   DATA=data RUNS=runs/tiny bash recipes/tiny/train_vae.sh
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs/tiny}
HERE=$(dirname "$0")
DATA=$DATA bash "$HERE/data.sh"
vidtool --quiet train-vae --family movq-temporal --data "$DATA/shapes/manifest.jsonl" --data "$DATA/photos/manifest.jsonl" \
  -o "$RUNS/movq-image" --steps 2000 --batch-size 4 --lr 1e-3 --warmup 100 --ema 0.995 --seed 0
python "$HERE/bundle.py" "$RUNS/movq-image" movq-tiny --dest "$RUNS/bundled" --command "$(cat "$0")"
python benchmarks/reconstruction.py --model "$RUNS/bundled/movq-tiny" --n 200 --json "$RUNS/movq-quality.json"

# vidtool/defaults/movq-tiny-video: FusionFrames' video stage (§4.3) on top of it. The encoder and
# codebook stay frozen (the same latents; config.json "codes_of" names movq-tiny), the whole decoder
# trains with zero-initialised 3x1x1 temporal convs (Table 3 "3x1x1 Conv") on 8-frame clips, L1.
# 2,400 updates, about 55 minutes on one core.
vidtool --quiet train-vae --family movq-temporal --init "$RUNS/bundled/movq-tiny" --set stage=video --set temporal=conv1x1x3 \
  --data "$DATA/shapes/manifest.jsonl" --data "$DATA/photos/manifest.jsonl" \
  -o "$RUNS/movq-video" --steps 2400 --batch-size 4 --frames 8 --lr 5e-4 --warmup 50 --ema 0.995 --seed 0
python "$HERE/bundle.py" "$RUNS/movq-video" movq-tiny-video --dest "$RUNS/bundled" --command "$(cat "$0")"
python benchmarks/reconstruction.py --model "$RUNS/bundled/movq-tiny-video" --n 200 --json "$RUNS/movq-video-quality.json"

# vidtool/defaults/mbq-vae-tiny: MotionAura's 3D-MBQ-VAE (x4 temporal, x4 spatial, LFQ 2^10), with
# lighter masking than the paper's 20%->60% patches / 10%->50% frames so the tiny model's capacity
# goes to reconstruction. About 25 minutes on 2 cores.
vidtool --quiet train-vae --family mbq-vae --data "$DATA/shapes/manifest.jsonl" --data "$DATA/photos/manifest.jsonl" \
  -o "$RUNS/mbq-vae-tiny" --steps 1500 --batch-size 4 --lr 1e-3 --warmup 100 --ema 0.995 --seed 0 \
  --set 'patch_mask_ratio=[0.1,0.3]' --set 'frame_mask_ratio=[0.05,0.2]'
python "$HERE/bundle.py" "$RUNS/mbq-vae-tiny" mbq-vae-tiny --dest "$RUNS/first" --command "$(cat "$0")"

# Then its decoder alone, on unmasked clips (masking exists to train the encoder): the encoder and the
# LFQ stay frozen, so every token id keeps its meaning, and the token sets and generators made with
# the first model stay valid (config.json "codes_of" lets decode find this one from the first one's
# tag). 3,000 updates, about 75 minutes on one core.
vidtool --quiet train-vae --family mbq-vae --init "$RUNS/first/mbq-vae-tiny" --set trainable=decoder \
  --data "$DATA/shapes/manifest.jsonl" --data "$DATA/photos/manifest.jsonl" \
  -o "$RUNS/mbq-vae-tiny-decoder" --steps 3000 --batch-size 4 --lr 5e-4 --warmup 50 --ema 0.995 --seed 0
python "$HERE/bundle.py" "$RUNS/mbq-vae-tiny-decoder" mbq-vae-tiny --dest "$RUNS/bundled" --command "$(cat "$0")"
python benchmarks/reconstruction.py --model "$RUNS/bundled/mbq-vae-tiny" --n 200 --json "$RUNS/mbq-quality.json"
