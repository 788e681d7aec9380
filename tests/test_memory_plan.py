"""--max-memory planning for encode/decode and the one retry after an out-of-memory error."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from torch import nn

from vidtool.autoencoders import apply
from vidtool.memory import LIVE_COPIES, chunk_bytes, parse_memory, plan, smaller, with_retry
from vidtool.autoencoders.tiling import Tiling
from vidtool.errors import UserError


class Widest(nn.Module):
    """Stands in for an autoencoder: 4x in time, 8x in space, widest layer 64 channels."""

    temporal_factor, spatial_factor = 4, 8

    def __init__(self):
        super().__init__()
        self.a, self.b = nn.Conv3d(3, 64, 1), nn.Conv2d(64, 16, 1)


def test_parse_memory_reads_sizes_and_auto():
    assert parse_memory("6G") == 6 << 30 and parse_memory("512M") == 512 << 20 and parse_memory("1.5GiB") == 3 << 29
    assert parse_memory("800000") == 800_000 and parse_memory("auto") is None
    for bad in ("lots", "-1G", "0", "6X"):
        with pytest.raises(UserError, match="--max-memory"):
            parse_memory(bad)


def test_chunk_estimate_is_the_closed_form():
    model = Widest()
    # (chunk 2 + 2 margins of 4) latent frames x tf 4 = 40 frames of (8 x 8 latent px x sf² 64) pixels
    expected = LIVE_COPIES * 4 * 1 * (2 + 8) * 4 * (8 * 8 * 64) * 64
    assert chunk_bytes(model, 1, Tiling(chunk=2), 8, 8) == expected


def test_plan_takes_the_largest_chunk_then_tile_that_fits():
    model = Widest()
    whole = lambda chunk: chunk_bytes(model, 2, Tiling(chunk=chunk), 32, 32)
    assert plan(model, 2, 16, 32, 32, 10**15, spatial=True) == Tiling(chunk=4)  # the default start bounds it
    assert plan(model, 2, 16, 32, 32, whole(2), spatial=True) == Tiling(chunk=2)
    assert plan(model, 2, 16, 32, 32, whole(2) - 1, spatial=True) == Tiling(chunk=1)
    # Below one whole-frame chunk, decode tiles space: a 16-px tile costs a quarter of 32 px.
    assert plan(model, 2, 16, 32, 32, whole(1) // 4, spatial=True) == Tiling(chunk=1, tile=16, overlap=4)
    assert plan(model, 2, 16, 32, 32, whole(1) // 4, spatial=False) == Tiling(chunk=1)  # encode keeps frames


def _oom_once(calls):
    def run(tiling):
        calls.append(tiling)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return "done"
    return run


def test_out_of_memory_retries_once_with_smaller_tiles_and_says_so():
    calls, said = [], []
    assert with_retry(_oom_once(calls), Tiling(chunk=4), 32, 32, spatial=True, what="decode", log=said.append) == "done"
    assert calls == [Tiling(chunk=4), Tiling(chunk=2)] and "retrying once with chunk 2" in said[0]
    assert smaller(Tiling(chunk=1), 32, 32, spatial=True) == Tiling(chunk=1, tile=16, overlap=4)
    assert smaller(Tiling(chunk=1), 32, 32, spatial=False) == Tiling(chunk=1, margin=2)

    def always(tiling):
        raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory")

    with pytest.raises(UserError, match="out of memory in decode even with chunk 2"):
        with_retry(always, Tiling(chunk=4), 32, 32, spatial=True, what="decode", log=said.append)
    with pytest.raises(ValueError):  # other errors pass through untouched, with no retry
        with_retry(lambda t: (_ for _ in ()).throw(ValueError("bug")), Tiling(), 8, 8, spatial=True, what="x")


def test_decode_stage_survives_a_simulated_out_of_memory(tmp_path, monkeypatch, capsys):
    from stages.autoencode import load_encoder
    from stages.decode import decode_file
    from vidtool import tensorfile

    torch.set_num_threads(1)
    encoder = load_encoder(None, "encode")
    clip = SimpleNamespace(frames=np.random.default_rng(0).integers(0, 256, (1, 8, 64, 64, 3), dtype=np.uint8),
                           fps=8.0, prompt=None, parent="test")
    tensorfile.save(encoder.encode(clip, 4), tmp_path / "z.safetensors")
    decode_file(str(tmp_path / "z.safetensors"), str(tmp_path / "plain.safetensors"), model=None, chunk=4, tile=None)

    real, seen = apply.decode_frames, []

    def fails_once(model, latents, tiling, device):
        seen.append(tiling)
        if len(seen) == 1:
            raise torch.OutOfMemoryError("simulated")
        return real(model, latents, tiling, device)

    monkeypatch.setattr(apply, "decode_frames", fails_once)
    decode_file(str(tmp_path / "z.safetensors"), str(tmp_path / "retried.safetensors"), model=None, chunk=4, tile=None,
                max_memory="auto")
    assert [t.chunk for t in seen] == [seen[0].chunk, max(1, seen[0].chunk // 2)]
    assert "out of memory" in capsys.readouterr().err
    plain, retried = (tensorfile.load(tmp_path / f"{n}.safetensors").main for n in ("plain", "retried"))
    assert plain.shape == retried.shape == (1, 8, 64, 64, 3)
    # Chunks keep 4 latent frames of context each side (Tiling.margin), which covers this clip.
    assert (plain.int() - retried.int()).abs().max() <= 1


def test_generate_splits_a_batch_that_runs_out_of_memory_and_gets_the_same_samples(tmp_path, monkeypatch, capsys):
    from stages.sample_prompts import sample
    from vidtool import tensorfile
    from vidtool.memory import retry_in_halves
    from vidtool.model_store import default_model
    from vidtool.pipelines import fusionframes

    torch.set_num_threads(1)
    prompts = ["a red circle moving right", "a blue square moving up", "a red square moving left"]
    folder = default_model("generate")
    args = dict(text_encoder=None, seed=0, steps=2, options={"frames": 2}, batch_size=8)
    sample(prompts, folder, str(tmp_path / "whole.safetensors"), **args)
    real, sizes = fusionframes.sample_keyframes, []

    def out_of_memory_above_one(model, tokens, *a, **k):
        sizes.append(tokens.shape[0])
        if tokens.shape[0] > 2:
            raise torch.OutOfMemoryError("simulated")
        return real(model, tokens, *a, **k)

    monkeypatch.setattr(fusionframes, "sample_keyframes", out_of_memory_above_one)
    sample(prompts, folder, str(tmp_path / "split.safetensors"), **args)
    assert sizes == [3, 1, 2] and "two batches of 1 and 2" in capsys.readouterr().err
    whole, split = (tensorfile.load(tmp_path / f"{n}.safetensors").main for n in ("whole", "split"))
    # Batch-independent sampling: the same noise and prompts, so only float rounding differs, and
    # the CPU kernels round differently per batch size (3.7e-5 after 25 DDIM steps on this CPU).
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-4)
    with pytest.raises(UserError, match="batch of 1"):
        retry_in_halves(lambda b: (_ for _ in ()).throw(torch.OutOfMemoryError("x")), [0], what="generate")


def test_plan_batch_fits_weights_plus_samples_under_the_budget():
    from vidtool.memory import plan_batch, sample_bytes, weight_bytes

    model = Widest()
    weights = (3 * 64 + 64 + 64 * 16 + 16) * 4  # two convolutions' float32 weights and biases
    assert weight_bytes(model) == weights
    per_sample = LIVE_COPIES * 4 * 2 * 100 * 64  # 100 positions, twice under classifier-free guidance
    assert sample_bytes(model, 100) == per_sample
    assert plan_batch(model, 100, weights + 3 * per_sample, 8) == 3
    assert plan_batch(model, 100, weights + 3 * per_sample - 1, 8) == 2
    assert plan_batch(model, 100, 10**12, 8) == 8  # never more than asked for
    assert plan_batch(model, 100, weights, 8) == 1  # not even one fits: try one, the retry has the last word


class DeviceMoves:
    """Records every `nn.Module.to` call's target and keeps weak references to the text encoder's
    networks. The stage runs on the device "cpu:0", a distinct name for the host's memory, so a move
    to the device and a move back to the host read differently in the record."""

    def __init__(self, monkeypatch):
        import weakref

        import stages.context
        from vidtool import text

        self.moves, self.encoders = [], []
        real_to, real_init = nn.Module.to, text.TextEncoder.__init__

        def to(module, *args, **kwargs):
            target = next((a for a in (*args, kwargs.get("device")) if isinstance(a, (str, torch.device))), None)
            if target is not None:
                self.moves.append((type(module).__name__, str(target)))
            return real_to(module, *args, **kwargs)

        def init(encoder, *args, **kwargs):
            real_init(encoder, *args, **kwargs)
            self.encoders.append(weakref.ref(encoder.model))

        monkeypatch.setattr(nn.Module, "to", to)
        monkeypatch.setattr(text.TextEncoder, "__init__", init)
        monkeypatch.setattr(stages.context, "resolve_device", lambda: "cpu:0")

    def on_device(self, name: str) -> bool:
        """Whether the last move of a module of class `name` was to the device."""
        return [target for cls, target in self.moves if cls == name][-1] == "cpu:0"

    def text_encoder_freed(self) -> bool:
        return bool(self.encoders) and all(ref() is None for ref in self.encoders)


def test_generate_max_memory_splits_prompts_frees_the_text_encoder_and_keeps_the_samples(tmp_path, monkeypatch, capsys):
    from stages.sample_prompts import sample
    from vidtool import checkpoint, tensorfile
    from vidtool.memory import sample_bytes, weight_bytes
    from vidtool.model_store import default_model
    from vidtool.pipelines import fusionframes

    torch.set_num_threads(1)
    prompts = ["a red circle moving right", "a blue square moving up", "a red square moving left"]
    folder = default_model("generate")
    args = {"text_encoder": None, "seed": 0, "steps": 2, "options": {"frames": 2}, "batch_size": 8}
    sample(prompts, folder, str(tmp_path / "whole.safetensors"), **args)

    model = checkpoint.from_pretrained(folder)
    positions = 2 * model.config.base.sample_size**2  # 2 keyframes of the latent grid
    budget = weight_bytes(model) + 2 * sample_bytes(model, positions)  # room for two prompts at a time
    moves, real, seen = DeviceMoves(monkeypatch), fusionframes.sample_keyframes, []

    def denoiser(model, tokens, *a, **k):
        seen.append((tokens.shape[0], moves.text_encoder_freed(), moves.on_device(type(model).__name__)))
        return real(model, tokens, *a, **k)

    monkeypatch.setattr(fusionframes, "sample_keyframes", denoiser)
    sample(prompts, folder, str(tmp_path / "split.safetensors"), **args, max_memory=str(budget))
    # Sub-batches of 2 and 1, each sampled with the generator on the device and the text encoder gone.
    assert seen == [(2, True, True), (1, True, True)]
    assert "2 prompt(s) at a time" in capsys.readouterr().err
    whole, split = (tensorfile.load(tmp_path / f"{n}.safetensors").main for n in ("whole", "split"))
    # Item i's noise comes from seed + i alone and every prompt is embedded as in the unsplit run, so
    # only the denoiser's batch size differs, which the CPU kernels round differently (as above).
    torch.testing.assert_close(split, whole, rtol=0, atol=1e-4)


def test_lamd_generate_puts_text_encoder_content_encoder_and_dmg_on_the_device_one_at_a_time(tmp_path, monkeypatch):
    from PIL import Image

    from stages.generate_motion import generate_motion
    from vidtool.model_store import default_model
    from vidtool.pipelines import lamd

    torch.set_num_threads(1)
    folder = default_model("lamd")
    Image.fromarray(np.full((64, 64, 3), 128, np.uint8)).save(tmp_path / "first.png")
    moves, real, seen = DeviceMoves(monkeypatch), lamd.sample_motion, []

    def denoiser(dmg, content, **k):
        seen.append((moves.text_encoder_freed(), moves.on_device("MCDVAE"), moves.on_device(type(dmg).__name__)))
        return real(dmg, content, **k)

    monkeypatch.setattr(lamd, "sample_motion", denoiser)
    generate_motion(tmp_path / "first.png", str(tmp_path / "m.safetensors"), folder=folder,
                    text="a red circle moving right", label=None, frames=None, seed=0, steps=2, cfg=None,
                    text_encoder=None)  # the bundled dmg takes text
    assert ("MCDVAE", "cpu:0") in moves.moves  # the content encoder did run on the device, and left it
    assert seen == [(True, False, True)]
