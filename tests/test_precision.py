"""Inference precision (`--dtype`): every inference stage runs in bf16 on the CPU within a stated
tolerance of its fp32 output, with the bundled models; `--dtype fp16` on the CPU, an unknown name
and `--device cuda` without a GPU are one-line errors.

Tolerances. bf16 keeps 8 significant bits, so one rounding moves a value by up to u = 2^-8 ≈ 0.39 %
of itself. The weights are rounded once and every layer's output again; one call of these networks
lands 1–2 u from its fp32 result (1.2 u and 1.6 u measured for the keyframe and HARIVO U-Nets), and
the bounds allow a multiple of that:

- continuous outputs of one pass or of unguided sampling (encode's latents, interpolation, whose
  context guidance w = 0.25 scales errors by at most 1 + 2w): relative L2 error ≤ 0.05 (13 u);
- guided samples (keyframes, HARIVO, LaMD motion): classifier-free guidance s·cond − (s − 1)·uncond
  scales the calls' errors by up to 2s − 1 (9 at the keyframe model's s = 5), so ≤ 0.1 (26 u);
- decoded video: PSNR ≥ 40 dB, an RMS error of 2.55 levels, 1 % of the pixel range;
- LPIPS, a mean over many per-feature terms each off by about u: relative error ≤ 0.01;
- token ids: a quantizer's sign or argmin flips only where the encoder's error crosses a decision
  boundary; ≥ 90 % of the ids stay the same. Sampled ids (MotionAura's masked diffusion) are draws:
  one near-tie decided the other way changes every later step, so the bound is on what is drawn
  from, the model's log-probabilities: within 0.1 nats (every probability within ±10.5 %).

The measured differences are inside these bounds with room (the change that added them reports
each).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import one_line_error
from stage_runner import run_stage
from vidtool import tensorfile
from vidtool.data.shapes import combinations, render_shape_clip, sample_shape_clip
from vidtool.tensorfile import TensorFile

LATENTS_REL = 0.05
GUIDED_REL = 0.1
VIDEO_PSNR = 40.0
LPIPS_REL = 0.01
TOKENS_AGREE = 0.9
LOGPROB_NATS = 0.1
PROMPT = "a red circle moving right"


def relative_error(fp32: torch.Tensor, bf16: torch.Tensor) -> float:
    return float((bf16.double() - fp32.double()).norm() / fp32.double().norm())


def psnr(fp32: torch.Tensor, bf16: torch.Tensor) -> float:
    mse = float(((bf16.double() - fp32.double()) ** 2).mean())
    return 10 * np.log10(255**2 / max(mse, 1e-10))


def in_both(tmp_path, name: str, *args) -> tuple[tensorfile.TensorFile, tensorfile.TensorFile]:
    """`vidtool STAGE ARGS --dtype fp32|bf16 -o …` in this process: the two outputs."""
    outputs = []
    for dtype in ("fp32", "bf16"):
        out = tmp_path / f"{name}-{dtype}.safetensors"
        assert run_stage(*args, "--dtype", dtype, "-o", out) == 0, (name, dtype)
        outputs.append(tensorfile.load(out))
    return outputs[0], outputs[1]


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """A shapes clip (what the bundled models were trained on) as a video file, its first frame and
    the hole and sketch of its shape for inpainting."""
    root = tmp_path_factory.mktemp("precision")
    clip = render_shape_clip(sample_shape_clip(0, 0, combinations()), frames=8, size=32)
    tensorfile.save(TensorFile(kind="video", tensors={"video": torch.from_numpy(clip.video)[None]}, fps=8.0,
                               prompt=PROMPT), root / "clip.safetensors")
    Image.fromarray(clip.video[0]).save(root / "first.png")
    np.savez(root / "hole.npz", mask=clip.mask)
    Image.fromarray(np.where(clip.sketch[0] > 0, 0, 255).astype(np.uint8)).save(root / "sketch.png")
    return {"root": root, "clip": root / "clip.safetensors", "first": root / "first.png", "mask": clip.mask.astype(bool),
            "hole": root / "hole.npz", "sketch": root / "sketch.png"}


def test_encode_and_decode_in_bf16_stay_within_tolerance_and_write_float32(shapes, tmp_path):
    latents32, latents16 = in_both(tmp_path, "encode", "encode", shapes["clip"])
    assert latents16.main.dtype == torch.float32  # tensor files do not depend on the precision
    assert relative_error(latents32.main, latents16.main) <= LATENTS_REL
    video32, video16 = in_both(tmp_path, "decode", "decode", tmp_path / "encode-fp32.safetensors")
    assert psnr(video32.main, video16.main) >= VIDEO_PSNR


def test_tokenize_and_decode_tokens_in_bf16_stay_within_tolerance(shapes, tmp_path):
    tokens32, tokens16 = in_both(tmp_path, "tokenize", "tokenize", shapes["clip"])
    assert float((tokens32.main == tokens16.main).double().mean()) >= TOKENS_AGREE
    video32, video16 = in_both(tmp_path, "decode", "decode", tmp_path / "tokenize-fp32.safetensors")
    assert psnr(video32.main, video16.main) >= VIDEO_PSNR


def test_fusionframes_keyframes_and_interpolation_in_bf16_stay_within_tolerance(tmp_path):
    keyframes32, keyframes16 = in_both(tmp_path, "keyframes", "generate", PROMPT, "--steps", "2")
    assert relative_error(keyframes32.main, keyframes16.main) <= GUIDED_REL
    latents32, latents16 = in_both(tmp_path, "interp", "interpolate", tmp_path / "keyframes-fp32.safetensors",
                                   "--steps", "2")
    assert relative_error(latents32.main, latents16.main) <= LATENTS_REL


def test_harivo_in_bf16_stays_within_tolerance(tmp_path):
    # Without MG guidance: its weight exp(-d²/s)/s of frame differences d amplifies any change of the
    # predictions, fp32's own included (predictions × (1 + 4e-3 noise) move an alpha = 40 sample 8×
    # as far as an alpha = 0 one); that is the sampler's sensitivity, not the precision's.
    latents32, latents16 = in_both(tmp_path, "harivo", "generate", PROMPT, "--family", "harivo", "--steps", "2",
                                   "--alpha", "0")
    assert relative_error(latents32.main, latents16.main) <= GUIDED_REL


def test_lamd_motion_and_its_rendering_in_bf16_stay_within_tolerance(shapes, tmp_path):
    motion32, motion16 = in_both(tmp_path, "lamd", "generate", "--family", "lamd", "--image", shapes["first"],
                                 "--text", PROMPT, "--steps", "5")
    assert relative_error(motion32["motion"], motion16["motion"]) <= GUIDED_REL
    video32, video16 = in_both(tmp_path, "render", "decode", tmp_path / "lamd-fp32.safetensors")
    assert psnr(video32.main, video16.main) >= VIDEO_PSNR


def test_motionaura_draws_from_bf16_log_probabilities_within_tolerance(shapes, tmp_path):
    from vidtool import checkpoint, model_store
    from vidtool.precision import autocast_like
    from vidtool.text import TextEncoder

    text = TextEncoder().encode([PROMPT])
    log_probs = []
    for dtype in (torch.float32, torch.bfloat16):
        model = checkpoint.from_pretrained(model_store.default_model("spectral"), dtype=dtype)
        c = model.config
        masked = torch.full((1, c.token_frames, c.token_height, c.token_width), model.mask_id)
        with torch.inference_mode(), autocast_like(model):  # as the pipeline calls it, at z_T (all masked)
            logits = model(masked, torch.ones(1), torch.full((1,), c.fps), text.tokens.to(dtype), text.mask)
        log_probs.append(logits.float().log_softmax(-1))
    assert float((log_probs[0] - log_probs[1]).abs().max()) <= LOGPROB_NATS
    tokens32, tokens16 = in_both(tmp_path, "motionaura", "generate", PROMPT, "--family", "motionaura", "--steps", "2")
    assert tokens16.main.shape == tokens32.main.shape and tokens16.main.dtype == torch.int32
    # The inpainting stage runs in bf16 too; outside the hole it returns the input's bytes in any precision.
    painted32, painted16 = in_both(tmp_path, "inpaint", "inpaint", shapes["clip"], "--mask", shapes["hole"],
                                   "--sketch", shapes["sketch"], "--prompt", "a blue square", "--steps", "2")
    outside = ~torch.from_numpy(shapes["mask"])
    assert torch.equal(painted16.main[0][outside], painted32.main[0][outside])


def test_evaluate_runs_lpips_in_bf16_within_tolerance_and_says_so(shapes, tmp_path):
    import json

    from test_metrics_lpips import ALEX_CHANNELS, ALEXNET_KEYS

    generator = torch.Generator().manual_seed(0)
    torch.save({f"features.{k}": torch.randn(shape, generator=generator) * 0.05 for k, shape in ALEXNET_KEYS.items()},
               tmp_path / "alexnet.pth")
    torch.save({f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=generator)
                for i, c in enumerate(ALEX_CHANNELS)}, tmp_path / "alex.pth")
    video = tensorfile.load(shapes["clip"]).main
    tensorfile.save(TensorFile(kind="video", tensors={"video": video.flip(1).contiguous()}), tmp_path / "ref.safetensors")
    reports = []
    for dtype in ("fp32", "bf16"):
        assert run_stage("evaluate", shapes["clip"], "--ref", tmp_path / "ref.safetensors", "--metric", "lpips",
                         "--lpips-backbone", tmp_path / "alexnet.pth", "--lpips-heads", tmp_path / "alex.pth",
                         "--dtype", dtype, "-o", tmp_path / f"{dtype}.json") == 0
        reports.append(json.loads((tmp_path / f"{dtype}.json").read_text())["metrics"]["lpips"])
    assert abs(reports[1]["value"] - reports[0]["value"]) <= LPIPS_REL * reports[0]["value"]
    assert "dtype" not in reports[0]["models"]["lpips"] and reports[1]["models"]["lpips"]["dtype"] == "bfloat16"


def test_dtype_before_or_after_the_stage_name_and_auto_on_the_cpu(shapes, tmp_path):
    latents = tmp_path / "z.safetensors"
    assert run_stage("--dtype", "bf16", "encode", shapes["clip"], "-o", latents) == 0
    outputs = {}
    for name, args in {"auto": ["decode"], "fp32": ["decode", "--dtype", "fp32"],
                       "before": ["--dtype", "bf16", "decode"], "after": ["--dtype", "fp32", "decode", "--dtype", "bf16"],
                       "device": ["decode", "--device", "cpu", "--dtype", "bf16"]}.items():
        assert run_stage(*args, latents, "-o", tmp_path / f"{name}.safetensors") == 0, name
        outputs[name] = tensorfile.load(tmp_path / f"{name}.safetensors").main
    assert torch.equal(outputs["auto"], outputs["fp32"])  # auto is fp32 on the CPU
    assert torch.equal(outputs["before"], outputs["after"]) and torch.equal(outputs["after"], outputs["device"])
    assert not torch.equal(outputs["fp32"], outputs["before"])  # the option after the name wins


def test_a_model_cast_to_bf16_keeps_its_quantizer_in_float32_and_gets_codes_in_its_input_dtype():
    from vidtool import checkpoint, model_store

    model = checkpoint.from_pretrained(model_store.default_model("tokenize"), dtype=torch.bfloat16)
    assert {p.dtype for p in model.encoder.parameters()} == {torch.bfloat16}
    assert {t.dtype for t in model.quantizer.buffers() if t.is_floating_point()} == {torch.float32}
    # It decides in float32 and hands its codes back in the dtype they came in (what the decoder
    # computes in, under FSDP's bf16 policy too).
    z = torch.randn(2, model.quantizer.bits, 1, 4, 4, generator=torch.Generator().manual_seed(0)).bfloat16()
    out = model.quantizer(z)
    assert out.quantized.dtype == torch.bfloat16 and torch.equal(out.indices, model.quantizer(z.float()).indices)


def test_auto_picks_bf16_on_gpus_that_have_it_fp16_on_others_fp32_on_the_cpu(monkeypatch):
    from vidtool.errors import UserError
    from vidtool.precision import resolve_dtype

    assert resolve_dtype("auto", "cpu") == torch.float32 and resolve_dtype("bf16", "cpu") == torch.bfloat16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert resolve_dtype("auto", "cuda") == torch.bfloat16 and resolve_dtype("fp16", "cuda") == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *a, **k: "Tesla V100")
    assert resolve_dtype("auto", "cuda") == torch.float16
    with pytest.raises(UserError, match="V100 has no bfloat16"):
        resolve_dtype("bf16", "cuda")


def test_a_cuda_device_turns_tf32_on(monkeypatch):
    from stages import context

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(context.settings, "device", "cuda")
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        assert context.resolve_device() == "cuda"
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


def test_fp16_on_the_cpu_is_a_one_line_error(vidtool, shapes):
    line = one_line_error(vidtool("--device", "cpu", "encode", shapes["clip"], "--dtype", "fp16", "-o", "-"))
    assert "fp16" in line and "bf16" in line


def test_an_unknown_dtype_is_a_one_line_error_before_or_after_the_stage_name(vidtool, shapes):
    assert "unknown --dtype 'half'" in one_line_error(vidtool("decode", "--dtype", "half", shapes["clip"]))
    assert "unknown --dtype 'fp64'" in one_line_error(vidtool("info", shapes["clip"], env={"VIDTOOL_DTYPE": "fp64"}))


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_device_cuda_without_a_gpu_is_a_one_line_error_after_the_stage_name(vidtool, shapes):
    assert "no CUDA GPU" in one_line_error(vidtool("encode", shapes["clip"], "--device", "cuda", "--dtype", "bf16"))
