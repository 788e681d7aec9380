"""Cross-modal Video VAE (`cm-vae`): shapes, image path, text, losses, save/load, 2D-VAE inflation."""

from __future__ import annotations

import pytest
import torch
from toy_videos import moving_square

from vidtool import checkpoint
from vidtool.autoencoders.cm_vae import CMVAE, CMVAEConfig, count_parameters, inflate_from_autoencoder_kl, preset
from vidtool.errors import UserError
from vidtool.nn.cm_vae_blocks import TemporalAttention, TemporalConv, TextCrossAttention

TEXT_DIM = 12


def small_config(**overrides) -> CMVAEConfig:
    base = dict(block_out_channels=(8, 16, 16, 16), layers_per_block=1, norm_num_groups=4, latent_channels=4,
                temporal_kernel=(3, 3, 3), temporal_block_out_channels=(8, 16, 16), text_heads=2, text_head_dim=8,
                disc_channels=8, disc_layers=2, gan_start_step=10)
    return CMVAEConfig(**{**base, **overrides})




def text_batch(batch: int = 2, tokens: int = 5) -> torch.Tensor:
    return torch.randn(batch, tokens, TEXT_DIM, generator=torch.Generator().manual_seed(3))


def randomize_text_projections(model: CMVAE) -> None:
    """Text layers start as the identity (zero-initialised projection); give them a trained-like state."""
    for module in model.modules():
        if isinstance(module, TextCrossAttention):
            torch.nn.init.normal_(module.proj_out.weight, std=0.05)


def test_latents_are_x4_temporal_x8_spatial_and_decode_back():
    model = CMVAE(small_config()).eval()
    assert (model.temporal_factor, model.spatial_factor, model.latent_channels) == (4, 8, 4)
    with torch.no_grad():
        encoded = model.encode(moving_square(frames=8))
        assert encoded.latents.shape == (2, 4, 2, 4, 4)
        assert encoded.mean.shape == encoded.logvar.shape == encoded.latents.shape
        assert torch.equal(encoded.latents, encoded.mean)  # encode is deterministic by default
        video = model.decode(encoded.latents)
        assert video.shape == (2, 3, 8, 32, 32) and video.abs().max() <= 1
        four_frames = model.decode(model.encode(moving_square(frames=4)).latents, image=False)
        assert four_frames.shape == (2, 3, 4, 32, 32)


def test_clip_length_must_be_one_or_a_multiple_of_four():
    with pytest.raises(UserError, match="multiple of 4"):
        CMVAE(small_config()).encode(moving_square(frames=6))


def test_image_batch_skips_temporal_convs_attention_and_temporal_ae():
    model = CMVAE(small_config()).eval()
    calls = []
    for name, module in model.named_modules():
        if isinstance(module, (TemporalConv, TemporalAttention)) or name in ("temporal_encoder", "temporal_decoder"):
            module.register_forward_hook(lambda *_, name=name: calls.append(name))
    with torch.no_grad():
        encoded = model.encode(moving_square(frames=1))
        assert encoded.latents.shape == (2, 4, 1, 4, 4) and encoded.mean is None  # Z1, no posterior
        assert model.decode(encoded.latents).shape == (2, 3, 1, 32, 32)
        assert calls == []
        model.decode(model.encode(moving_square(frames=4)).latents, image=False)
    assert {"temporal_encoder", "temporal_decoder"} <= set(calls) and len(calls) > 2


def test_few_adam_steps_on_a_moving_square_lower_the_loss():
    torch.manual_seed(0)
    model = CMVAE(small_config())
    batch = {"video": moving_square()}
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return model.training_losses(batch, step=0, total_steps=3)["loss"].item()

    before = eval_loss()
    model.train()
    for step in range(3):
        optimizer.zero_grad()
        model.training_losses(batch, step=step, total_steps=3)["loss"].backward()
        optimizer.step()
    assert eval_loss() < before


def test_save_and_load_reproduce_outputs_bit_for_bit(tmp_path):
    model = CMVAE(small_config(text_dim=TEXT_DIM)).eval()
    randomize_text_projections(model)
    checkpoint.save_pretrained(model, tmp_path / "cm")
    loaded = checkpoint.from_pretrained(tmp_path / "cm")
    assert isinstance(loaded, CMVAE) and loaded.config == model.config
    video, text = moving_square(), text_batch()
    with torch.no_grad():
        assert torch.equal(loaded(video, text), model(video, text))
        assert torch.equal(loaded(video[:, :, :1]), model(video[:, :, :1]))


def test_text_cross_attention_starts_neutral_then_changes_output_and_gets_gradients():
    video, text = moving_square(), text_batch()
    model = CMVAE(small_config(text_dim=TEXT_DIM)).eval()
    with torch.no_grad():
        assert torch.equal(model(video, text), model(video))  # zero-initialised projections
    randomize_text_projections(model)
    mask = torch.tensor([[1, 1, 0, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    with torch.no_grad():
        with_text, without = model(video, text), model(video)
        assert not torch.allclose(with_text, without, atol=1e-4)
        assert not torch.allclose(model(video, text, text_mask=mask)[0], with_text[0], atol=1e-4)
        assert torch.allclose(model(video, text, text_mask=mask)[1], with_text[1], atol=1e-5)

    model.train()
    model.training_losses({"video": video, "text": text}, step=0, total_steps=1)["loss"].backward()
    text_params = {n: p for n, p in model.named_parameters() if "text_attentions" in n}
    # 4 + 4 spatial encoder/decoder levels, 2 temporal encoder levels, 2 decoder levels x 2 blocks
    assert len({n.rsplit(".", 2)[0] for n in text_params}) == 4 * 1 + 4 * 2 + 2 + 4
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in text_params.values())
    assert not any("text_attentions" in n for n, _ in CMVAE(small_config()).named_parameters())


def test_kl_is_on_z2_only_and_scales_with_beta():
    video = moving_square()
    losses = {}
    for beta in (0.0, 2.0):
        torch.manual_seed(0)
        model = CMVAE(small_config(kl_weight=beta)).eval()
        with torch.no_grad():
            losses[beta] = model.training_losses({"video": video}, step=0, total_steps=1)
            encoded = model.encode(video)
            image_losses = model.training_losses({"video": video[:, :, :1]}, step=0, total_steps=1)
    mean, logvar = encoded.mean, encoded.logvar
    closed_form = 0.5 * (mean**2 + logvar.exp() - 1 - logvar).sum() / video.numel()  # per input value
    kl = losses[2.0]["kl"]
    assert torch.allclose(kl, closed_form, rtol=1e-5) and kl > 0
    assert torch.allclose(losses[2.0]["loss"] - losses[0.0]["loss"], 2.0 * kl, rtol=1e-4)
    assert image_losses["kl"] == 0  # images stop at the deterministic Z1


def test_gan_terms_are_zero_before_gan_start_step_and_active_after():
    torch.manual_seed(0)
    model = CMVAE(small_config(gan_start_step=10))
    batch = {"video": moving_square()}
    before = model.training_losses(batch, step=9, total_steps=20)
    assert before["adv_g"] == 0 and before["disc"] == 0 and before["gan_lambda"] == 0
    after = model.training_losses(batch, step=10, total_steps=20)
    assert after["adv_g"] != 0 and after["disc"] > 0 and after["gan_lambda"] > 0
    after["loss"].backward()
    assert all(p.grad is not None for p in model.discriminator.parameters())


def test_discriminator_is_trained_only_by_the_disc_loss():
    torch.manual_seed(0)
    model = CMVAE(small_config())
    video = moving_square()
    generator = [p for n, p in model.named_parameters() if not n.startswith("discriminator.")]

    adv_g, disc = model.gan_losses(video, model(video))
    adv_g.backward(retain_graph=True)
    assert all(p.grad is None for p in model.discriminator.parameters())
    assert model.decoder.conv_out.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    disc.backward()
    assert all(p.grad is None for p in generator)
    disc_only = [p.grad.clone() for p in model.discriminator.parameters()]

    # In the full objective the discriminator's gradient is exactly the disc loss's.
    model.zero_grad(set_to_none=True)
    model.eval()  # deterministic Z2, so the reconstruction is the one above
    with torch.enable_grad():
        model.training_losses({"video": video}, step=10, total_steps=20)["loss"].backward()
    for full, alone in zip((p.grad for p in model.discriminator.parameters()), disc_only):
        assert torch.allclose(full, alone, atol=1e-6)


@pytest.mark.parametrize("use_quant_conv", [True, False], ids=["sd1-style", "sd3-style"])
def test_inflated_spatial_ae_reproduces_autoencoder_kl_per_frame(tmp_path, use_quant_conv):
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    vae = AutoencoderKL(block_out_channels=(16, 16, 32, 32), down_block_types=("DownEncoderBlock2D",) * 4,
                        up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=1, norm_num_groups=8,
                        latent_channels=4, use_quant_conv=use_quant_conv, use_post_quant_conv=use_quant_conv)
    with torch.no_grad():  # non-trivial norms, so a missed norm copy would show
        for name, p in vae.named_parameters():
            if "norm" in name:
                p.add_(0.1 * torch.randn_like(p))
    vae.save_pretrained(tmp_path / "vae")

    model = CMVAE.from_2d_vae(tmp_path / "vae").eval()
    assert model.spatial_factor == 8 and model.config.use_quant_conv == use_quant_conv
    copied = inflate_from_autoencoder_kl(CMVAE(model.config), vae)
    assert len(copied) == len(vae.state_dict())

    # float64, so the only differences left are summation order (~1e-15), not float32 rounding.
    model, vae = model.double(), vae.double()
    video = moving_square(batch=1, frames=4).double()
    frames = video[0].transpose(0, 1)  # [T, 3, H, W]: the 2D VAE sees each frame alone
    with torch.no_grad():
        mean_2d = vae.encode(frames).latent_dist.mean
        z1 = model.encode_spatial(video)  # temporal convs run, zero-initialised
        assert torch.allclose(z1[0].transpose(0, 1), mean_2d, rtol=0, atol=1e-10)
        assert torch.allclose(model.encode(video[:, :, :1]).latents[0, :, 0], mean_2d[0], rtol=0, atol=1e-10)
        decoded = model.decode_spatial(z1)
        assert torch.allclose(decoded[0].transpose(0, 1), vae.decode(mean_2d).sample, rtol=0, atol=1e-10)


def test_paper_presets_are_the_sd_vaes_plus_temporal_layers():
    from diffusers import AutoencoderKL

    for name, latent, sd_quant in (("4ch", 4, True), ("16ch", 16, False)):
        config = preset(name)
        assert config.latent_channels == latent and config.temporal_kernel == (7, 3, 3)
        with torch.device("meta"):
            model = CMVAE(config)
            sd = AutoencoderKL(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
                               up_block_types=("UpDecoderBlock2D",) * 4, layers_per_block=2, latent_channels=latent,
                               use_quant_conv=sd_quant, use_post_quant_conv=sd_quant)
        assert (model.temporal_factor, model.spatial_factor) == (4, 8)
        temporal = sum(p.numel() for m in model.modules() if isinstance(m, (TemporalConv, TemporalAttention))
                       for p in m.parameters())
        dropped_logvar_rows = (2 * latent * 2 * latent + 2 * latent) // 2 if sd_quant else 0
        sd_count = sum(p.numel() for p in sd.parameters())
        assert count_parameters(config)["spatial_ae"] - temporal == sd_count - dropped_logvar_rows
    assert sum(count_parameters(preset("tiny")).values()) - count_parameters(preset("tiny"))["discriminator"] < 3e6


def test_every_attention_hands_sdpa_batch_heads_length_dim(monkeypatch):
    # SDPA's fused kernels (flash, memory-efficient) take q/k/v as [B, heads, L, d]; 3-D inputs run
    # the unfused math path, materialising every attention map.
    real, ranks = torch.nn.functional.scaled_dot_product_attention, []

    def recording(q, k, v, *args, **kwargs):
        ranks.append((q.ndim, k.ndim, v.ndim))
        return real(q, k, v, *args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", recording)
    model = CMVAE(small_config(text_dim=TEXT_DIM)).eval()
    with torch.no_grad():
        text = text_batch()
        model.decode(model.encode(moving_square(frames=8), text=text).latents, text=text)
    assert len(ranks) >= 3 and set(ranks) == {(4, 4, 4)}, ranks


def test_patch_basis_is_orthonormal_and_starts_with_the_patch_mean_colour():
    from vidtool.autoencoders.cm_vae import patch_basis

    basis = patch_basis(4, 48)
    assert torch.allclose(basis @ basis.T, torch.eye(48), atol=1e-5)
    # The first vector is the luma DC: the same weight on every value of the 4x4x3 patch.
    assert torch.allclose(basis[0], torch.full((48,), 48 ** -0.5), atol=1e-6)
    with pytest.raises(ValueError, match="latent_channels=49"):
        patch_basis(4, 49)


def test_linear_shortcut_alone_is_the_projection_onto_the_patch_basis():
    """With the deep paths silenced, encode/decode is W_out·W_in = the orthogonal projection onto the
    basis: a frame inside its span (smooth colour ramps) comes back exactly, and frames outside it
    lose exactly their component orthogonal to it."""
    import torch.nn.functional as F

    from vidtool.autoencoders.cm_vae import patch_basis

    model = CMVAE(small_config(block_out_channels=(8, 16, 16), text_patch_sizes=(4, 2, 1), latent_channels=8,
                               use_temporal_ae=False, linear_shortcut=True)).eval()
    for conv in (model.quant_conv, model.decoder.conv_out):
        torch.nn.init.zeros_(conv.weight)
        torch.nn.init.zeros_(conv.bias)
    basis = patch_basis(4, 8)
    x = torch.rand(1, 3, 2, 16, 24, generator=torch.Generator().manual_seed(0)) * 2 - 1
    with torch.no_grad():
        out = model(x)
    patches = F.pixel_unshuffle(x[:, :, 0], 4)  # [1, 48, 4, 6]
    projected = torch.einsum("kc,bchw->bkhw", basis, patches)
    expected = F.pixel_shuffle(torch.einsum("kc,bkhw->bchw", basis, projected), 4)
    assert torch.allclose(out[:, :, 0], expected, atol=1e-5)


def test_bundled_footage_autoencoder_reconstructs_held_out_natural_footage():
    """cm-vae-tiny never saw scikit-image's astronaut/coffee/camera; a 128x128 clip of them comes back
    above 27 dB (issue 29's goal for the default encode), at its own size."""
    from vidtool.data.scenes import natural_test_clips
    from vidtool.model_store import default_model
    from vidtool.video import frames_from_model, frames_to_model, psnr

    model = checkpoint.from_pretrained(default_model("encode")).eval()
    assert model.family == "cm-vae"
    name, clip = natural_test_clips(frames=8)[2]
    with torch.inference_mode():
        latents = model.encode(frames_to_model(torch.from_numpy(clip[None]))).latents
        rec = frames_from_model(model.decode(latents, image=False))[0].numpy()
    assert rec.shape == clip.shape
    assert sum(psnr(a, b) for a, b in zip(clip, rec)) / len(clip) > 27.0


def test_a_model_whose_temporal_layers_are_still_zero_codes_frames_alone_and_skips_them_exactly():
    """No temporal AE and zero temporal convs/attention (a cm-vae trained on images only): chunks need
    no context and inference skips the temporal layers with the same output; one trained temporal
    weight makes the frames depend on each other again."""
    model = CMVAE(small_config(use_temporal_ae=False)).eval()
    assert model.encodes_frames_alone and model.decodes_frames_alone
    clip = moving_square(batch=1, frames=4, size=16)
    with torch.inference_mode():
        fast = model.decode(model.encode(clip).latents, image=False)
    with torch.enable_grad():  # training mode's condition: the temporal layers run
        slow = model.decode(model.encode(clip).latents, image=False).detach()
    assert torch.allclose(fast, slow, atol=1e-6)
    next(m for m in model.modules() if isinstance(m, TemporalConv)).conv.bias.data.fill_(0.1)
    assert not model.encodes_frames_alone
    assert not CMVAE(small_config()).encodes_frames_alone  # a temporal AE mixes frames
