"""The CUDA check the project carries (issue: GPU-ready, Build item 5): skipped without a GPU, run
on one with `python -m pytest -m cuda`. Each family's test-sized model trains a step in bf16 on the
GPU, every pipeline runs end to end with `--device cuda`, and the trainer's FSDP2 runs on one GPU.
The CPU emulation of the same paths is tests/test_gpu_emulation.py and
tests/test_checkpointing_every_family.py; timings are benchmarks/train_throughput.py's."""

from __future__ import annotations

import pytest
import torch

pytestmark = [pytest.mark.cuda,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]

PROMPT = "a red circle moving right"


@pytest.fixture(scope="module")
def cases():
    from test_checkpointing_every_family import CASES

    return CASES


def _to(batch: dict, device: str) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@pytest.mark.parametrize("name", ["mbq-vae", "cm-vae", "mcd-vae", "movq-temporal", "t2i", "keyframes", "interp",
                                  "interp-mfi", "harivo", "spectral", "spectral-inpaint", "dmg"])
def test_every_family_trains_a_bf16_step_on_the_gpu(name, cases):
    case = cases[name]
    model = case.model().cuda().train()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        loss = model.training_losses(_to(case.batch(), "cuda"), step=case.step, total_steps=case.total_steps)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is None or torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("family", ["fusionframes", "harivo", "motionaura"])
def test_text_to_video_pipelines_run_on_the_gpu(family, vidtool, tmp_path):
    from vidtool.video import read_video

    out = tmp_path / f"{family}.safetensors"
    assert vidtool("--device", "cuda", "generate", PROMPT, "--family", family, "-o", out).returncode == 0
    source = out
    if family == "fusionframes":
        source = tmp_path / "z.safetensors"
        assert vidtool("--device", "cuda", "interpolate", out, "-o", source).returncode == 0
    result = vidtool("--device", "cuda", "decode", source, "-o", tmp_path / "out.mp4")
    assert result.returncode == 0, result.stderr.decode()
    assert read_video(tmp_path / "out.mp4").frames.shape[0] >= 13


def test_lamd_inpainting_and_round_trips_run_on_the_gpu(vidtool, tmp_path):
    from PIL import Image

    from vidtool.data.shapes import combinations  # noqa: F401  (the shapes set is importable)

    assert vidtool("make-dataset", "shapes", "-n", "1", "--seed", "1", "-o", tmp_path / "d").returncode == 0
    clip = next((tmp_path / "d" / "clips").glob("*.mp4"))
    masks = next((tmp_path / "d" / "clips").glob("*.masks.npz"))
    Image.new("RGB", (64, 64), (200, 40, 40)).save(tmp_path / "first.png")
    runs = [
        ["generate", "--family", "lamd", "--image", tmp_path / "first.png", "--text", PROMPT, "-o", tmp_path / "m.safetensors"],
        ["decode", tmp_path / "m.safetensors", "-o", tmp_path / "lamd.mp4"],
        ["tokenize", clip, "-o", tmp_path / "t.safetensors"],
        ["decode", tmp_path / "t.safetensors", "-o", tmp_path / "tokens.mp4"],
        ["encode", clip, "-o", tmp_path / "z.safetensors"],
        ["decode", tmp_path / "z.safetensors", "-o", tmp_path / "latents.mp4"],
        ["inpaint", clip, "--mask", masks, "--sketch", masks, "--prompt", PROMPT, "-o", tmp_path / "inpaint.mp4"],
    ]
    for args in runs:
        result = vidtool("--device", "cuda", *args)
        assert result.returncode == 0, (args[0], result.stderr.decode())


def test_fsdp_trains_on_one_gpu(tmp_path):
    """The trainer under torchrun with one rank and --strategy fsdp, bf16, checkpointing."""
    import subprocess
    import sys

    from conftest import ROOT

    script = ROOT / "tests" / "distributed_toys.py"
    config = ('{"steps": 3, "batch_size": 2, "device": "cuda", "strategy": "fsdp", "precision": "bf16", '
              '"activation_checkpointing": true, "deterministic": false}')
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "1", str(script),
                             str(tmp_path / "run"), config], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (tmp_path / "run" / "model.safetensors").is_file()
