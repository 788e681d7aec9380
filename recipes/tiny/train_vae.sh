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
CONFIGS="$HERE/configs"  # each run's options (family, preset, steps, rates, --set entries), named after it

# cm-vae-tiny: the Cross-modal Video VAE's temporal-aware spatial AE, preset tiny-footage (x4 spatial,
# 8 latent channels, no temporal compression, the linear patch shortcut), trained on footage-like
# scenes and shapes as images (§3.4's image path; the zero-initialised temporal convs stay the
# identity). The photos set is left out: it shows the pictures the natural test footage is made of.
vidtool --quiet train-vae --config "$CONFIGS/cm-vae-footage.yaml" \
  --data "$DATA/scenes/manifest.jsonl" --data "$DATA/shapes-1k/manifest.jsonl" -o "$RUNS/cm-vae-footage"
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
vidtool --quiet train-vae --config "$CONFIGS/movq-image.yaml" "${SETS[@]}" "${CODEBOOK[@]}" -o "$RUNS/movq-image"
python "$HERE/bundle.py" "$RUNS/movq-image" movq-tiny --dest "$RUNS/bundled" --command "$COMMAND"
python benchmarks/reconstruction.py --model "$RUNS/bundled/movq-tiny" --n 200 --json "$RUNS/movq-quality.json"

# movq-tiny-video: FusionFrames' video stage (§4.3, Table 3 "3x1x1 Conv"). Encoder and codebook stay
# frozen, so config.json's codes_of names movq-tiny and it decodes movq-tiny's latents.
vidtool --quiet train-vae --config "$CONFIGS/movq-video.yaml" --init "$RUNS/bundled/movq-tiny" "${SETS[@]}" -o "$RUNS/movq-video"
python "$HERE/bundle.py" "$RUNS/movq-video" movq-tiny-video --dest "$RUNS/bundled" --command "$COMMAND"
python benchmarks/reconstruction.py --model "$RUNS/bundled/movq-tiny-video" --n 200 --json "$RUNS/movq-video-quality.json"

# mbq-vae-tiny-v1: x4 temporal, x4 spatial, LFQ 2^10, masking lighter than the paper's so the tiny
# model's capacity goes to reconstruction. The bundled MotionAura generators use its token ids.
vidtool --quiet train-vae --config "$CONFIGS/mbq-vae-tiny.yaml" "${SETS[@]}" -o "$RUNS/mbq-vae-tiny"
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
# Run N's options (steps, rates, losses, crops as --set entries) are configs/mbq16-stageN.yaml.
DDP=(torchrun --standalone --nproc-per-node 2 -m stages.cli)
OMP_NUM_THREADS=1 vidtool --quiet train-vae --config "$CONFIGS/mbq16-stage1.yaml" "${SETS[@]}" \
  -o "$RUNS/mbq16-stage1"
OMP_NUM_THREADS=1 "${DDP[@]}" --quiet train-vae --config "$CONFIGS/mbq16-stage2.yaml" "${SETS[@]}" --init "$RUNS/mbq16-stage1" \
  -o "$RUNS/mbq16-stage2"
OMP_NUM_THREADS=1 "${DDP[@]}" --quiet train-vae --config "$CONFIGS/mbq16-stage3.yaml" "${SETS[@]}" --init "$RUNS/mbq16-stage2" \
  -o "$RUNS/mbq16-stage3"
OMP_NUM_THREADS=1 "${DDP[@]}" --quiet train-vae --config "$CONFIGS/mbq16-stage4.yaml" "${SETS[@]}" --init "$RUNS/mbq16-stage3" \
  -o "$RUNS/mbq16-stage4"
python "$HERE/bundle.py" "$RUNS/mbq16-stage4" mbq-vae-tiny-run4 --dest "$RUNS/bundled" --command "$COMMAND"
OMP_NUM_THREADS=1 vidtool --quiet train-vae --config "$CONFIGS/mbq16-stage5.yaml" "${SETS[@]}" --init "$RUNS/bundled/mbq-vae-tiny-run4" \
  -o "$RUNS/mbq16-stage5"
OMP_NUM_THREADS=1 vidtool --quiet train-vae --config "$CONFIGS/mbq16-stage6.yaml" "${SETS[@]}" --init "$RUNS/mbq16-stage5" \
  -o "$RUNS/mbq16-stage6"
python "$HERE/bundle.py" "$RUNS/mbq16-stage6" mbq-vae-tiny-run6 --dest "$RUNS/bundled" --command "$COMMAND"
OMP_NUM_THREADS=1 vidtool --quiet train-vae --config "$CONFIGS/mbq16-stage7.yaml" "${SETS[@]}" --init "$RUNS/bundled/mbq-vae-tiny-run6" \
  -o "$RUNS/mbq16-stage7"
OMP_NUM_THREADS=1 "${DDP[@]}" --quiet train-vae --config "$CONFIGS/mbq16-stage8.yaml" "${SETS[@]}" --init "$RUNS/mbq16-stage7" \
  -o "$RUNS/mbq16-stage8"
python "$HERE/bundle.py" "$RUNS/mbq16-stage8" mbq-vae-tiny-run8 --dest "$RUNS/bundled" --command "$COMMAND"
OMP_NUM_THREADS=1 "${DDP[@]}" --quiet train-vae --config "$CONFIGS/mbq16-stage9.yaml" "${SETS[@]}" --init "$RUNS/bundled/mbq-vae-tiny-run8" \
  -o "$RUNS/mbq16-stage9"
python "$HERE/bundle.py" "$RUNS/mbq16-stage9" mbq-vae-tiny-run9 --dest "$RUNS/bundled" --command "$COMMAND"
OMP_NUM_THREADS=1 "${DDP[@]}" --quiet train-vae --config "$CONFIGS/mbq16-stage10.yaml" "${SETS[@]}" --init "$RUNS/bundled/mbq-vae-tiny-run9" \
  -o "$RUNS/mbq16-stage10"
OMP_NUM_THREADS=1 "${DDP[@]}" --quiet train-vae --config "$CONFIGS/mbq16-stage11.yaml" "${SETS[@]}" --init "$RUNS/mbq16-stage10" \
  -o "$RUNS/mbq16-stage11"
OMP_NUM_THREADS=1 "${DDP[@]}" --quiet train-vae --config "$CONFIGS/mbq16-stage12.yaml" "${SETS[@]}" --init "$RUNS/mbq16-stage11" \
  -o "$RUNS/mbq16-stage12"
OMP_NUM_THREADS=1 "${DDP[@]}" --quiet train-vae --config "$CONFIGS/mbq16-stage13.yaml" "${SETS[@]}" --init "$RUNS/mbq16-stage12" \
  -o "$RUNS/mbq16-stage13"
OMP_NUM_THREADS=1 "${DDP[@]}" --quiet train-vae --config "$CONFIGS/mbq16-stage14.yaml" "${SETS[@]}" --init "$RUNS/mbq16-stage13" \
  -o "$RUNS/mbq16-stage14"
# codes_of as committed: runs 13, 12 and 11 as bundled, runs 13, 12, 11 and 10 as trained, run 9 as
# bundled (runs 9, 11, 12 and 13 were each the default in turn). All share run 9's encoder and LFQ,
# so tokens any of them wrote decode with this model. The tags hold for the committed weights only:
# a rerun makes another encoder, so drop these flags there and keep what training records.
python "$HERE/bundle.py" "$RUNS/mbq16-stage14" mbq-vae-tiny --dest "$RUNS/bundled" --command "$COMMAND" \
  --codes-of mbq-vae@6134e9a4557c5b6a --codes-of mbq-vae@4e86035f31ee5196 --codes-of mbq-vae@51c377d1ad092af8 \
  --codes-of mbq-vae@0a40ee55919698b7 --codes-of mbq-vae@7a394045c3219e58 --codes-of mbq-vae@5d647090debc19cb \
  --codes-of mbq-vae@7cf0de02dfa9d453 --codes-of mbq-vae@460f38a9d30934e1
python benchmarks/reconstruction.py --model "$RUNS/bundled/mbq-vae-tiny" --n 200 --json "$RUNS/mbq-quality.json"
