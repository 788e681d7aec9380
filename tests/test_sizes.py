"""Any size in, any size out: media keeps its own size through `convert`/`encode`/`tokenize`/`decode`
(`--size` resizes the short side, `--crop` crops only on request), every bundled autoencoder codes a
non-square clip whose sides need not be multiples of its factor, and `generate --height --width`
works for every family whose networks can run at another size and is refused in one line where not."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import one_line_error
from stage_runner import run_stage

from vidtool import checkpoint, tensorfile, video
from vidtool.autoencoders import cm_vae


def smooth_clip(frames: int, height: int, width: int) -> np.ndarray:
    """uint8 [T, H, W, 3]: three slow sinusoids (one period across the frame) drifting over time."""
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    clip = [np.stack([0.5 + 0.4 * np.sin(2 * np.pi * (x + 0.05 * t)), 0.5 + 0.4 * np.cos(2 * np.pi * 1.3 * y),
                      0.5 + 0.3 * np.sin(2 * np.pi * (x + y - 0.03 * t))], -1) for t in range(frames)]
    return (np.stack(clip) * 255).round().astype(np.uint8)


def flat_psnr(clip: np.ndarray) -> float:
    """PSNR of the clip's mean colour everywhere: what a codec that kept nothing of the picture scores."""
    return video.psnr(clip, np.broadcast_to(clip.mean(axis=(0, 1, 2)).round(), clip.shape))


def write_clip(path, frames: int, height: int, width: int) -> np.ndarray:
    """Write a smooth mp4; return the frames as they read back (what a stage sees)."""
    video.write_video(path, smooth_clip(frames, height, width), 8)
    return video.read_video(path).frames


def decoded(path) -> np.ndarray:
    return tensorfile.load(path, kinds=["video"]).main[0].numpy()


# 48×80: not square, not 64; 45×80: 16:9 with a height that is a multiple of neither 8 nor 4.
@pytest.mark.parametrize("size", [(48, 80), (45, 80)], ids=["48x80", "45x80"])
@pytest.mark.parametrize(("stage", "model"), [("encode", "movq-tiny"), ("encode", "movq-tiny-video"),
                                               ("tokenize", "mbq-vae-tiny"), ("tokenize", "mbq-vae-tiny-v1")])
def test_every_bundled_autoencoder_gives_back_a_non_square_clip_at_its_own_size(tmp_path, stage, model, size):
    from vidtool.model_store import bundled

    clip = write_clip(tmp_path / "clip.mp4", 8, *size)
    assert run_stage(stage, tmp_path / "clip.mp4", "--model", bundled(model), "-o", tmp_path / "z.safetensors") == 0
    assert run_stage("decode", tmp_path / "z.safetensors", "-o", tmp_path / "rec.safetensors") == 0
    rec = decoded(tmp_path / "rec.safetensors")
    assert rec.shape == clip.shape
    assert video.psnr(clip, rec) > flat_psnr(clip)


def test_lamd_motion_round_trips_a_non_square_clip(tmp_path):
    clip = write_clip(tmp_path / "clip.mp4", 8, 48, 80)
    assert run_stage("encode", tmp_path / "clip.mp4", "--family", "mcd-vae", "-o", tmp_path / "m.safetensors") == 0
    assert run_stage("decode", tmp_path / "m.safetensors", "-o", tmp_path / "rec.safetensors") == 0
    rec = decoded(tmp_path / "rec.safetensors")
    assert rec.shape == clip.shape
    assert video.psnr(clip, rec) > flat_psnr(clip)


@pytest.mark.parametrize("size", [(48, 80), (44, 76)], ids=["48x80", "44x76"])
def test_a_cm_vae_gives_back_any_frame_size(tmp_path, size):
    # Untrained (no cm-vae is bundled), so only the shape is checked; 44×76 is padded to 48×80.
    torch.manual_seed(0)
    model = cm_vae.CMVAE(cm_vae.preset("tiny", block_out_channels=(8, 16, 16, 16),
                                       temporal_block_out_channels=(16, 16, 16)))
    folder = checkpoint.save_pretrained(model, tmp_path / "cm")
    clip = write_clip(tmp_path / "clip.mp4", 8, *size)
    assert run_stage("encode", tmp_path / "clip.mp4", "--model", folder, "-o", tmp_path / "z.safetensors") == 0
    latents = tensorfile.load(tmp_path / "z.safetensors").main
    assert latents.shape[-2:] == (-(-size[0] // model.spatial_factor), -(-size[1] // model.spatial_factor))
    assert run_stage("decode", tmp_path / "z.safetensors", "-o", tmp_path / "rec.safetensors") == 0
    assert decoded(tmp_path / "rec.safetensors").shape == clip.shape


def test_size_resizes_the_short_side_and_keeps_the_aspect(tmp_path):
    video.write_video(tmp_path / "wide.mp4", smooth_clip(4, 90, 160), 8)
    assert run_stage("convert", tmp_path / "wide.mp4", "--size", "48", "-o", tmp_path / "v.safetensors") == 0
    assert decoded(tmp_path / "v.safetensors").shape == (4, 48, 85, 3)  # 160 · 48/90 = 85.3
    assert run_stage("convert", tmp_path / "wide.mp4", "-o", tmp_path / "own.safetensors") == 0
    assert decoded(tmp_path / "own.safetensors").shape == (4, 90, 160, 3)  # no flag: the input's own size


def test_size_with_a_model_rounds_both_sides_to_its_factor_and_says_so(vidtool, tmp_path):
    video.write_video(tmp_path / "wide.mp4", smooth_clip(4, 90, 160), 8)
    result = vidtool("encode", tmp_path / "wide.mp4", "--family", "movq-temporal", "--size", "50",
                     "-o", tmp_path / "z.safetensors")
    assert result.returncode == 0, result.stderr.decode()
    # 50 × 88.9 → 48 × 88, multiples of movq-tiny's spatial factor 8, announced in one line
    assert "90×160 → 48×88 instead of 50×89" in result.stderr.decode()
    assert tensorfile.load(tmp_path / "z.safetensors").main.shape[-2:] == (6, 11)


def test_crop_takes_the_middle_only_when_asked(tmp_path):
    clip = write_clip(tmp_path / "wide.mp4", 4, 90, 160)
    assert run_stage("convert", tmp_path / "wide.mp4", "--crop", "40x60", "-o", tmp_path / "c.safetensors") == 0
    np.testing.assert_array_equal(decoded(tmp_path / "c.safetensors"), clip[:, 25:65, 50:110])
    assert run_stage("convert", tmp_path / "wide.mp4", "--crop", "64", "-o", tmp_path / "s.safetensors") == 0
    assert decoded(tmp_path / "s.safetensors").shape == (4, 64, 64, 3)


def test_a_crop_larger_than_the_frame_exits_2_with_one_line(vidtool, tmp_path):
    video.write_video(tmp_path / "wide.mp4", smooth_clip(4, 90, 160), 8)
    line = one_line_error(vidtool("convert", tmp_path / "wide.mp4", "--crop", "100", "-o", tmp_path / "c.mp4"))
    assert "cannot crop 100×100 from 90×160" in line


# --- generate --height --width, one family at a time -----------------------------------------------


def test_fusionframes_generates_interpolates_and_decodes_at_48x80(tmp_path):
    args = ["--steps", "2", "--seed", "1"]
    assert run_stage("generate", "a red circle moving right", "--height", "48", "--width", "80", *args,
                     "-o", tmp_path / "k.safetensors") == 0
    keyframes = tensorfile.load(tmp_path / "k.safetensors", kinds=["keyframes"])
    assert keyframes.main.shape[-2:] == (6, 10) and keyframes.params["height"] == 48 and keyframes.params["width"] == 80
    assert run_stage("interpolate", tmp_path / "k.safetensors", *args, "-o", tmp_path / "z.safetensors") == 0
    assert tensorfile.load(tmp_path / "z.safetensors").params["width"] == 80
    assert run_stage("decode", tmp_path / "z.safetensors", "-o", tmp_path / "out.mp4") == 0
    assert video.read_video(tmp_path / "out.mp4").frames.shape == (13, 48, 80, 3)  # 4 keyframes → 4·4 − 3


def test_harivo_generates_at_48x80_with_fewer_frames(tmp_path):
    assert run_stage("generate", "a blue square moving up", "--family", "harivo", "--height", "48", "--width", "80",
                     "--frames", "8", "--steps", "2", "-o", tmp_path / "z.safetensors") == 0
    assert run_stage("decode", tmp_path / "z.safetensors", "-o", tmp_path / "out.safetensors") == 0
    assert decoded(tmp_path / "out.safetensors").shape == (8, 48, 80, 3)


def test_motionaura_generates_at_48x80_and_the_asked_rate(tmp_path):
    assert run_stage("generate", "a red circle moving right", "--family", "motionaura", "--height", "48",
                     "--width", "80", "--frames", "8", "--fps", "4", "--steps", "2", "-o", tmp_path / "t.safetensors") == 0
    tokens = tensorfile.load(tmp_path / "t.safetensors", kinds=["tokens"])
    assert tokens.main.shape == (1, 2, 12, 20) and tokens.fps == 4.0  # ×4 in time and space (mbq-vae-tiny-v1)
    assert run_stage("decode", tmp_path / "t.safetensors", "-o", tmp_path / "out.safetensors") == 0
    assert decoded(tmp_path / "out.safetensors").shape == (8, 48, 80, 3)


def test_lamd_refuses_another_size_naming_its_own(vidtool, tmp_path):
    from PIL import Image

    Image.fromarray(smooth_clip(1, 48, 80)[0]).save(tmp_path / "first.png")
    line = one_line_error(vidtool("generate", "--family", "lamd", "--image", tmp_path / "first.png",
                                  "--height", "48", "--width", "80"))
    assert "64×64 video only" in line and "position table" in line


@pytest.mark.parametrize(("args", "message"), [
    (["--height", "50"], "--height 50 is not a multiple of 8 (the spatial factor 8 of movq-temporal@"),
    (["--family", "motionaura", "--width", "30"], "try 28 or 32"),
    (["--family", "motionaura", "--frames", "10"], "try 8 or 12"),
    (["--family", "harivo", "--frames", "20"], "at most 16 frames"),
    (["--family", "harivo", "--fps", "4"], "samples at 8 fps"),
], ids=["height-off-the-factor", "width-off-the-factor", "frames-off-the-temporal-factor", "harivo-too-long",
        "harivo-fps"])
def test_generate_refuses_what_a_model_cannot_make_naming_its_limit(capfd, tmp_path, args, message):
    assert run_stage("generate", "a red circle moving right", *args, "-o", tmp_path / "never.safetensors") == 2
    assert message in capfd.readouterr().err
