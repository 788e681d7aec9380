"""MotionAura through the CLI: train-denoiser (spectral, spectral-inpaint), generate, decode, inpaint."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import one_line_error
from vidtool import checkpoint, tensorfile

# Test-sized networks over the bundled tokenizer's ids and the real MiniLM text tokens.
SPECTRAL = ["--set", "dim=32", "--set", "heads=2", "--set", "blocks=1", "--set", "time_embedding_dim=16"]
TRAIN = ["--frames", "8", "--batch-size", "2", "--warmup", "0", "--steps", "2"]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from stage_runner import run_stage
    from vidtool.data.make import make_dataset

    root = tmp_path_factory.mktemp("motionaura")
    make_dataset("shapes", root / "shapes", 4, frames=8, size=64, fps=8, seed=1)
    manifest = root / "shapes" / "manifest.jsonl"
    assert run_stage("train-denoiser", "--family", "spectral", "--data", manifest, *TRAIN, *SPECTRAL,
                     "-o", root / "spectral") == 0
    # The clips carry object masks, so the generator's token set also holds the inpainting inputs.
    assert run_stage("train-denoiser", "--family", "spectral-inpaint", "--base", root / "spectral",
                     "--token-set", root / "spectral" / "token-set.safetensors", *TRAIN, "--set", "rank=4",
                     "-o", root / "inpaint") == 0
    return {"root": root, "manifest": manifest, "spectral": root / "spectral", "inpaint": root / "inpaint"}


def test_spectral_training_records_the_token_space_and_its_token_set(trained):
    from vidtool.families import REGISTRY
    from vidtool.model_store import bundled

    model = checkpoint.from_pretrained(trained["spectral"])
    # Without --tokenizer, the token set is made by the family's registered data model.
    assert model.config.tokenizer == checkpoint.model_tag(bundled(REGISTRY["spectral"].data_model))
    assert model.config.codebook_size == 1024
    # 8 frames of 64×64 through the ×4 time, ×4 space tokenizer.
    assert (model.config.token_frames, model.config.token_height, model.config.token_width) == (2, 16, 16)
    assert (trained["spectral"] / "token-set.safetensors").is_file()
    adapter = checkpoint.read_config(trained["inpaint"])["config"]
    assert adapter["base"] == checkpoint.model_tag(trained["spectral"]) and adapter["rank"] == 4


def test_generate_motionaura_writes_tokens_that_decode_turns_into_video(trained, tmp_path):
    from stage_runner import run_stage

    assert run_stage("generate", "a red circle moving right", "--model", trained["spectral"], "--steps", "3",
                     "--seed", "4", "-o", tmp_path / "tokens.safetensors") == 0
    tf = tensorfile.load(tmp_path / "tokens.safetensors", kinds=["tokens"])
    config = checkpoint.from_pretrained(trained["spectral"]).config
    assert tf.main.shape == (1, 2, 16, 16) and tf.model == config.tokenizer
    assert tf.params["frames"] == 8 and tf.params["steps"] == 3 and tf.seed == 4 and tf.fps == 8.0
    assert run_stage("generate", "a red circle moving right", "--model", trained["spectral"], "--steps", "3",
                     "--seed", "4", "-o", tmp_path / "again.safetensors") == 0
    assert tensorfile.load(tmp_path / "again.safetensors").main.equal(tf.main)
    assert run_stage("decode", tmp_path / "tokens.safetensors", "-o", tmp_path / "out.safetensors") == 0
    assert tensorfile.load(tmp_path / "out.safetensors", kinds=["video"]).main.shape == (1, 8, 64, 64, 3)


def test_inpaint_keeps_every_pixel_outside_the_mask(trained, tmp_path):
    from stage_runner import run_stage
    from vidtool.data.manifest import read_manifest
    from vidtool.data.tokens import box_region

    record = read_manifest(trained["manifest"])[0]
    clip = trained["root"] / "shapes" / record["path"]
    with np.load(trained["root"] / "shapes" / record["mask"]) as data:
        masks, strokes = data["mask"], data["sketch"][0]
    np.savez(tmp_path / "hole.npz", mask=box_region(masks, 4).astype(np.uint8))
    Image.fromarray(np.where(strokes > 0, 0, 255).astype(np.uint8)).save(tmp_path / "sketch.png")
    assert run_stage("inpaint", clip, "--mask", tmp_path / "hole.npz", "--sketch", tmp_path / "sketch.png",
                     "--prompt", record["caption"], "--model", trained["inpaint"], "--steps", "2",
                     "-o", tmp_path / "out.safetensors") == 0
    out = tensorfile.load(tmp_path / "out.safetensors", kinds=["video"]).main[0].numpy()
    from vidtool.video import read_video

    original = read_video(clip).frames
    hole = box_region(masks, 4).astype(bool)
    assert out.shape == original.shape
    assert np.array_equal(out[~hole], original[~hole])


def test_init_warm_starts_a_model_at_another_clip_length(trained, tmp_path):
    from stage_runner import run_stage

    # 4 frames are one token frame where the init model was trained on two; RoPE and the FFT hold no
    # length-sized weights, so every tensor carries over. One update at lr 1e-9 leaves the init's
    # weights to float rounding (a fresh initialisation would differ everywhere).
    assert run_stage("train-denoiser", "--family", "spectral", "--data", trained["manifest"], "--frames", "4",
                     "--batch-size", "2", "--steps", "1", "--lr", "1e-9", *SPECTRAL, "--init", trained["spectral"],
                     "-o", tmp_path / "short") == 0
    warm, source = checkpoint.from_pretrained(tmp_path / "short"), checkpoint.from_pretrained(trained["spectral"])
    assert warm.config.token_frames == 1
    assert all(torch.allclose(value, source.state_dict()[name], atol=1e-6) for name, value in warm.state_dict().items())


def test_no_fft_trains_the_ablation(trained, tmp_path):
    from stage_runner import run_stage

    assert checkpoint.from_pretrained(trained["spectral"]).config.fft
    assert run_stage("train-denoiser", "--family", "spectral", "--token-set", trained["spectral"] / "token-set.safetensors",
                     *TRAIN, *SPECTRAL, "--no-fft", "-o", tmp_path / "no-fft") == 0
    assert not checkpoint.from_pretrained(tmp_path / "no-fft").config.fft


@pytest.mark.parametrize(("args", "message"), [
    (["train-denoiser", "--family", "spectral", "--token-set", "{token_set}", "--init", "{inpaint}", "-o", "{tmp}/x"],
     "is a spectral-inpaint model"),
    (["train-denoiser", "--family", "spectral", "--token-set", "{token_set}", "--init", "{spectral}", "-o", "{tmp}/x"],
     "does not fit"),
    (["generate", "a red circle", "--family", "fusionframes", "--temperature", "0.5"], "belongs to --family motionaura"),
    (["train-denoiser", "--family", "spectral-inpaint", "--token-set", "{token_set}", "-o", "{tmp}/x"], "--base"),
    (["train-denoiser", "--family", "spectral-inpaint", "--base", "{spectral}", "--token-set", "{token_set}",
      "--no-fft", "-o", "{tmp}/x"], "--no-fft belongs to --family spectral"),
    (["inpaint", "{clip}", "--mask", "{tmp}/empty.png", "--sketch", "{tmp}/empty.png", "--prompt", "a red square",
      "--model", "{inpaint}"], "mask"),
], ids=["init-of-another-family", "init-of-another-size", "temperature-for-fusionframes", "inpaint-without-base",
        "no-fft-for-inpaint", "empty-mask"])
def test_bad_input_exits_2_with_one_line(vidtool, trained, tmp_path, args, message):
    Image.fromarray(np.zeros((64, 64), dtype=np.uint8)).save(tmp_path / "empty.png")
    from vidtool.data.manifest import read_manifest

    clip = trained["root"] / "shapes" / read_manifest(trained["manifest"])[0]["path"]
    values = {"token_set": trained["spectral"] / "token-set.safetensors", "tmp": tmp_path, "clip": clip,
              "inpaint": trained["inpaint"], "spectral": trained["spectral"]}
    line = one_line_error(vidtool(*[a.format(**values) for a in args]))
    assert message in line
