#!/usr/bin/env bash
# Reproduces the bundled autoencoders and tokenizers and measures each on 200 held-out clips per
# data set (seed 1): cm-vae-tiny (the default of `encode`, also measured on held-out natural
# footage), movq-tiny and movq-tiny-video (FusionFrames' MoVQ, image stage and video-stage decoder),
# mbq-vae-tiny-v1 and mbq-vae-tiny (MotionAura's 3D-MBQ-VAE, LFQ 2^10 and 2^16). Training time on a
# 2-core CPU: about 30 minutes (cm-vae-tiny), 15 + 55 minutes (movq), 25 minutes (mbq-vae-tiny-v1)
# and 780 minutes (mbq-vae-tiny). Each model's README.md (vidtool/defaults/NAME/) gives its history.
#   DATA=data RUNS=runs/tiny bash recipes/tiny/train_vae.sh
#   MOVQ_CODEBOOK=fixed RUNS=runs/fixed bash recipes/tiny/train_vae.sh   # movq with the codebook remedies
set -euo pipefail
DATA=${DATA:-data}
RUNS=${RUNS:-runs/tiny}
HERE=$(dirname "$0")
COMMAND="bash recipes/tiny/train_vae.sh"
DATA=$DATA bash "$HERE/data.sh"
SETS=(--data "$DATA/shapes/manifest.jsonl" --data "$DATA/photos/manifest.jsonl")

# cm-vae-tiny: the Cross-modal Video VAE's temporal-aware spatial AE, preset tiny-footage (x4 spatial,
# 8 latent channels, no temporal compression, the linear patch shortcut), trained on footage-like
# scenes and shapes as images (§3.4's image path; the zero-initialised temporal convs stay the
# identity). The photos set is left out: it shows the pictures the natural test footage is made of.
vidtool --quiet train-vae --family cm-vae --preset tiny-footage \
  --data "$DATA/scenes/manifest.jsonl" --data "$DATA/shapes-1k/manifest.jsonl" -o "$RUNS/cm-vae-footage" \
  --steps 1500 --stop-at 514 --batch-size 8 --frames 1 --lr 1e-3 --warmup 50 --ema 0.995 --seed 0 --checkpoint-every 150
python "$HERE/bundle.py" "$RUNS/cm-vae-footage" cm-vae-tiny --dest "$RUNS/bundled" --command "$COMMAND"
python benchmarks/natural_footage.py --model "$RUNS/bundled/cm-vae-tiny" --json "$RUNS/cm-vae-natural.json"
python benchmarks/reconstruction.py --model "$RUNS/bundled/cm-vae-tiny" --n 200 --json "$RUNS/cm-vae-quality.json"

# movq-tiny: 64x64 frames -> 8x8x4 latents, 1024 VQ codes. The bundled weights were trained without
# the quantizer's remedies for codebook collapse (it uses ~6% of its codes); MOVQ_CODEBOOK=fixed turns
# them on (k-means initialisation, restarts of codes unused for 20 batches; benchmarks/codebook_usage.py),
# which makes a model in another latent space than the bundled FusionFrames and HARIVO generators'.
MOVQ_CODEBOOK=${MOVQ_CODEBOOK:-bundled}
case "$MOVQ_CODEBOOK" in
  bundled) CODEBOOK=() ;;
  fixed) CODEBOOK=(--set codebook_init=kmeans --set dead_code_steps=20) ;;
  *) echo "MOVQ_CODEBOOK must be 'bundled' or 'fixed', got '$MOVQ_CODEBOOK'" >&2; exit 2 ;;
esac
vidtool --quiet train-vae --family movq-temporal "${SETS[@]}" "${CODEBOOK[@]}" \
  -o "$RUNS/movq-image" --steps 2000 --batch-size 4 --lr 1e-3 --warmup 100 --ema 0.995 --seed 0
python "$HERE/bundle.py" "$RUNS/movq-image" movq-tiny --dest "$RUNS/bundled" --command "$COMMAND"
python benchmarks/reconstruction.py --model "$RUNS/bundled/movq-tiny" --n 200 --json "$RUNS/movq-quality.json"

# movq-tiny-video: FusionFrames' video stage (§4.3, Table 3 "3x1x1 Conv"). Encoder and codebook stay
# frozen, so config.json's codes_of names movq-tiny and it decodes movq-tiny's latents.
vidtool --quiet train-vae --family movq-temporal --init "$RUNS/bundled/movq-tiny" --set stage=video --set temporal=conv1x1x3 \
  "${SETS[@]}" -o "$RUNS/movq-video" --steps 2400 --batch-size 4 --frames 8 --lr 5e-4 --warmup 50 --ema 0.995 --seed 0
python "$HERE/bundle.py" "$RUNS/movq-video" movq-tiny-video --dest "$RUNS/bundled" --command "$COMMAND"
python benchmarks/reconstruction.py --model "$RUNS/bundled/movq-tiny-video" --n 200 --json "$RUNS/movq-video-quality.json"

# mbq-vae-tiny-v1: x4 temporal, x4 spatial, LFQ 2^10, masking lighter than the paper's so the tiny
# model's capacity goes to reconstruction. The bundled MotionAura generators use its token ids.
vidtool --quiet train-vae --family mbq-vae "${SETS[@]}" \
  -o "$RUNS/mbq-vae-tiny" --steps 1500 --batch-size 4 --lr 1e-3 --warmup 100 --ema 0.995 --seed 0 \
  --set 'patch_mask_ratio=[0.1,0.3]' --set 'frame_mask_ratio=[0.05,0.2]'
python "$HERE/bundle.py" "$RUNS/mbq-vae-tiny" mbq-vae-tiny-v1 --dest "$RUNS/bundled" --command "$COMMAND"
python benchmarks/reconstruction.py --model "$RUNS/bundled/mbq-vae-tiny-v1" --n 200 --json "$RUNS/mbq-v1-quality.json"

# mbq-vae-tiny, the default tokenizer: LFQ 2^16, in fourteen runs of one thread per process.
#  1     masked training on 8x32x32 crops (train_crop);
#  2-3   unmasked on 8x32x32, then 16x32x32 crops (--stop-at cuts a longer cosine schedule);
#  4     whole 16x64x64 clips (crops teach the crop's size: whole clips must come last);
#  5-9   whole clips, L2 alone (MotionAura Eq. 1's L_rec), from run 6 the LFQ entropy penalty at 0.02;
#        two clips per process, since one float32 clip falls to PyTorch's slow im2col 3D convolution;
#  10-12 the decoder alone (trainable=decoder: encoder and LFQ frozen, token ids unchanged);
#  13-14 the decoder scored by minus the mean per-frame PSNR (psnr_weight), what the benchmark averages.
# window_frames=16 changes no training step: encode/decode code longer clips in 16-frame windows.
MBQ16=(--family mbq-vae "${SETS[@]}" --seed 0 --ema 0.995
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
python "$HERE/bundle.py" "$RUNS/mbq16-stage4" mbq-vae-tiny-run4 --dest "$RUNS/bundled" --command "$COMMAND"
L2=(--batch-size 2 --checkpoint-every 400 --set l1_weight=0 --set l2_weight=5)
L2_ENT=("${L2[@]}" --set entropy_weight=0.02)  # runs 6-14
OMP_NUM_THREADS=1 vidtool --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2[@]}" --init "$RUNS/bundled/mbq-vae-tiny-run4" \
  -o "$RUNS/mbq16-stage5" --steps 3200 --stop-at 1200 --lr 3e-4 --warmup 50
OMP_NUM_THREADS=1 vidtool --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2_ENT[@]}" --init "$RUNS/mbq16-stage5" \
  -o "$RUNS/mbq16-stage6" --seed 1 --steps 2000 --lr 2e-4 --warmup 20
python "$HERE/bundle.py" "$RUNS/mbq16-stage6" mbq-vae-tiny-run6 --dest "$RUNS/bundled" --command "$COMMAND"
OMP_NUM_THREADS=1 vidtool --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2_ENT[@]}" --init "$RUNS/bundled/mbq-vae-tiny-run6" \
  -o "$RUNS/mbq16-stage7" --seed 2 --steps 4000 --stop-at 1250 --lr 2e-4 --warmup 20
OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2_ENT[@]}" \
  --init "$RUNS/mbq16-stage7" -o "$RUNS/mbq16-stage8" --seed 3 --steps 2900 --lr 3e-4 --warmup 50
python "$HERE/bundle.py" "$RUNS/mbq16-stage8" mbq-vae-tiny-run8 --dest "$RUNS/bundled" --command "$COMMAND"
OMP_NUM_THREADS=1 torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae "${MBQ16[@]}" "${NOMASK[@]}" "${L2_ENT[@]}" \
  --init "$RUNS/bundled/mbq-vae-tiny-run8" -o "$RUNS/mbq16-stage9" --seed 4 --steps 4200 --lr 2.5e-4 --warmup 50
python "$HERE/bundle.py" "$RUNS/mbq16-stage9" mbq-vae-tiny-run9 --dest "$RUNS/bundled" --command "$COMMAND"
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
# codes_of as committed: runs 13, 12 and 11 as bundled, runs 13, 12, 11 and 10 as trained, run 9 as
# bundled (runs 9, 11, 12 and 13 were each the default in turn). All share run 9's encoder and LFQ,
# so tokens any of them wrote decode with this model. The tags hold for the committed weights only:
# a rerun makes another encoder, so drop these flags there and keep what training records.
python "$HERE/bundle.py" "$RUNS/mbq16-stage14" mbq-vae-tiny --dest "$RUNS/bundled" --command "$COMMAND" \
  --codes-of mbq-vae@6134e9a4557c5b6a --codes-of mbq-vae@4e86035f31ee5196 --codes-of mbq-vae@51c377d1ad092af8 \
  --codes-of mbq-vae@0a40ee55919698b7 --codes-of mbq-vae@7a394045c3219e58 --codes-of mbq-vae@5d647090debc19cb \
  --codes-of mbq-vae@7cf0de02dfa9d453 --codes-of mbq-vae@460f38a9d30934e1
python benchmarks/reconstruction.py --model "$RUNS/bundled/mbq-vae-tiny" --n 200 --json "$RUNS/mbq-quality.json"
