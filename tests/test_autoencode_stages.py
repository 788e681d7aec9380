"""`encode`, `tokenize` and `decode` as a user runs them, with tiny untrained models built here."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from conftest import one_line_error
from vidtool import checkpoint, tensorfile, video
from vidtool.autoencoders import cm_vae, mbq_vae
from vidtool.tensorfile import TensorFile


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    torch.manual_seed(0)
    cm = cm_vae.CMVAE(cm_vae.preset("tiny", block_out_channels=(8, 16, 16, 16), temporal_block_out_channels=(16, 16, 16)))
    mbq = mbq_vae.MBQVAE(mbq_vae.MBQVAEConfig(encoder_channels=(8, 16, 16), decoder_channels=(8, 16, 16), mfi_hidden=8))
    return {"root": root, "cm": checkpoint.save_pretrained(cm, root / "cm"),
            "mbq": checkpoint.save_pretrained(mbq, root / "mbq")}


@pytest.fixture
def clip(tmp_path):
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    frames = np.stack([np.roll(np.broadcast_to(ramp[None, :, None], (64, 64, 3)), 3 * t, axis=1) for t in range(18)])
    video.write_video(tmp_path / "clip.mp4", frames, 8)
    return tmp_path / "clip.mp4"


def test_encode_then_decode_restores_length_and_finds_the_decoder(vidtool, models, clip, tmp_path):
    env = {"VIDTOOL_MODELS": str(models["root"])}
    encoded = vidtool("encode", clip, "--model", models["cm"], env=env)
    assert encoded.returncode == 0, encoded.stderr
    assert b"padded 18" in encoded.stderr  # 18 frames are padded to 20 for the x4 temporal factor
    decoded = vidtool("decode", "-", "-o", tmp_path / "rec.safetensors", input=encoded.stdout, env=env)
    assert decoded.returncode == 0, decoded.stderr
    rec = tensorfile.load(tmp_path / "rec.safetensors", kinds=["video"])
    assert rec.main.shape == (1, 18, 64, 64, 3) and rec.fps == 8.0
    assert rec.model == checkpoint.model_tag(models["cm"])


def test_tokens_round_trip_through_decode(vidtool, models, clip, tmp_path):
    env = {"VIDTOOL_MODELS": str(models["root"])}
    tokens = vidtool("tokenize", clip, "--model", models["mbq"], "--frames", "16", "-o", tmp_path / "t.safetensors", env=env)
    assert tokens.returncode == 0, tokens.stderr
    tf = tensorfile.load(tmp_path / "t.safetensors", kinds=["tokens"])
    assert tf.main.shape == (1, 4, 16, 16)
    out = vidtool("decode", tmp_path / "t.safetensors", "-o", tmp_path / "rec.mp4", env=env)
    assert out.returncode == 0, out.stderr
    assert video.read_video(tmp_path / "rec.mp4").frames.shape == (16, 64, 64, 3)


def test_encode_tokenize_and_decode_end_with_one_line_saying_what_they_wrote(vidtool, models, clip, tmp_path):
    env = {"VIDTOOL_MODELS": str(models["root"])}
    lines = {}
    for name, args in [("encode", ["encode", clip, "--model", models["cm"], "--frames", "16", "-o", tmp_path / "z.safetensors"]),
                       ("tokenize", ["tokenize", clip, "--model", models["mbq"], "--frames", "16", "-o", tmp_path / "t.safetensors"]),
                       ("decode", ["decode", tmp_path / "t.safetensors", "-o", tmp_path / "rec.mp4"]),
                       ("decode-tensor", ["decode", tmp_path / "z.safetensors", "-o", tmp_path / "rec.safetensors"])]:
        result = vidtool(*args, env=env)
        assert result.returncode == 0, result.stderr
        lines[name] = result.stderr.decode().strip().splitlines()[-1]
    quiet = vidtool("--quiet", "decode", tmp_path / "t.safetensors", "-o", tmp_path / "quiet.mp4", env=env)
    assert quiet.returncode == 0 and quiet.stderr == b""  # --quiet: nothing, not even the closing line
    clip_words = "16 frames of 64×64 (h×w) at 8 fps, 2.0 s"
    assert lines["encode"].startswith(f"wrote {tmp_path / 'z.safetensors'}: latents 1×") and clip_words in lines["encode"]
    assert lines["tokenize"].startswith(f"wrote {tmp_path / 't.safetensors'}: tokens 1×4×16×16 of {clip_words}")
    assert lines["decode"].startswith(f"wrote {tmp_path / 'rec.mp4'}: {clip_words}; took ")
    assert lines["decode-tensor"].startswith(f"wrote {tmp_path / 'rec.safetensors'}: a 'video' tensor file, {clip_words}")
    assert all(line.endswith(" s") for line in lines.values())


def test_decode_refuses_a_model_that_did_not_write_the_input(vidtool, models, clip):
    encoded = vidtool("encode", clip, "--model", models["cm"])
    line = one_line_error(vidtool("decode", "-", "--model", models["mbq"], input=encoded.stdout))
    assert "was written by cm-vae@" in line


def test_tokens_given_to_a_continuous_decoder_exit_2(vidtool, models, tmp_path):
    path = tmp_path / "t.safetensors"
    tensorfile.save(TensorFile(kind="tokens", tensors={"tokens": torch.zeros(1, 2, 8, 8, dtype=torch.int32)},
                               model=checkpoint.model_tag(models["cm"])), path)
    line = one_line_error(vidtool("decode", path, "--model", models["cm"], "-o", tmp_path / "x.mp4"))
    assert "token ids need a quantized decoder" in line


def test_latents_of_the_wrong_channel_count_exit_2(vidtool, models, tmp_path):
    path = tmp_path / "z.safetensors"
    tensorfile.save(TensorFile(kind="latents", tensors={"latents": torch.zeros(1, 3, 2, 8, 8)},
                               model=checkpoint.model_tag(models["cm"])), path)
    line = one_line_error(vidtool("decode", path, "--model", models["cm"], "-o", tmp_path / "x.mp4"))
    assert "latents have 3 channels" in line and "expects 4" in line


def test_a_clip_shorter_than_the_temporal_factor_exits_2(vidtool, models, tmp_path):
    video.write_video(tmp_path / "short.mp4", np.zeros((2, 64, 64, 3), np.uint8), 8)
    line = one_line_error(vidtool("encode", tmp_path / "short.mp4", "--model", models["cm"]))
    assert "has 2 frame(s)" in line and "at least 4" in line


def test_tokenize_refuses_a_continuous_model(vidtool, models, clip):
    assert "continuous autoencoder" in one_line_error(vidtool("tokenize", clip, "--model", models["cm"]))


def test_frames_off_the_spatial_factor_are_padded_and_decode_trims_them_back(vidtool, models, tmp_path):
    video.write_video(tmp_path / "odd.mp4", np.zeros((8, 60, 60, 3), np.uint8), 8)
    encoded = vidtool("encode", tmp_path / "odd.mp4", "--model", models["cm"])
    assert encoded.returncode == 0, encoded.stderr
    assert "padded 60×60 → 64×64 pixels" in encoded.stderr.decode()
    decoded = vidtool("decode", "-", "-o", tmp_path / "rec.safetensors", input=encoded.stdout)
    assert decoded.returncode == 0, decoded.stderr
    assert tensorfile.load(tmp_path / "rec.safetensors").main.shape == (1, 8, 60, 60, 3)


def test_decode_finds_the_encoders_folder_without_a_search_path(vidtool, models, clip, tmp_path):
    encoded = vidtool("encode", clip, "--model", models["cm"], "--frames", "8")
    decoded = vidtool("decode", "-", "-o", tmp_path / "rec.gif", input=encoded.stdout, env={"VIDTOOL_MODELS": ""})
    assert decoded.returncode == 0, decoded.stderr
    assert video.read_video(tmp_path / "rec.gif", fps=8).frames.shape[0] == 8


def test_a_decoder_fine_tuned_on_frozen_codes_decodes_what_its_init_wrote(vidtool, models, clip, tmp_path, monkeypatch):
    from vidtool import model_store
    from vidtool.autoencoders.build import build_autoencoder

    small = ["encoder_channels=[8,16,16]", "decoder_channels=[8,16,16]", "mfi_hidden=8"]
    tuned = build_autoencoder("mbq-vae", "tiny", [*small, 'trainable="decoder"'], models["mbq"])
    with torch.no_grad():
        tuned.decoder.conv_in.weight.mul_(1.5)  # stands in for training: a new digest, the same codes
    folder = checkpoint.save_pretrained(tuned, tmp_path / "models" / "tuned")
    old = checkpoint.model_tag(models["mbq"])
    assert checkpoint.model_tag(folder) != old and checkpoint.code_tags(folder) == [checkpoint.model_tag(folder), old]
    # Without the old folder on the search path, its tag now leads to the fine-tuned decoder.
    monkeypatch.setenv("VIDTOOL_MODELS", str(tmp_path / "models"))
    assert model_store.find_by_tag(old) == folder
    tokens = vidtool("tokenize", clip, "--model", models["mbq"], "--frames", "8", "-o", tmp_path / "t.safetensors")
    assert tokens.returncode == 0, tokens.stderr
    assert checkpoint.from_pretrained(folder).tokenize(
        video.frames_to_model(torch.from_numpy(video.read_video(clip, max_frames=8).frames)[None])
    ).equal(tensorfile.load(tmp_path / "t.safetensors").main.long())
    out = vidtool("decode", tmp_path / "t.safetensors", "--model", folder, "-o", tmp_path / "rec.safetensors")
    assert out.returncode == 0, out.stderr
    # The other direction does not hold: the old model did not write what the tuned one writes.
    assert not checkpoint.shares_codes(models["mbq"], checkpoint.model_tag(folder))


def test_context_0_codes_independent_windows_of_chunk_latent_frames(vidtool, models, clip, tmp_path):
    # --chunk 2 --context 0 on 16 frames of a x4 model: two windows of 8 frames, each coded as if alone.
    args = ["--model", models["mbq"], "--chunk", "2", "--context", "0"]
    assert vidtool("tokenize", clip, "--frames", "16", *args, "-o", tmp_path / "t.safetensors").returncode == 0
    tokens = tensorfile.load(tmp_path / "t.safetensors").main.long()
    model = checkpoint.from_pretrained(models["mbq"]).eval()
    frames = video.frames_to_model(torch.from_numpy(video.read_video(clip, max_frames=16).frames)[None])
    with torch.inference_mode():
        windows = [model.tokenize(frames[:, :, t:t + 8]) for t in (0, 8)]
        whole = model.tokenize(frames)
        expected = torch.cat([model.decode_tokens(w) for w in windows], 2)
    assert tokens.equal(torch.cat(windows, 1))
    assert not tokens.equal(whole)  # with context the first window would see the second one
    assert vidtool("decode", tmp_path / "t.safetensors", *args, "-o", tmp_path / "rec.safetensors").returncode == 0
    decoded = tensorfile.load(tmp_path / "rec.safetensors").main
    assert decoded.equal(video.frames_from_model(expected))


def test_a_model_with_a_window_codes_in_windows_unless_told_otherwise(vidtool, models, clip, tmp_path):
    from vidtool.autoencoders.tiling import Tiling, default_tiling

    model = checkpoint.from_pretrained(models["mbq"])
    windowed = mbq_vae.MBQVAE(dataclasses.replace(model.config, window_frames=8))
    windowed.load_state_dict(model.state_dict())
    folder = checkpoint.save_pretrained(windowed, tmp_path / "windowed")
    assert default_tiling(windowed) == Tiling(chunk=2, margin=0) and default_tiling(model) == Tiling()
    assert default_tiling(windowed, context=4) == Tiling(chunk=2, margin=4)
    plain = ["--model", models["mbq"], "--frames", "16", "--chunk", "2", "--context", "0"]
    assert vidtool("tokenize", clip, *plain, "-o", tmp_path / "explicit.safetensors").returncode == 0
    assert vidtool("tokenize", clip, "--model", folder, "--frames", "16", "-o", tmp_path / "w.safetensors").returncode == 0
    assert tensorfile.load(tmp_path / "w.safetensors").main.equal(tensorfile.load(tmp_path / "explicit.safetensors").main)
    with pytest.raises(ValueError, match="window_frames"):
        dataclasses.replace(model.config, window_frames=6)
