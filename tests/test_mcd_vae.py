"""LaMD's MCD-VAE (`mcd-vae`): r_t = L, the KL bottleneck, the fusion decoder, losses, save/load."""

from __future__ import annotations

import pytest
import torch
from toy_videos import moving_square

from vidtool import checkpoint
from vidtool.autoencoders.mcd_vae import MCDVAE, MCDVAEConfig, preset
from vidtool.errors import UserError


def small_config(**overrides) -> MCDVAEConfig:
    base = dict(frames=8, image_size=32, motion_channels=3, content_channels=4, image_encoder_channels=8,
                motion_encoder_channels=8, decoder_channels=8, channel_mult=(1, 2, 2), layers_per_block=1,
                norm_num_groups=4, factorized_3d=True, disc_channels=8, disc_layers=2, gan_start_step=10)
    return MCDVAEConfig(**{**base, **overrides})




@pytest.mark.parametrize("frames", [8, 16])
def test_rt_equal_to_clip_length_removes_the_time_axis(frames):
    model = MCDVAE(small_config(frames=frames)).eval()
    assert model.temporal_factor == frames and model.spatial_factor == 4
    with torch.no_grad():
        encoded = model.encode(moving_square(frames=frames))
        assert encoded.latents.shape == (2, 3, 8, 8)  # [B, d, H/r_s, W/r_s]: no time axis left
        assert torch.equal(encoded.latents, encoded.mean)  # deterministic unless sampled
        video = model.decode(encoded.latents, moving_square(frames=frames)[:, :, 0])
    assert video.shape == (2, 3, frames, 32, 32) and video.abs().max() <= 1


def test_motion_mean_is_normalised_per_clip():
    """§3.1.1's normalisation layer: every clip's μ has zero mean and unit variance over (d, h, w)."""
    with torch.no_grad():
        mean = MCDVAE(small_config()).encode(moving_square()).mean
    flat = mean.flatten(1)
    assert torch.allclose(flat.mean(1), torch.zeros(2), atol=1e-5)
    assert torch.allclose(flat.var(1, unbiased=False), torch.ones(2), atol=1e-3)


def test_kl_warmup_ramps_beta_linearly():
    torch.manual_seed(0)
    model = MCDVAE(small_config(beta=0.5, kl_warmup_steps=100, gan_start_step=1000)).eval()
    batch = {"video": moving_square()}
    with torch.no_grad():
        start, half, full = (model.training_losses(batch, step=s, total_steps=200) for s in (0, 50, 150))
    assert torch.allclose(half["loss"] - start["loss"], 0.25 * half["kl"], atol=1e-6)  # β·50/100
    assert torch.allclose(full["loss"] - start["loss"], 0.5 * full["kl"], atol=1e-6)


def test_kl_term_is_the_gaussian_kl_weighted_by_beta():
    torch.manual_seed(0)
    model = MCDVAE(small_config(beta=0.0)).eval()  # eval: z_m = μ, so both runs see the same reconstruction
    batch = {"video": moving_square()}
    with torch.no_grad():
        free = model.training_losses(batch, step=0, total_steps=1)
        encoded = model.encode(batch["video"])
        model.config.beta = 0.25
        weighted = model.training_losses(batch, step=0, total_steps=1)
    mean, logvar = encoded.mean, encoded.logvar
    closed_form = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).mean()  # KL(N(μ, σ²) || N(0, 1)) per value
    assert weighted["kl"] > 0
    assert torch.allclose(weighted["kl"], closed_form)
    assert torch.allclose(weighted["loss"] - free["loss"], 0.25 * closed_form, atol=1e-6)


def test_sampling_adds_sigma_noise():
    model = MCDVAE(small_config()).eval()
    with torch.no_grad():
        torch.manual_seed(1)
        sampled = model.encode(moving_square(), sample=True)
    torch.manual_seed(1)
    eps = torch.randn_like(sampled.mean)
    assert torch.allclose(sampled.latents, sampled.mean + eps * (0.5 * sampled.logvar).exp())


def test_first_frame_residual_adds_the_content_image():
    torch.manual_seed(0)
    plain = MCDVAE(small_config()).eval()
    residual = MCDVAE(small_config(first_frame_residual=True)).eval()
    residual.load_state_dict(plain.state_dict())
    video = moving_square()
    with torch.no_grad():
        z = plain.encode(video).latents
        content = plain.encode_content(video[:, :, 0])
        difference = residual._decode(z, content) - plain._decode(z, content)
    assert torch.allclose(difference, video[:, :, :1].expand_as(difference), atol=1e-5)


def test_decode_swaps_content_and_motion_from_different_clips():
    model = MCDVAE(small_config()).eval()
    a, b = moving_square(), moving_square().flip(-1)
    with torch.no_grad():
        mixed = model.decode(model.encode(b).latents, a[:, :, 0])
        content_a = model.encode_content(a[:, :, 0])
        again = model.decode(model.encode(b).latents, content_a)
    assert torch.allclose(mixed, again)


def test_adversarial_term_uses_the_adaptive_weight_after_warmup():
    torch.manual_seed(0)
    model = MCDVAE(small_config(gan_start_step=5))
    batch = {"video": moving_square()}
    before = model.training_losses(batch, step=4, total_steps=10)
    assert before["adv_g"] == 0 and before["disc"] == 0 and before["gan_lambda"] == 0
    after = model.training_losses(batch, step=5, total_steps=10)
    assert after["disc"] > 0 and after["gan_lambda"] > 0
    with torch.no_grad():  # no gradients: λ falls back to gan_weight
        assert model.training_losses(batch, step=5, total_steps=10)["gan_lambda"] == pytest.approx(0.5)


def test_one_step_lowers_each_loss():
    """A step on the summed objective lowers it and each term (β = 1 so the KL's pull is not drowned)."""
    torch.manual_seed(0)
    model = MCDVAE(small_config(gan_start_step=0, first_frame_residual=True, beta=1.0))
    batch = {"video": moving_square()}
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)

    def losses():
        torch.manual_seed(5)  # the same z_m noise in both evaluations
        return model.training_losses(batch, step=0, total_steps=1)

    first = losses()
    first["loss"].backward()
    optimizer.step()
    with torch.no_grad():
        second = losses()
    for name in ("loss", "rec", "kl", "disc"):
        assert second[name] < first[name], (name, float(first[name]), float(second[name]))


def test_wrong_clip_length_and_latent_shape_are_user_errors():
    model = MCDVAE(small_config())
    with pytest.raises(UserError, match="exactly L = 8"):
        model.encode(moving_square(frames=6))
    with pytest.raises(UserError, match="does not fit"):
        model.decode(torch.zeros(2, 3, 4, 4), moving_square()[:, :, 0])
    with pytest.raises(ValueError, match="power of two"):
        small_config(frames=12)


def test_save_and_load_round_trip(tmp_path):
    model = MCDVAE(small_config()).eval()
    checkpoint.save_pretrained(model, tmp_path / "m")
    loaded = checkpoint.from_pretrained(tmp_path / "m")
    video = moving_square()
    with torch.no_grad():
        assert torch.equal(model.encode(video).latents, loaded.encode(video).latents)
    assert loaded.config == model.config


def test_presets_follow_table_1():
    bair, mug = preset("bair"), preset("mug")
    assert (bair.frames, bair.image_size, bair.spatial_factor, bair.motion_channels, bair.beta) == (16, 64, 4, 3, 1e-2)
    assert (bair.image_encoder_channels, bair.motion_encoder_channels, bair.decoder_channels) == (128, 64, 128)
    assert preset("natops").motion_encoder_channels == 32 and mug.beta == 1e-1
    assert mug.image_size // mug.spatial_factor == 32  # Table 1's 32x32x3 motion latent at 256 px
