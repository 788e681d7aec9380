"""`vidtool interpolate`: keyframes or latents in, 4T - 3 latents out, run as a user runs it."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from tests.conftest import one_line_error
from vidtool import checkpoint, tensorfile
from vidtool.generators.interpolation import InterpolationConfig, InterpolationModel
from vidtool.generators.t2i import T2IConfig, T2IModel

VAE = "movq-temporal@0123456789abcdef"
BASE = T2IConfig(block_out_channels=(32, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=16, cross_attention_dim=32,
                 norm_num_groups=8, latent_scale=0.5, vae=VAE)


@pytest.fixture(scope="module")
def interp_folder(tmp_path_factory):
    torch.manual_seed(0)
    base = T2IModel(replace(BASE))
    model = InterpolationModel.from_base(base, InterpolationConfig(base=replace(BASE), latent_scale=0.5, vae=VAE))
    return checkpoint.save_pretrained(model, tmp_path_factory.mktemp("models") / "interp")


def keyframes_file(path, *, model=VAE, frames=3):
    tf = tensorfile.TensorFile(kind="keyframes", tensors={"latents": torch.randn(2, 4, frames, 8, 8)}, model=model,
                               fps=2.0, seed=7, params={"frames": frames}, extra={"model_path": "/models/movq"})
    tf.set_prompts(["a red circle moving right", "a blue square"])
    tensorfile.save(tf, path)
    return tensorfile.load(path)


def test_interpolate_twice_from_stdin_writes_latents_at_sixteen_times_the_rate(vidtool, interp_folder, tmp_path):
    """--times 2: T -> 4T - 3 with s = 3, then again with s = 1 (§5); keyframes, model record and prompts kept."""
    source = keyframes_file(tmp_path / "key.safetensors", frames=2)
    result = vidtool("interpolate", "-", "-o", tmp_path / "z.safetensors", "--model", interp_folder, "--steps", "1",
                     "--times", "2", "--seed", "1", input=(tmp_path / "key.safetensors").read_bytes())
    assert result.returncode == 0, result.stderr.decode()
    out = tensorfile.load(tmp_path / "z.safetensors", kinds=["latents"])
    assert out.main.shape == (2, 4, 4 * (4 * 2 - 3) - 3, 8, 8) and out.main.dtype == torch.float32
    assert torch.equal(out.main[:, :, ::16], source.main), "the keyframes stay where they were"
    assert (out.model, out.fps, out.seed, out.parents) == (VAE, 32.0, 1, [source.digest])
    assert out.extra["model_path"] == "/models/movq"
    assert out.extra["generator"] == checkpoint.model_tag(interp_folder)
    assert out.prompts() == source.prompts()
    assert out.params["frames"] == 17 and out.params["skip"] == [3, 1] and out.params["guidance"] == 0.25


def test_interpolate_ends_with_one_line_saying_what_it_wrote(vidtool, interp_folder, tmp_path):
    """Like encode/decode: frames in -> frames out, the shape and where, on stderr; none with --quiet."""
    keyframes_file(tmp_path / "key.safetensors", frames=3)
    args = [tmp_path / "key.safetensors", "--model", interp_folder, "--steps", "1"]
    to_file = vidtool("interpolate", *args, "-o", tmp_path / "z.safetensors")
    assert to_file.returncode == 0, to_file.stderr.decode()
    line = to_file.stderr.decode().strip().splitlines()[-1]
    assert line.startswith(f"wrote {tmp_path / 'z.safetensors'}: latents 2×4×9×8×8, 3 → 9 frames, 2 → 8 fps; took ")
    assert line.endswith(" s")
    piped = vidtool("interpolate", *args)  # to stdout: the data there, the line still on stderr
    assert piped.returncode == 0, piped.stderr.decode()
    assert piped.stderr.decode().strip().splitlines()[-1].startswith("wrote stdout: latents 2×4×9×8×8, 3 → 9 frames")
    (tmp_path / "piped.safetensors").write_bytes(piped.stdout)
    assert tensorfile.load(tmp_path / "piped.safetensors").main.shape == (2, 4, 9, 8, 8)
    quiet = vidtool("--quiet", "interpolate", *args, "-o", tmp_path / "q.safetensors")
    assert quiet.returncode == 0 and quiet.stderr == b""
    assert (tmp_path / "q.safetensors").is_file()


def test_interpolate_refuses_latents_of_another_autoencoder(vidtool, interp_folder, tmp_path):
    keyframes_file(tmp_path / "key.safetensors", model="cm-vae@ffffffffffffffff")
    result = vidtool("interpolate", tmp_path / "key.safetensors", "-o", tmp_path / "z.safetensors",
                     "--model", interp_folder)
    line = one_line_error(result)
    assert "cm-vae@ffffffffffffffff" in line and VAE in line
    assert not (tmp_path / "z.safetensors").exists()


def test_interpolate_refuses_a_video_file_with_a_hint_to_encode_it(vidtool, interp_folder, tmp_path):
    video = tensorfile.TensorFile(kind="video", tensors={"video": torch.zeros(1, 4, 8, 8, 3, dtype=torch.uint8)})
    tensorfile.save(video, tmp_path / "video.safetensors")
    result = vidtool("interpolate", tmp_path / "video.safetensors", "--model", interp_folder, "-o",
                     tmp_path / "z.safetensors")
    assert "vidtool encode" in one_line_error(result)


def test_interpolate_refuses_a_model_of_the_other_method(vidtool, interp_folder, tmp_path):
    keyframes_file(tmp_path / "key.safetensors")
    result = vidtool("interpolate", tmp_path / "key.safetensors", "--model", interp_folder, "--method", "mfi",
                     "-o", tmp_path / "z.safetensors")
    assert "interp-mfi" in one_line_error(result)


def test_interpolate_help_shows_examples(vidtool):
    result = vidtool("interpolate", "--help")
    assert result.returncode == 0
    assert "vidtool interpolate keyframes.safetensors" in result.stdout.decode()
