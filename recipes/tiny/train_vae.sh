#!/usr/bin/env bash
# Reproduces vidtool/defaults/movq-tiny, the bundled autoencoder and tokenizer (FusionFrames' MoVQ,
# image stage: 64x64 frames -> 8x8x4 latents, 1024 VQ codes), then measures it on 200 held-out
# clips of each data set (seed 1); then the 3D-MBQ-VAE tokenizers (MotionAura's). Measured on a 2-core
# CPU: about 15 + 55 minutes (movq-tiny, its video-stage decoder movq-tiny-video), 25 + 75 minutes
# (mbq-vae-tiny-v1 and its fine-tuned decoder) and about 780 minutes (mbq-vae-tiny, fourteen runs; its
# block below gives each run's) of training.
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

# mbq-vae-tiny-v1 and the decoder that made the previous default (kept as mbq-vae-tiny-v1-decoder):
# MotionAura's 3D-MBQ-VAE (x4 temporal, x4 spatial, LFQ 2^10), with lighter masking than the
# paper's 20%->60% patches / 10%->50% frames so the tiny model's capacity goes to reconstruction.
# About 25 minutes on 2 cores. The bundled MotionAura generators work in its 2^10-code token space.
vidtool --quiet train-vae --family mbq-vae --data "$DATA/shapes/manifest.jsonl" --data "$DATA/photos/manifest.jsonl" \
  -o "$RUNS/mbq-vae-tiny" --steps 1500 --batch-size 4 --lr 1e-3 --warmup 100 --ema 0.995 --seed 0 \
  --set 'patch_mask_ratio=[0.1,0.3]' --set 'frame_mask_ratio=[0.05,0.2]'
python "$HERE/bundle.py" "$RUNS/mbq-vae-tiny" mbq-vae-tiny-v1 --dest "$RUNS/bundled" --command "$(cat "$0")"

# Then its decoder alone, on unmasked clips (masking exists to train the encoder): the encoder and the
# LFQ stay frozen, so every token id keeps its meaning (config.json "codes_of" lets decode find this
# one from the first one's tag). 3,000 updates, about 75 minutes on one core.
vidtool --quiet train-vae --family mbq-vae --init "$RUNS/bundled/mbq-vae-tiny-v1" --set trainable=decoder --set window_frames=16 \
  --data "$DATA/shapes/manifest.jsonl" --data "$DATA/photos/manifest.jsonl" \
  -o "$RUNS/mbq-vae-tiny-decoder" --steps 3000 --batch-size 4 --lr 5e-4 --warmup 50 --ema 0.995 --seed 0
python "$HERE/bundle.py" "$RUNS/mbq-vae-tiny-decoder" mbq-vae-tiny-v1-decoder --dest "$RUNS/bundled" --command "$(cat "$0")"

# vidtool/defaults/mbq-vae-tiny, the default tokenizer: the same architecture with LFQ 2^16 (16 bits
# a token), trained on random crops (train_crop) so that 2 cores take enough updates, then on whole
# clips, in fourteen runs:
# 1. the paper's masked training (masking lightened as above), 700 updates of 8 crops of 8x32x32
#    frames, one process;
# 2. unmasked, 2,255 updates of 2 ranks x 4 such crops (a 10,000-update cosine schedule, stopped);
# 3. unmasked on 16x32x32 crops, 4,340 updates of 2 ranks x 2 (a 9,000-update cosine schedule,
#    stopped): a model trained on 8-frame crops only (2 latent frames, both at the clip's edge)
#    reconstructs whole 16-frame clips 6 dB worse than 8-frame pieces of them, so the crops must
#    have the length the model runs at;
# 4. unmasked on whole 16x64x64 clips, 1,300 updates of 2 ranks x 1 at 5e-4, cosine: trained on
#    32x32 windows alone, whole frames came out 1.2 dB worse than 32x32 tiles of them (the norms'
#    and squeeze-excitation's statistics span the whole clip).
# 5. whole clips again, 1,200 updates of 2 clips on one process (a 3,200-update cosine schedule from
#    3e-4, stopped), the reconstruction loss L2 alone, MotionAura Eq. 1's L_rec (x5, about the
#    gradient scale L1 + L2 had), starting from run 4 as bundled (float16): PSNR is an L2 measure,
#    and the same run with L1 + L2 was 0.4 dB behind it at this point on 50 held-out clips per set.
#    Two clips per process, not one: PyTorch runs a single float32 clip's 3x3x3 convolutions in its
#    slow im2col kernel (vidtool.nn.conv3d sends the forward to oneDNN, not the backward), so one
#    clip per update costs 1.5x per clip what two do (benchmarks/mbq_vae_step.py);
# 6. 2,000 more such updates (2e-4, cosine) with the LFQ entropy penalty at 0.02 instead of 0.1
#    (MAGVIT-v2's weight): the penalty asks for every code to be used equally, also on flat
#    backgrounds. Runs 5 + 6: +1.0 dB shapes, +0.8 dB photos over run 4 (+0.08 dB each over run 5's
#    schedule run to its end with the penalty kept).
# 7. 1,250 more such updates (a 4,000-update cosine schedule from 2e-4, stopped) on one process;
# 8. 2,900 updates of 2 ranks x 2 clips (3e-4, cosine): twice the clips per update at about the same
#    updates per second as one process of 2 (0.55-0.65/s). Runs 7 + 8: +0.51 dB shapes, +0.42 dB photos
#    (28.74 / 23.69 dB on the 200 held-out clips per set).
#    Tried beside run 7 and not kept: LFQ 2^20 (20 bits a token, the 4 new bits starting as copies
#    of bits 0-3, widen.py) trained on the same batches reached the same L2 after 1,250 updates
#    (0.01131 both, updates 1,000-1,250) and 28.14 / 23.63 against 28.16 / 23.58 dB after 750 (50
#    held-out clips per set), so 16 bits are not what limits the model at this training length.
# 9. 4,200 more such updates (2.5e-4, cosine) from run 8 as bundled (float16): +0.34 dB shapes,
#    +0.37 dB photos (29.08 / 24.06 dB).
# 10. its decoder alone (trainable=decoder: the encoder and the LFQ stay frozen, so every token id
#    keeps its meaning and config.json "codes_of" names the earlier tags), 2,000 updates of 2 ranks x
#    2 clips (2.5e-4, cosine), 33 minutes: 1.0 updates/s against the whole model's 0.6, for
#    +0.13 dB shapes, +0.12 dB photos (29.21 / 24.18 dB);
# 11. 2,512 more (a 3,000-update cosine schedule from 3e-4, stopped), 42 minutes: +0.17 / +0.16 dB
#    (29.38 / 24.34 dB; 29.27 / 24.21 dB after its first 1,000).
# 12. 4,000 more (3e-4, cosine), 65 minutes: +0.19 / +0.20 dB (29.57 / 24.54 dB; 29.52 / 24.45 dB
#    after its first 2,000), so about 0.2 dB an hour and still slowing. The bundled config's
#    "codes_of" also names mbq-vae@51c377d1ad092af8, run 11 as it was bundled (float16) and shipped
#    as the default before: added by hand, because a bundled copy has its own tag and this run
#    starts from run 11's folder, so tokens made by that default still decode.
# 13. 6,000 more (3e-4, cosine, seed 10), 100 minutes, scored by minus the mean per-frame PSNR instead
#    of L2 (psnr_weight=0.005, l2_weight=0): a pooled L2 lets the frames with the largest errors (photos)
#    set the direction, while the benchmark averages per-frame PSNRs. After 500 updates from run 12 on
#    the same batches: 29.57 / 24.38 dB against L2's 29.54 / 24.43 (and L2 with the decoder's last
#    stage widened 48 -> 96 channels: 29.50 / 24.40); the whole run: +0.31 / +0.05 dB
#    (29.88 / 24.59 dB; 29.80 / 24.49 after its first 3,000). "codes_of" gets run 12's bundled tag,
#    mbq-vae@4e86035f31ee5196, by hand as in run 12.
# 14. the same again from run 13's folder (6,000 updates, 3e-4 cosine, seed 11), 100 minutes:
#    +0.15 / +0.07 dB (30.03 / 24.66 dB; 29.99 / 24.58 after its first 3,000, in fp32), so the
#    restart at 3e-4 bought shapes +0.11 dB in its first half and +0.04 in its second. "codes_of"
#    gets run 13's bundled tag, mbq-vae@6134e9a4557c5b6a, by hand.
# window_frames=16 changes no training step: it makes encode/decode code longer clips in independent
# 16-frame windows, the length the model learned (48-frame clips: +10 dB shapes, +6 dB photos).
# Each process uses one thread (OMP_NUM_THREADS=1); about 10 + 18 + 35 + 37 + 35 + 55 + 35 + 90 + 115
# + 33 + 42 + 65 + 100 + 100 minutes on 2 cores.
MBQ16=(--family mbq-vae --data "$DATA/shapes/manifest.jsonl" --data "$DATA/photos/manifest.jsonl" --seed 0 --ema 0.995
       --lr 1e-3 --set codebook_size=65536 --set window_frames=16 --checkpoint-every 500)
OMP_NUM_THREADS=1 vidtool --quiet train-vae "${MBQ16[@]}" -o "$RUNS/mbq16-stage1" --steps 700 --batch-size 8 --warmup 50 \
  --schedule constant --set 'train_crop=[8,32]' --set 'patch_mask_ratio=[0.1,0.3]' --set 'frame_mask_ratio=[0.05,0.2]'
NOMASK=(--set 'patch_mask_ratio=[0,0]' --set 'frame_mask_ratio=[0,0]' --warmup 100 --schedule cosine)
OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" \
  --init "$RUNS/mbq16-stage1" -o "$RUNS/mbq16-stage2" --steps 10000 --stop-at 2255 --batch-size 4 --set 'train_crop=[8,32]'
OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" \
  --init "$RUNS/mbq16-stage2" -o "$RUNS/mbq16-stage3" --steps 9000 --stop-at 4340 --batch-size 2 --set 'train_crop=[16,32]'
OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" \
  --init "$RUNS/mbq16-stage3" -o "$RUNS/mbq16-stage4" --steps 1300 --batch-size 1 --lr 5e-4 --warmup 20 --checkpoint-every 250
python "$HERE/bundle.py" "$RUNS/mbq16-stage4" mbq-vae-tiny-run4 --dest "$RUNS/bundled" --command "$(cat "$0")"
L2=(--batch-size 2 --checkpoint-every 400 --set l1_weight=0 --set l2_weight=5)
L2_ENT=("${L2[@]}" --set entropy_weight=0.02)  # runs 6-14: the LFQ entropy penalty at 0.02
OMP_NUM_THREADS=1 vidtool --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2[@]}" --init "$RUNS/bundled/mbq-vae-tiny-run4" \
  -o "$RUNS/mbq16-stage5" --steps 3200 --stop-at 1200 --lr 3e-4 --warmup 50
OMP_NUM_THREADS=1 vidtool --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2_ENT[@]}" --init "$RUNS/mbq16-stage5" \
  -o "$RUNS/mbq16-stage6" --seed 1 --steps 2000 --lr 2e-4 --warmup 20
python "$HERE/bundle.py" "$RUNS/mbq16-stage6" mbq-vae-tiny-run6 --dest "$RUNS/bundled" --command "$(cat "$0")"
OMP_NUM_THREADS=1 vidtool --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2_ENT[@]}" --init "$RUNS/bundled/mbq-vae-tiny-run6" \
  -o "$RUNS/mbq16-stage7" --seed 2 --steps 4000 --stop-at 1250 --lr 2e-4 --warmup 20
OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2_ENT[@]}" \
  --init "$RUNS/mbq16-stage7" -o "$RUNS/mbq16-stage8" --seed 3 --steps 2900 --lr 3e-4 --warmup 50
python "$HERE/bundle.py" "$RUNS/mbq16-stage8" mbq-vae-tiny-run8 --dest "$RUNS/bundled" --command "$(cat "$0")"
OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2_ENT[@]}" \
  --init "$RUNS/bundled/mbq-vae-tiny-run8" -o "$RUNS/mbq16-stage9" --seed 4 --steps 4200 --lr 2.5e-4 --warmup 50
python "$HERE/bundle.py" "$RUNS/mbq16-stage9" mbq-vae-tiny-run9 --dest "$RUNS/bundled" --command "$(cat "$0")"
DECODER=(--set trainable=decoder --checkpoint-every 250)  # runs 10-14
PSNR=("${DECODER[@]}" --set l2_weight=0 --set psnr_weight=0.005 --steps 6000 --lr 3e-4 --warmup 50)  # runs 13-14
OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2_ENT[@]}" \
  "${DECODER[@]}" --init "$RUNS/bundled/mbq-vae-tiny-run9" -o "$RUNS/mbq16-stage10" --seed 6 --steps 2000 --lr 2.5e-4 --warmup 50
OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2_ENT[@]}" \
  "${DECODER[@]}" --init "$RUNS/mbq16-stage10" -o "$RUNS/mbq16-stage11" --seed 7 --steps 3000 --stop-at 2512 --lr 3e-4 --warmup 50
OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2_ENT[@]}" \
  "${DECODER[@]}" --init "$RUNS/mbq16-stage11" -o "$RUNS/mbq16-stage12" --seed 9 --steps 4000 --lr 3e-4 --warmup 50
OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2_ENT[@]}" \
  "${PSNR[@]}" --init "$RUNS/mbq16-stage12" -o "$RUNS/mbq16-stage13" --seed 10
OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2_ENT[@]}" \
  "${PSNR[@]}" --init "$RUNS/mbq16-stage13" -o "$RUNS/mbq16-stage14" --seed 11
python "$HERE/bundle.py" "$RUNS/mbq16-stage14" mbq-vae-tiny --dest "$RUNS/bundled" --command "$(cat "$0")"
python benchmarks/reconstruction.py --model "$RUNS/bundled/mbq-vae-tiny" --n 200 --json "$RUNS/mbq-quality.json"
