"""CUDA-path bugs reproduced on the CPU (issue: GPU-ready): a model on another device than its
inputs (the `meta` device stands in for an accelerator), the trainer's activation checkpointing, and
FSDP2 on a 1-rank gloo group with a bf16 mixed-precision policy."""

from __future__ import annotations


import pytest
import torch

from test_interpolation import MODELS, fresh, latents, trained_looking
from test_mbq_vae import moving_square, small_config
from vidtool.autoencoders.mbq_vae import MBQVAE
from vidtool.train import parallel


@pytest.mark.parametrize("quantizer", ["lfq", "vq"])
def test_token_ids_on_the_host_decode_with_the_tokenizer_on_another_device(quantizer):
    """`decode` reads token files to the host; the LFQ `powers` buffer / VQ codebook live with the model."""
    with torch.device("meta"):
        model = MBQVAE(small_config(quantizer=quantizer))
    ids = torch.randint(0, model.codebook_size, (1, 2, 4, 4))  # on the host, as tensorfile.load returns them
    codes = model.indices_to_latents(ids)
    assert codes.device.type == "meta" and codes.shape == (1, model.latent_channels, 2, 4, 4)


def _batch(b: int = 2, t: int = 5) -> dict:
    return {"latents": latents(b, t, seed=3)}


def _loss_and_grads(model, seed: int = 0) -> tuple[torch.Tensor, dict]:
    torch.manual_seed(seed)
    model.zero_grad()
    loss = model.training_losses(_batch(), step=0, total_steps=1)["loss"]
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.family)
def test_interpolation_trains_under_activation_checkpointing_with_the_same_loss_and_gradients(cls):
    """The temporal convs read the sequence length VideoUNet.forward sets; the recomputation in the
    backward pass runs after that forward returned, so the length must be reinstated for it."""
    model = trained_looking(fresh(cls)[1]).train()
    plain_loss, plain_grads = _loss_and_grads(model)
    assert parallel.checkpoint_activations(model) > 0
    loss, grads = _loss_and_grads(model)
    assert torch.equal(loss, plain_loss)
    assert grads.keys() == plain_grads.keys()
    for name in grads:
        torch.testing.assert_close(grads[name], plain_grads[name], rtol=1e-5, atol=1e-6, msg=name)


@pytest.mark.parametrize("cls", MODELS, ids=lambda c: c.family)
def test_interpolation_shards_under_fsdp2_with_bf16_compute(cls, one_rank_group):
    """FSDP2 refuses 0-d parameters: the temporal convs' alpha (Eq. 3) has shape [1]."""
    from vidtool.train.loop import _Losses

    model = fresh(cls)[1].train()
    losses = _Losses(model)  # the trainer's root module: FSDP's hooks run around its forward
    parallel.shard(losses, model, torch.bfloat16, "cpu")
    loss = losses(_batch(), 0, 1)["loss"]
    loss.backward()
    assert torch.isfinite(loss)
    alphas = [p for n, p in model.named_parameters() if n.endswith(".alpha")]
    assert alphas and all(p.grad is not None for p in alphas)


def test_a_folder_saved_with_0d_alpha_loads_into_the_1d_parameter(tmp_path):
    from vidtool import checkpoint

    model = fresh()[1]
    state = {k: (v.reshape(()) if k.endswith(".alpha") else v) for k, v in model.state_dict().items()}
    fresh_model = fresh()[1]
    fresh_model.load_state_dict(state)
    for (name, a), b in zip(model.state_dict().items(), fresh_model.state_dict().values()):
        assert torch.equal(a, b), name
    checkpoint.save_pretrained(model, tmp_path / "m")
    assert checkpoint.from_pretrained(tmp_path / "m").state_dict().keys() == model.state_dict().keys()


def test_lfq_entropy_is_computed_in_fp32_under_bf16_autocast():
    """The entropy logits reach 2 * inv_temperature * bits; under autocast the matmul would run in
    bf16, whose step there is 8: the autocast result must equal the fp32 one."""
    from vidtool.nn.quantizers import LFQ

    lfq = LFQ(8)
    z = torch.randn(4, 8, 4, 4, generator=torch.Generator().manual_seed(0))
    reference = lfq(z).losses["entropy"]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        autocast = lfq(z).losses["entropy"]
    assert autocast.dtype == torch.float32 and torch.equal(autocast, reference)


def _keyframes_on_the_bundled_t2i():
    """The keyframes tiny preset on the bundled t2i-tiny, whose frozen weights come from its folder."""
    from types import SimpleNamespace

    from vidtool.generators.build import build_generator
    from vidtool.model_store import default_model

    return build_generator("keyframes", "tiny", [], default_model("t2i"), SimpleNamespace(frames=16))


def _keyframes_batch() -> dict:
    g = torch.Generator().manual_seed(0)
    text, mask = torch.randn(2, 32, 384, generator=g), torch.arange(32).expand(2, -1) < 6
    return {"latents": torch.randn(2, 4, 16, 8, 8, generator=g), "text": text, "text_mask": mask,
            "null_text": torch.zeros_like(text), "null_mask": torch.arange(32).expand(2, -1) < 1,
            "prompt": ["a red circle moving right"] * 2}


def _mbq_vae():
    from vidtool.autoencoders.build import build_autoencoder

    return build_autoencoder("mbq-vae", "tiny", [])


@pytest.mark.parametrize("build, batch, constants", [(_mbq_vae, lambda: {"video": moving_square(size=32)}, True),
                                                     (_keyframes_on_the_bundled_t2i, _keyframes_batch, False)],
                         ids=["mbq-vae", "keyframes"])
def test_an_fsdp_rank_builds_on_meta_and_materialises_rank_0s_model(build, batch, constants, one_rank_group,
                                                                     monkeypatch):
    """A rank other than 0 under `--strategy fsdp` builds its model on the meta device (no memory, no
    weights read: the keyframes' frozen T2I base is not loaded from its folder there), shards it and
    materialises it from rank 0's weights. It ends with rank 0's parameters and persistent buffers,
    the constants no state dict holds (LFQ's bit weights and code corners) recomputed, and computes
    the same training step."""
    from vidtool.train.loop import _Losses

    torch.manual_seed(0)
    reference = build().train()
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    with parallel.build_device("fsdp"):
        model = build().train()
    assert all(t.is_meta for t in [*model.parameters(), *model.buffers()])
    losses = _Losses(model)
    parallel.wrap(losses, model, None)
    parallel.materialise(model, parallel.full_weights(reference), "cpu")

    expected = dict(reference.named_buffers())
    got = parallel.full_model_state(model)
    assert got.keys() == reference.state_dict().keys()
    for name, tensor in reference.state_dict().items():
        assert torch.equal(got[name], tensor), name
    non_persistent = {name: b for name, b in model.named_buffers() if name not in got}
    assert non_persistent.keys() == expected.keys() - got.keys()
    assert any(name.endswith("quantizer.powers") for name in non_persistent) == constants
    for name, tensor in non_persistent.items():
        assert torch.equal(tensor, expected[name]), name
    data = batch()
    torch.manual_seed(0)  # the losses draw timesteps, noise and masks from the global RNG
    plain = reference.training_losses(data, step=0, total_steps=10)["loss"]
    plain.backward()
    torch.manual_seed(0)
    sharded = losses(data, 0, 10)["loss"]
    sharded.backward()
    assert torch.equal(sharded.detach(), plain.detach())
    for (name, p), q in zip(reference.named_parameters(), model.parameters()):
        if p.grad is not None:
            torch.testing.assert_close(parallel.full(q.grad), p.grad, rtol=1e-5, atol=1e-6, msg=name)
