"""CUDA-path bugs reproduced on the CPU (issue: GPU-ready): a model on another device than its
inputs (the `meta` device stands in for an accelerator), the trainer's activation checkpointing, and
FSDP2 on a 1-rank gloo group with a bf16 mixed-precision policy."""

from __future__ import annotations


import pytest
import torch

from test_interpolation import MODELS, fresh, latents, trained_looking
from test_mbq_vae import small_config
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
    parallel.shard(losses, model, torch.bfloat16)
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
