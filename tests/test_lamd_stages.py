"""LaMD through the stages: generate --family lamd, encode --family mcd-vae, decode (--content),
train-denoiser --family dmg; and motion transfer measured with the bundled tiny models."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from PIL import Image

from vidtool.pipelines.lamd import image_to_model
from tests.conftest import one_line_error
from vidtool import checkpoint, tensorfile
from vidtool.data.shapes import COLORS, ShapeClip, render_shape_clip
from vidtool.metrics.shapes_probe import read_clip
from vidtool.model_store import default_model
from vidtool.video import frames_from_model, frames_to_model, psnr

OPPOSITE = {"left": "right", "right": "left", "up": "down", "down": "up"}
STEP = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def clip(color: str, direction: str, start=(0.5, 0.5), travel: float = 0.4, shape: str = "circle",
         background: str | None = None) -> ShapeClip:
    """One shape, no distractor: moving `travel` of the frame side over the clip."""
    from vidtool.data.shapes import Sprite
    from vidtool.data.wording import with_article

    dx, dy = STEP[direction]
    end = (start[0] + dx * travel, start[1] + dy * travel)
    sprite = Sprite(shape=shape, color=color, radius=0.16, start=start, end=end)
    bg = COLORS[background] if background else (40, 40, 40)
    return ShapeClip(color=color, shape=shape, direction=direction, speed="medium",
                     caption=f"{with_article(color)} {shape} moving {direction}", sprites=(sprite,), background=background,
                     background_rgb=bg, texture_seed=None)


def render(spec: ShapeClip, frames: int = 8) -> np.ndarray:
    return render_shape_clip(spec, frames=frames, size=64).video


def save_png(path, frame: np.ndarray):
    Image.fromarray(frame).save(path)
    return path


def save_video(path, frames: np.ndarray, fps: float = 4.0):
    tensorfile.save(tensorfile.TensorFile(kind="video", tensors={"video": torch.from_numpy(frames[None])}, fps=fps), path)
    return path


# --- motion transfer, measured (LaMD §4.2.2) --------------------------------------------------------

PAIRS = [  # (A: content, B: motion); A starts where B starts but has another colour and moves the other way
    (("red", "left"), ("blue", "right")),
    (("yellow", "up"), ("green", "down")),
    (("cyan", "right"), ("magenta", "left")),
    (("white", "down"), ("orange", "up")),
    (("green", "left"), ("red", "right")),
    (("orange", "up"), ("cyan", "down")),
]


def test_decode_with_content_of_a_and_motion_of_b_keeps_a_colour_and_follows_b():
    """With the bundled mcd-vae-tiny: encode B's motion, decode it on A's first frame; the shapes
    probe must read A's colour and B's direction (never A's own direction) in every pair."""
    vae = checkpoint.from_pretrained(default_model("mcd-vae"))
    colors, directions = [], []
    for n, ((a_color, a_dir), (b_color, b_dir)) in enumerate(PAIRS):
        start = (0.35 + 0.3 * (n % 2), 0.35 + 0.3 * (n // 2 % 2))
        a = render(clip(a_color, a_dir, start=start), vae.frames)
        b = render(clip(b_color, b_dir, start=start), vae.frames)
        assert read_clip(b).direction == b_dir  # the probe reads the source motion correctly
        with torch.inference_mode():
            z_b = vae.encode(frames_to_model(torch.from_numpy(b[None]))).latents
            mixed = frames_from_model(vae.decode(z_b, image_to_model(a[None, 0]))).numpy()[0]
        reading = read_clip(mixed)
        colors.append(reading.color == a_color)
        directions.append(reading.direction == b_dir)
    assert all(colors), colors
    assert all(directions), directions


def test_encode_then_decode_with_content_through_the_stages(vidtool, tmp_path):
    b = render(clip("blue", "right", start=(0.35, 0.5)))
    a = render(clip("yellow", "left", start=(0.35, 0.5)))
    source = save_video(tmp_path / "b.safetensors", b)
    png = save_png(tmp_path / "a.png", a[0])
    encoded = vidtool("encode", source, "--family", "mcd-vae", "-o", tmp_path / "m.safetensors")
    assert encoded.returncode == 0, encoded.stderr.decode()
    motion = tensorfile.load(tmp_path / "m.safetensors", kinds=["motion"])
    assert motion["motion"].ndim == 4 and motion["content"].shape == (1, 64, 64, 3)
    decoded = vidtool("decode", tmp_path / "m.safetensors", "--content", png, "-o", tmp_path / "v.safetensors")
    assert decoded.returncode == 0, decoded.stderr.decode()
    video = tensorfile.load(tmp_path / "v.safetensors", kinds=["video"])["video"].numpy()[0]
    assert video.shape == (8, 64, 64, 3)
    assert read_clip(video).color == "yellow" and read_clip(video).direction == "right"


# --- image-to-video ---------------------------------------------------------------------------------

def test_generate_lamd_then_decode_keeps_the_given_first_frame(vidtool, tmp_path):
    first = render(clip("red", "up", start=(0.5, 0.6)))[0]
    png = save_png(tmp_path / "first.png", first)
    made = vidtool("generate", "--family", "lamd", "--image", png, "--text", "a red circle moving up",
                   "--steps", "20", "--seed", "3", "-o", tmp_path / "m.safetensors")
    assert made.returncode == 0, made.stderr.decode()
    motion = tensorfile.load(tmp_path / "m.safetensors", kinds=["motion"])
    assert motion.prompt == "a red circle moving up" and motion.seed == 3 and motion.params["steps"] == 20
    assert torch.equal(motion["content"][0], torch.from_numpy(first))
    decoded = vidtool("decode", tmp_path / "m.safetensors", "-o", tmp_path / "v.safetensors")
    assert decoded.returncode == 0, decoded.stderr.decode()
    video = tensorfile.load(tmp_path / "v.safetensors", kinds=["video"])["video"].numpy()[0]
    assert video.shape[0] == checkpoint.from_pretrained(default_model("mcd-vae")).frames
    assert psnr(video[0], first) >= 30.0  # the frame-0 goal


def test_generate_lamd_bad_inputs_are_one_line_errors(vidtool, tmp_path):
    png = save_png(tmp_path / "first.png", render(clip("red", "up"))[0])
    assert "--image" in one_line_error(vidtool("generate", "--family", "lamd", "--text", "a red circle moving up"))
    assert "--frames 8" in one_line_error(vidtool("generate", "--family", "lamd", "--image", png, "--frames", "12"))
    assert "without class labels" in one_line_error(vidtool("generate", "--family", "lamd", "--image", png,
                                                            "--label", "1", "--steps", "2"))
    (tmp_path / "bad.png").write_bytes(b"not a png")
    assert "not a readable image" in one_line_error(vidtool("generate", "--family", "lamd", "--image",
                                                            tmp_path / "bad.png"))
    assert "--family lamd" in one_line_error(vidtool("generate", "a red circle moving up", "--image", png))


def test_decode_content_needs_a_motion_file(vidtool, tmp_path):
    png = save_png(tmp_path / "a.png", render(clip("red", "up"))[0])
    latents = tensorfile.TensorFile(kind="latents", tensors={"latents": torch.zeros(1, 4, 2, 8, 8)}, model="movq-temporal@0")
    tensorfile.save(latents, tmp_path / "z.safetensors")
    assert "motion" in one_line_error(vidtool("decode", tmp_path / "z.safetensors", "--content", png, "-o", tmp_path / "v.mp4"))


# --- training through the stages ----------------------------------------------------------------------

@pytest.mark.slow
def test_train_denoiser_dmg_builds_a_motion_set_and_trains(vidtool, tmp_path):
    from vidtool.data.make import make_dataset

    manifest = make_dataset("shapes", tmp_path / "data", 8, frames=8, size=64, fps=8, seed=5)
    vae = tmp_path / "vae"
    made = vidtool("train-vae", "--family", "mcd-vae", "--data", manifest, "-o", vae, "--frames", "8", "--steps", "2",
                   "--batch-size", "2", "--set", "image_encoder_channels=8", "--set", "decoder_channels=8")
    assert made.returncode == 0, made.stderr.decode()
    trained = vidtool("train-denoiser", "--family", "dmg", "--vae", vae, "--data", manifest, "-o", tmp_path / "dmg",
                      "--steps", "3", "--batch-size", "4")
    assert trained.returncode == 0, trained.stderr.decode()
    config = checkpoint.read_config(tmp_path / "dmg")["config"]
    assert config["vae"] == checkpoint.model_tag(vae) and config["frames"] == 8
    assert (tmp_path / "dmg" / "motion-set.safetensors").is_file()
    assert dataclasses.is_dataclass(checkpoint.from_pretrained(tmp_path / "dmg").config)
