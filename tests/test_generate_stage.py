"""`vidtool generate` / `vidtool sample-keyframes`: prompts → a keyframes tensor file for `interpolate`."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from conftest import one_line_error
from vidtool import checkpoint, tensorfile
from vidtool.generators.keyframes import KeyframeConfig, KeyframeModel
from vidtool.generators.t2i import T2IConfig, T2IModel
from vidtool.pipelines import fusionframes

# A test-sized T2I base over the real MiniLM tokens (384-d); the VAE tag only has to travel along.
BASE = T2IConfig(block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=8, norm_num_groups=8,
                 latent_scale=0.5, vae="movq-temporal@0123456789abcdef")


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    root = tmp_path_factory.mktemp("generators")
    torch.manual_seed(0)
    base = T2IModel(dataclasses.replace(BASE))
    checkpoint.save_pretrained(base, root / "t2i")
    keyframes = KeyframeModel(KeyframeConfig(base=dataclasses.replace(BASE), position_dim=16))
    keyframes.base.load_state_dict(base.state_dict())
    with torch.no_grad():  # trained-looking temporal blocks, so the clip path is exercised
        for p in keyframes.temporal.parameters():
            p.add_(0.05 * torch.randn_like(p))
    checkpoint.save_pretrained(keyframes, root / "keyframes")
    return {"t2i": root / "t2i", "keyframes": root / "keyframes", "root": root}


def test_generate_writes_unscaled_keyframes_where_each_item_is_its_prompt_sampled_alone(vidtool, models, tmp_path):
    from vidtool.text import TextEncoder

    prompts = ["a red circle moving right", "a blue square moving up", "a green triangle moving left"]
    (tmp_path / "prompts.txt").write_text("\n".join(prompts) + "\n\n")
    result = vidtool("generate", "--prompts", tmp_path / "prompts.txt", "--model", models["keyframes"], "--frames", "3",
                     "--steps", "2", "--cfg", "4", "--seed", "7", "--batch-size", "2")  # stdout: a pipe
    assert result.returncode == 0, result.stderr.decode()
    (tmp_path / "k.safetensors").write_bytes(result.stdout)
    tf = tensorfile.load(tmp_path / "k.safetensors", kinds=["keyframes"])
    assert tf.main.shape == (3, 4, 3, 8, 8)
    assert tf.model == BASE.vae and tf.extra["generator"] == checkpoint.model_tag(models["keyframes"])
    assert tf.fps == 8.0 / 4 and tf.seed == 7  # 8 fps clips, keyframes every 4th frame
    assert tf.prompts() == prompts
    assert tf.params == {"frames": 3, "steps": 2, "cfg": 4.0, "sampler": "ddim"}
    summary = [line for line in result.stderr.decode().splitlines() if line.strip()][-1]
    assert summary.startswith("keyframes 3 × 3 frames")

    model = checkpoint.from_pretrained(models["keyframes"])
    encoder = TextEncoder()
    null = encoder.encode([""])
    for i, prompt in enumerate(prompts):  # item i alone, from seed 7 + i, unscaled by the model itself
        text = encoder.encode([prompt])
        alone = fusionframes.sample_keyframes(model, text.tokens, text.mask, null.tokens[0], null.mask[0], frames=3, steps=2, cfg=4.0,
                               generator=[torch.Generator().manual_seed(7 + i)]).latents
        # A batch and a single item differ only by matmul rounding (about 1e-5 here); another seed
        # or a missing unscale would differ by O(1).
        torch.testing.assert_close(tf.main[i:i + 1], alone, rtol=0, atol=1e-3)
    assert not torch.allclose(tf.main[0], tf.main[1], atol=0.1)


def test_sample_keyframes_is_the_generate_stage(vidtool):
    result = vidtool("sample-keyframes", "--help")
    assert result.returncode == 0 and b"--frames" in result.stdout and b"--family" in result.stdout


@pytest.mark.parametrize(("args", "message"), [
    (["", "--model", "{keyframes}"], "prompt is empty"),
    (["a red circle", "--frames", "0", "--model", "{keyframes}"], "Invalid value for '--frames': Input should be greater than or equal to 1"),
    (["a red circle", "--steps", "0", "--model", "{keyframes}"], "Invalid value for '--steps': Input should be greater than or equal to 1"),
    (["a red circle", "--family", "sora", "--model", "{keyframes}"], "unknown --family 'sora'"),
    (["a red circle", "--model", "{t2i}"], "is a t2i model, not a text-to-video generator"),
    (["a red circle", "--family", "harivo", "--model", "{keyframes}"], "needs a harivo model"),
], ids=["empty-prompt", "no-frames", "no-steps", "unknown-family", "t2i-folder", "wrong-family"])
def test_bad_input_exits_2_with_one_line(vidtool, models, args, message):
    args = [a.format(**models) for a in args]
    assert message in one_line_error(vidtool("generate", *args, "-o", models["root"] / "never.safetensors"))
    assert not (models["root"] / "never.safetensors").exists()
