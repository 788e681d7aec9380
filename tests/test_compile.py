"""`--compile` on the inference stages: routed to the network each stage calls step after step,
skipped with a one-line note where the machine cannot compile, and (slow) the same numbers as eager."""

from __future__ import annotations

import pytest
import torch

from stages.context import settings


@pytest.fixture
def compiling(monkeypatch):
    """`--compile` on, with torch.compile recorded (and left out: the wrapped callable is returned)."""
    compiled = []

    def record(fn, **kwargs):
        compiled.append(fn.__name__)
        return fn

    monkeypatch.setattr(settings, "compile", True)
    monkeypatch.setattr(torch, "compile", record)
    return compiled


def test_compile_flag_is_taken_after_the_inference_stages_names(vidtool):
    for stage in ("generate", "interpolate", "encode", "tokenize", "decode"):
        assert "--compile" in vidtool(stage, "--help").stdout.decode(), stage
    assert "--compile" not in vidtool("embed-text", "--help").stdout.decode()


def test_decode_compiles_the_decoder_and_generate_the_denoiser(compiling, tmp_path):
    from stages.decode import decode_file
    from stages.sample_prompts import sample
    from vidtool.model_store import default_model

    torch.set_num_threads(1)
    sample(["a red circle moving right"], default_model("generate"), str(tmp_path / "k.safetensors"), text_encoder=None,
           seed=0, steps=1, options={"frames": 2}, batch_size=1)
    assert compiling == ["predict"]
    decode_file(str(tmp_path / "k.safetensors"), str(tmp_path / "v.safetensors"), model=None, chunk=None, tile=None)
    assert compiling == ["predict", "decode"]


def test_compile_is_skipped_with_a_note_where_there_is_no_compiler(compiling, monkeypatch, capsys):
    from torch import nn

    from stages.context import compile_if_asked

    monkeypatch.setattr("shutil.which", lambda name: None)
    model = nn.Linear(2, 2)
    compile_if_asked(model, "forward", "cpu")
    assert compiling == [] and "forward" not in vars(model)
    err = capsys.readouterr().err
    assert "--compile skipped: no C++ compiler" in err and len(err.strip().splitlines()) == 1


@pytest.mark.slow  # Inductor builds the keyframe U-Net's C++ kernels: 285 s on the shared 2-core machine
def test_a_compiled_denoiser_predicts_what_the_eager_one_does():
    from vidtool import checkpoint
    from vidtool.compiling import compile_method
    from vidtool.model_store import default_model

    torch.set_num_threads(1)
    model = checkpoint.from_pretrained(default_model("generate"))
    g = torch.Generator().manual_seed(0)
    base = model.config.base
    args = (torch.randn(2, base.latent_channels, 2, base.sample_size, base.sample_size, generator=g),
            torch.tensor([10, 500]), torch.randn(2, 32, base.cross_attention_dim, generator=g),
            torch.ones(2, 32, dtype=torch.bool), model.positions(2))
    with torch.inference_mode():
        eager = model.predict(*args)
        assert compile_method(model, "predict", "cpu") is None
        compiled = model.predict(*args)
    # Fused kernels reorder float32 sums: agreement to rounding, not bit for bit.
    torch.testing.assert_close(compiled, eager, rtol=1e-4, atol=1e-4)
