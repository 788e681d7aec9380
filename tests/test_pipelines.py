"""The pipelines layer (vidtool/pipelines) on the bundled models: the default sampler gives what the
networks' own sampling loops gave before they moved out (written out here as the reference), every
named scheduler samples every Gaussian family, and the stages expose them."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from conftest import ROOT, one_line_error
from vidtool import checkpoint, tensorfile
from vidtool.diffusion.guidance import cfg_weight, guide
from vidtool.diffusion.schedulers import SAMPLERS
from vidtool.model_store import default_model
from vidtool.pipelines import fusionframes, harivo, lamd

PROMPT = "a red circle moving right"
ODE_SAMPLERS = ("ddim", "dpm++", "unipc", "euler")  # deterministic solvers of the probability-flow ODE


@pytest.fixture(scope="module")
def text():
    from vidtool.text import TextEncoder

    encoder = TextEncoder(None)
    prompt, null = encoder.encode([PROMPT]), encoder.encode([""])
    return prompt.tokens, prompt.mask, null.tokens[0], null.mask[0]


@pytest.fixture(scope="module")
def keyframe_model():
    return checkpoint.from_pretrained(default_model("generate"))


def _keyframes(model, text, steps: int, scheduler: str = "ddim", seed: int = 0) -> torch.Tensor:
    return fusionframes.sample_keyframes(model, *text, steps=steps, scheduler=scheduler,
                                         generator=[torch.Generator().manual_seed(seed)]).latents


def test_default_keyframe_sampling_is_the_ddim_loop_it_replaced_bit_for_bit(keyframe_model, text):
    """The loop `KeyframeModel.generate` ran before sampling moved to vidtool/pipelines, written out:
    DDIM (trailing spacing, eta 0), classifier-free guidance 5 in one batched call."""
    model, (tokens, mask, null_tokens, null_mask) = keyframe_model, text
    base = model.config.base
    x = torch.randn((1, base.latent_channels, model.config.keyframes, base.sample_size, base.sample_size),
                    generator=torch.Generator().manual_seed(0))
    scheduler = base.schedule.sampler("ddim")
    scheduler.set_timesteps(4)
    texts, masks = torch.cat([tokens, null_tokens[None]]), torch.cat([mask, null_mask[None]])
    with torch.no_grad():
        for t in scheduler.timesteps:
            both = model.predict(torch.cat([x, x]), torch.full((2,), int(t)), texts, masks,
                                 model.positions(x.shape[2]))
            cond, uncond = both.chunk(2)
            x = scheduler.step(guide(cond, uncond, cfg_weight(5.0)), t, x).prev_sample
    assert torch.equal(_keyframes(model, text, steps=4), x / base.latent_scale)


def test_default_interpolation_is_the_context_guided_ddim_loop_it_replaced_bit_for_bit(keyframe_model, text):
    """The loop `InterpolationModel.interpolate` ran before: the keyframes perturbed to tp (0), noise
    for the 3 in-betweens of each pair from the same generator, Eq. 5 context guidance w = 0.25, DDIM."""
    from vidtool.generators.interpolation import FRAMES_PER_GROUP, as_batch, interleave, perturb

    model = checkpoint.from_pretrained(default_model("interpolate"))
    keyframes = _keyframes(keyframe_model, text, steps=2)
    got = fusionframes.interpolate(model, keyframes, steps=3, generator=torch.Generator().manual_seed(7)).latents

    scale, (b, c, t, h, w) = model.config.latent_scale, keyframes.shape
    generator = torch.Generator().manual_seed(7)
    levels = torch.zeros(b, dtype=torch.long)
    cond = perturb(model.config.schedule, keyframes * scale, levels, generator)
    x = torch.randn((b, c, FRAMES_PER_GROUP * (t - 1), h, w), generator=generator)
    both = torch.cat([cond, torch.zeros_like(cond)])
    skips, levels = as_batch(3, 2 * b, "cpu"), torch.cat([levels, levels])
    scheduler = model.config.schedule.sampler("ddim")
    scheduler.set_timesteps(3)
    with torch.no_grad():
        for step_t in scheduler.timesteps:
            conditional, unconditional = model.predict(torch.cat([x, x]), as_batch(int(step_t), 2 * b, "cpu"), both,
                                                       skips, levels).chunk(2)
            x = scheduler.step(guide(conditional, unconditional, 0.25), step_t, x, generator=generator).prev_sample
    assert torch.equal(got, interleave(keyframes, x / scale))
    assert got.shape[2] == 4 * t - 3


def test_ode_samplers_at_10_steps_land_on_the_50_step_ddim_sample(keyframe_model, text):
    """DDIM (eta 0), DPM-Solver++, UniPC and Euler all integrate the same probability-flow ODE from
    the same noise, so with 10 steps each lands near a fine 50-step DDIM solution — much nearer than
    the starting noise is — while DDPM (ancestral) adds fresh noise each step and need not."""
    reference = _keyframes(keyframe_model, text, steps=50)
    noise_distance = (torch.randn(reference.shape, generator=torch.Generator().manual_seed(0))
                      / keyframe_model.config.base.latent_scale - reference).norm()
    for name in ODE_SAMPLERS:
        got = _keyframes(keyframe_model, text, steps=10, scheduler=name)
        assert torch.isfinite(got).all(), name
        assert (got - reference).norm() < 0.2 * noise_distance, name
    ddpm = _keyframes(keyframe_model, text, steps=10, scheduler="ddpm")
    assert torch.isfinite(ddpm).all() and not torch.equal(ddpm, _keyframes(keyframe_model, text, 10, "ddim"))


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_every_scheduler_samples_harivo_interpolation_and_lamd(name, keyframe_model, text):
    """v-prediction (interp), MG-guided epsilon (HARIVO) and the linear-beta DDPM of LaMD's DMG all
    run under every named scheduler and give finite results of the right shape."""
    generator = [torch.Generator().manual_seed(0)]
    video = harivo.generate(checkpoint.from_pretrained(default_model("harivo")), *text, steps=3, scheduler=name,
                            generator=generator).latents
    assert video.shape[2] == 16 and torch.isfinite(video).all()
    keyframes = _keyframes(keyframe_model, text, steps=2)
    interp = checkpoint.from_pretrained(default_model("interpolate"))
    between = fusionframes.interpolate(interp, keyframes, steps=3, scheduler=name,
                                       generator=torch.Generator().manual_seed(0)).latents
    assert between.shape[2] == 13 and torch.isfinite(between).all()
    assert torch.equal(between[:, :, ::4], keyframes)  # the keyframes pass through unchanged
    dmg, vae, _ = lamd.load_pair(default_model("lamd"), "cpu")
    image = torch.zeros(1, dmg.config.image_size, dmg.config.image_size, 3, dtype=torch.uint8)
    motion = lamd.image_to_video(dmg, vae, image, steps=3, scheduler=name, generator=generator)
    assert torch.isfinite(motion.motion).all()
    assert lamd.render(vae, motion.motion, motion.content).frames.shape[1] == vae.frames


def test_generate_takes_dpmpp_for_fusionframes_harivo_and_lamd(vidtool, tmp_path):
    from PIL import Image

    Image.new("RGB", (64, 64), (200, 40, 40)).save(tmp_path / "first.png")
    runs = {"fusionframes": [PROMPT], "harivo": [PROMPT], "lamd": ["--image", tmp_path / "first.png", "--text", PROMPT]}
    for family, args in runs.items():
        out = tmp_path / f"{family}.safetensors"
        result = vidtool("generate", *args, "--family", family, "--scheduler", "dpm++", "--steps", "10", "-o", out)
        assert result.returncode == 0, result.stderr.decode()
        tf = tensorfile.load(out)
        assert tf.params["sampler"] == "dpm++" and tf.params["steps"] == 10
        assert torch.isfinite(tf.main.float()).all()


def test_scheduler_and_mfi_mistakes_are_one_line_errors(vidtool, tmp_path):
    assert "unknown --scheduler 'heun'" in one_line_error(vidtool("generate", PROMPT, "--scheduler", "heun"))
    assert "belongs to the Gaussian families" in one_line_error(
        vidtool("generate", PROMPT, "--family", "motionaura", "--scheduler", "ddim"))
    keyframes = tmp_path / "k.safetensors"
    assert vidtool("generate", PROMPT, "--steps", "1", "-o", keyframes).returncode == 0
    assert "--method mfi has no bundled model" in one_line_error(vidtool("interpolate", keyframes, "--method", "mfi"))


def test_no_sampling_loop_is_left_in_the_networks_or_the_stages():
    """Samplers live in vidtool/diffusion and pipelines in vidtool/pipelines (issue: one place each)."""
    loop = re.compile(r"scheduler\.step\(|for .* in .*timesteps|masked import sample|import mitigating")
    for folder in ("vidtool/generators", "stages"):
        for path in sorted((ROOT / folder).glob("*.py")):
            hits = [line for line in path.read_text().splitlines() if loop.search(line)]
            assert not hits, (path.name, hits)


def test_every_stage_module_stays_thin():
    for path in sorted(Path(ROOT / "stages").glob("*.py")):
        assert len(path.read_text().splitlines()) <= 150, path.name
