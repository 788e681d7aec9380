"""MotionAura 3D-MBQ-VAE and its quantizers (LFQ, VQ): shapes, losses, gradients, tokens, checkpoints."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch
from einops import rearrange

from vidtool.autoencoders.mbq_vae import MBQVAE, MBQVAEConfig, cosine_ratio, preset
from vidtool.checkpoint import from_pretrained, save_pretrained
from vidtool.metrics.frame_quality import psnr_frames
from vidtool.nn.quantizers import LFQ, VectorQuantizer


def small_config(**overrides) -> MBQVAEConfig:
    """Smaller than the `tiny` preset: x4 temporal, x4 spatial, 2**6 LFQ codes."""
    base = MBQVAEConfig(
        encoder_channels=(8, 8, 16),
        decoder_channels=(8, 8, 16),
        temporal_strides=(2, 2),
        spatial_strides=(1, 2),
        codebook_size=64,
        mfi_hidden=16,
        patch_sizes=(4, 8),
    )
    return dataclasses.replace(base, **overrides)


NO_MASKING = dict(patch_mask_ratio=(0.0, 0.0), frame_mask_ratio=(0.0, 0.0))


def moving_square(batch: int = 2, frames: int = 8, size: int = 16) -> torch.Tensor:
    """Smooth clip in [-1, 1]: a soft-edged bright square sliding right over a vertical gradient."""
    y, x = torch.meshgrid(torch.linspace(0, 1, size), torch.linspace(0, 1, size), indexing="ij")
    clips = []
    for b in range(batch):
        frames_ = []
        for t in range(frames):
            cx, cy = 0.25 + 0.5 * t / frames, 0.4 + 0.2 * b
            inside = torch.sigmoid(12 * (0.2 - torch.maximum((x - cx).abs(), (y - cy).abs())))
            background = torch.stack([y, 1 - y, 0.5 * torch.ones_like(y)])
            square = torch.tensor([0.9, 0.2, 0.1])[:, None, None]
            frames_.append(background * (1 - inside) + square * inside)
        clips.append(torch.stack(frames_, dim=1))
    return torch.stack(clips) * 2 - 1


def test_adam_steps_on_one_batch_lower_the_loss():
    torch.manual_seed(0)
    model = MBQVAE(small_config(**NO_MASKING)).train()
    batch = {"video": moving_square()}
    before = model.training_losses(batch, step=0, total_steps=10)
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(3):
        optimizer.zero_grad()
        model.training_losses(batch, step=step, total_steps=10)["loss"].backward()
        optimizer.step()
    after = model.training_losses(batch, step=3, total_steps=10)
    assert after["loss"] < before["loss"]
    assert after["rec"] < before["rec"]
    assert {"loss", "rec", "l1", "l2", "commit", "entropy", "mfi"} <= set(after)
    assert all(not v.requires_grad for k, v in after.items() if k != "loss")


@pytest.mark.parametrize("quantizer", ["lfq", "vq"])
def test_save_then_load_reproduces_outputs_bit_for_bit(tmp_path, quantizer):
    torch.manual_seed(1)
    model = MBQVAE(small_config(quantizer=quantizer)).eval()
    save_pretrained(model, tmp_path / "vae")
    loaded = from_pretrained(tmp_path / "vae")
    video = moving_square()
    with torch.no_grad():
        a, b = model.encode(video), loaded.encode(video)
        assert torch.equal(a.tokens, b.tokens)
        assert torch.equal(a.latents, b.latents)
        assert torch.equal(model.decode(a.latents), loaded.decode(b.latents))
    assert loaded.config == model.config


@pytest.mark.parametrize("quantizer", ["lfq", "vq"])
def test_decode_tokens_equals_decode_of_encoded_latents(quantizer):
    torch.manual_seed(2)
    model = MBQVAE(small_config(quantizer=quantizer)).eval()
    video = moving_square()
    with torch.no_grad():
        encoded = model.encode(video)
        assert encoded.tokens.dtype == torch.int64
        assert torch.equal(model.tokenize(video), encoded.tokens)
        assert torch.equal(model.indices_to_latents(encoded.tokens), encoded.latents)
        assert torch.equal(model.decode_tokens(encoded.tokens), model.decode(encoded.latents))


def test_encode_and_decode_shapes_follow_temporal_and_spatial_factors():
    video = moving_square(batch=1, frames=8, size=32)
    for spatial_strides, factor in [((1, 2), 4), ((2, 2), 8)]:
        model = MBQVAE(small_config(spatial_strides=spatial_strides)).eval()
        assert (model.temporal_factor, model.spatial_factor) == (4, factor)
        with torch.no_grad():
            encoded = model.encode(video)
            assert encoded.latents.shape == (1, model.latent_channels, 2, 32 // factor, 32 // factor)
            assert encoded.tokens.shape == (1, 2, 32 // factor, 32 // factor)
            assert model.decode(encoded.latents).shape == video.shape
    paper = preset("paper")
    assert math.prod(paper.temporal_strides) == 4 and 2 * math.prod(paper.spatial_strides) == 16


def test_encode_refuses_a_clip_whose_length_is_not_a_multiple_of_four():
    model = MBQVAE(small_config())
    with pytest.raises(ValueError, match="multiple of 4"):
        model.encode(moving_square(frames=6))


def test_lfq_codebook_size_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of two"):
        small_config(codebook_size=12800)


def test_lfq_index_and_code_round_trip():
    lfq = LFQ(5)
    # Channel 0 is the most significant bit: (+, -, +, -, -) is 0b10100 = 20.
    code = torch.tensor([1.0, -1.0, 1.0, -1.0, -1.0])[None, :, None]
    assert lfq(code).indices.item() == 20
    assert torch.equal(lfq.indices_to_codes(torch.tensor([[20]])), code)
    indices = torch.arange(32).reshape(1, 2, 4, 4)
    codes = lfq.indices_to_codes(indices)
    assert codes.shape == (1, 5, 2, 4, 4)
    assert torch.equal(lfq(codes).indices, indices)


def test_factorised_lfq_entropy_matches_the_direct_form():
    torch.manual_seed(3)
    direct = LFQ(6, entropy_group_bits=6, inv_temperature=0.25)
    grouped = LFQ(6, entropy_group_bits=2, inv_temperature=0.25)
    assert grouped.group_sizes == [2, 2, 2]
    # Per-sample entropy factorises exactly; codebook entropy over groups bounds the joint one from above.
    z = torch.randn(500, 6)
    sample_d, codebook_d = direct.entropy_terms(z)
    sample_g, codebook_g = grouped.entropy_terms(z)
    assert torch.allclose(sample_d, sample_g, atol=1e-5)
    assert codebook_g >= codebook_d - 1e-5
    # Every code once: usage is uniform and independent across groups, so both equal 6 ln 2; each
    # bit's soft assignment is sigmoid(4 * inv_temperature * z_i) = sigmoid(1), entropy H_b(sigmoid(1)).
    corners = LFQ._corners(6)
    p = torch.sigmoid(torch.tensor(1.0))
    bit_entropy = -(p * p.log() + (1 - p) * (1 - p).log())
    for lfq in (direct, grouped):
        sample, codebook = lfq.entropy_terms(corners)
        assert torch.allclose(codebook, torch.tensor(6 * math.log(2)), atol=1e-5)
        assert torch.allclose(sample, 6 * bit_entropy, atol=1e-5)


def test_lfq_passes_gradients_straight_through_and_from_its_entropy_loss():
    torch.manual_seed(4)
    lfq = LFQ(4, inv_temperature=1.0)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = lfq(z)
    assert torch.equal(out.quantized.detach().abs(), torch.ones_like(z))
    (grad_st,) = torch.autograd.grad(out.quantized.sum(), z, retain_graph=True)
    (grad_entropy,) = torch.autograd.grad(out.losses["entropy"], z)
    assert grad_st.abs().sum() > 0 and grad_entropy.abs().sum() > 0


def test_vq_moves_its_codebook_and_passes_gradients_straight_through():
    torch.manual_seed(5)
    vq = VectorQuantizer(16, 4)
    z = torch.randn(2, 4, 3, 3, requires_grad=True)
    out = vq(z)
    (out.quantized.sum() + out.losses["codebook"] + out.losses["commit"]).backward()
    assert vq.codebook.grad.abs().sum() > 0
    assert z.grad.abs().sum() > 0
    assert torch.equal(vq.indices_to_codes(out.indices), vq.codebook[out.indices].movedim(-1, 1))


@pytest.mark.parametrize("quantizer", ["lfq", "vq"])
def test_training_loss_reaches_encoder_decoder_and_quantizer(quantizer):
    torch.manual_seed(6)
    model = MBQVAE(small_config(quantizer=quantizer)).train()
    model.training_losses({"video": moving_square()}, step=3, total_steps=10)["loss"].backward()
    for part in (model.encoder.stem, model.encoder.conv_out, model.decoder.conv_out, model.mfi_head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters()), part
    if quantizer == "vq":
        assert model.quantizer.codebook.grad.abs().sum() > 0


def test_mfi_loss_alone_trains_the_mfi_head_and_the_encoder_through_frame_masking():
    torch.manual_seed(7)
    only_mfi = dict(l1_weight=0.0, l2_weight=0.0, commitment_weight=0.0, entropy_weight=0.0, mfi_weight=1.0)
    model = MBQVAE(small_config(patch_mask_ratio=(0.0, 0.0), frame_mask_ratio=(0.3, 0.3), **only_mfi)).train()
    out = model.training_losses({"video": moving_square()}, step=0, total_steps=10)
    assert out["mfi"] > 0
    out["loss"].backward()
    assert all(p.grad.abs().sum() > 0 for p in model.mfi_head.parameters())
    assert model.encoder.stem.weight.grad.abs().sum() > 0
    assert all(p.grad is None or p.grad.abs().sum() == 0 for p in model.decoder.parameters())


def test_mask_video_blanks_the_scheduled_share_of_patches_and_whole_frames():
    model = MBQVAE(small_config(patch_sizes=(4,)))
    video = torch.ones(2, 3, 8, 16, 16)
    generator = torch.Generator().manual_seed(8)
    masked, frames = model.mask_video(video, patch_ratio=0.25, frame_ratio=0.25, generator=generator)
    assert frames.shape == (2, 8) and torch.equal(frames.sum(1), torch.tensor([2.0, 2.0]))
    blank = frames.bool()
    assert torch.all(masked.permute(0, 2, 1, 3, 4)[blank] == 0)
    kept = masked.permute(0, 2, 1, 3, 4)[~blank]  # [frames, 3, 16, 16]: 4 of 16 4x4 patches blanked
    assert torch.equal((kept[:, 0] == 0).sum((1, 2)), torch.full((kept.shape[0],), 4 * 16))


def test_eval_mode_training_losses_do_not_mask():
    model = MBQVAE(small_config()).eval()
    video = moving_square()
    out = model.training_losses({"video": video}, step=5, total_steps=10)
    assert "mfi" not in out
    with torch.no_grad():
        recon = model.decoder(model.encode(video).latents)
    assert torch.allclose(out["l2"], torch.mean((recon - video) ** 2))


def test_mask_ratio_schedules_run_from_20_to_60_and_10_to_50_percent():
    model = MBQVAE(small_config())
    assert model.mask_ratios(0, 1000) == pytest.approx((0.2, 0.1))
    assert model.mask_ratios(1000, 1000) == pytest.approx((0.6, 0.5))
    assert model.mask_ratios(500, 1000) == pytest.approx((0.4, 0.3))  # cos(pi / 2) = 0: halfway
    assert cosine_ratio(0.2, 0.6, 5000, 1000) == pytest.approx(0.6)


def test_paper_preset_matches_the_papers_140m_encoder_and_177m_decoder():
    with torch.device("meta"):
        model = MBQVAE(preset("paper"))
    counts = model.parameter_counts()
    assert counts["encoder"] == pytest.approx(140e6, rel=0.15)
    assert counts["decoder"] == pytest.approx(177e6, rel=0.15)
    assert model.codebook_size == 2**14 and model.latent_channels == 14


def test_decoder_only_training_moves_only_the_decoder_and_keeps_every_token():
    torch.manual_seed(0)
    trained = MBQVAE(small_config()).train()  # paper masking on: decoder-only training ignores it
    decoder_only = MBQVAE(small_config(trainable="decoder")).train()
    decoder_only.load_state_dict(trained.state_dict())
    assert {n for n, p in decoder_only.named_parameters() if p.requires_grad} == \
        {n for n, _ in decoder_only.named_parameters() if n.startswith("decoder.")}
    batch = {"video": moving_square()}
    tokens = decoder_only.eval().tokenize(batch["video"])
    before = {n: p.detach().clone() for n, p in decoder_only.named_parameters()}
    optimizer = torch.optim.Adam([p for p in decoder_only.parameters() if p.requires_grad], lr=3e-3)
    losses = []
    for step in range(3):
        optimizer.zero_grad()
        out = decoder_only.train().training_losses(batch, step=step, total_steps=10)
        out["loss"].backward()
        optimizer.step()
        losses.append(out["loss"].item())
    assert set(out) == {"loss", "l1", "l2", "rec"} and losses[-1] < losses[0]
    changed = {n for n, p in decoder_only.named_parameters() if not p.equal(before[n])}
    assert changed and all(n.startswith("decoder.") for n in changed)
    assert decoder_only.eval().tokenize(batch["video"]).equal(tokens)


def test_trainable_accepts_only_all_or_decoder():
    with pytest.raises(ValueError, match="trainable"):
        small_config(trainable="encoder")


def test_train_crop_cuts_one_window_in_training_and_none_in_eval():
    model = MBQVAE(small_config(train_crop=(4, 8), **NO_MASKING))
    video = moving_square(frames=8, size=16)
    torch.manual_seed(3)
    crop = model.train().random_crop(video)
    assert crop.shape == (2, 3, 4, 8, 8)
    # The window is the same for every clip of the batch and is a real sub-block of the input.
    windows = [video[:, :, t:t + 4, y:y + 8, x:x + 8] for t in range(5) for y in range(9) for x in range(9)]
    assert any(w.equal(crop) for w in windows)
    seen = []
    model.decoder.register_forward_hook(lambda module, args, out: seen.append(out.shape[2:]))
    model.train().training_losses({"video": video}, step=0, total_steps=10)
    model.eval().training_losses({"video": video}, step=0, total_steps=10)
    assert seen == [(4, 8, 8), (8, 16, 16)]


def test_train_crop_must_fit_the_model_factors():
    with pytest.raises(ValueError, match="multiple"):
        MBQVAE(small_config(train_crop=(6, 8))).train().random_crop(moving_square(frames=8, size=16))
    with pytest.raises(ValueError, match="train_crop"):
        small_config(train_crop=(4,))


def test_channels_last_depthwise_conv_equals_the_grouped_conv():
    from vidtool.autoencoders.mbq_vae import DepthwiseConv3d

    torch.manual_seed(0)
    fast = DepthwiseConv3d(12)
    plain = torch.nn.Conv3d(12, 12, 3, padding=1, groups=12)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(2, 12, 4, 6, 6, requires_grad=True)
    out = fast(x)
    assert out.is_contiguous()
    torch.testing.assert_close(out, plain(x), rtol=1e-5, atol=1e-5)
    (grad_fast,) = torch.autograd.grad(out.square().sum(), x)
    (grad_plain,) = torch.autograd.grad(plain(x).square().sum(), x)
    torch.testing.assert_close(grad_fast, grad_plain, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), ((1, 3, 3), (1, 2, 2), (0, 1, 1)), (1, 1, 0)])
def test_single_clip_conv3d_equals_pytorchs_conv_with_gradients(kernel, stride, padding):
    from vidtool.nn.conv3d import Conv3d

    torch.manual_seed(0)
    onednn = Conv3d(6, 10, kernel, stride=stride, padding=padding)
    plain = torch.nn.Conv3d(6, 10, kernel, stride=stride, padding=padding)
    plain.load_state_dict(onednn.state_dict())
    x = torch.randn(1, 6, 4, 8, 8, requires_grad=True)
    out, reference = onednn(x), plain(x)
    torch.testing.assert_close(out, reference, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(out.square().sum(), (x, onednn.weight, onednn.bias))
    reference_grads = torch.autograd.grad(reference.square().sum(), (x, plain.weight, plain.bias))
    for grad, reference_grad in zip(grads, reference_grads):
        torch.testing.assert_close(grad, reference_grad, rtol=1e-4, atol=1e-4)


def _trained_looking(model: MBQVAE) -> MBQVAE:
    """Random weights with the zero-initialised layers moved off zero, so every path carries signal."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("widths", [dict(decoder_channels=(16, 16, 32)),
                                    dict(encoder_channels=(16, 16, 32), decoder_channels=(32, 32, 64))])
def test_widened_model_computes_the_initial_models_function(widths):
    from vidtool.autoencoders.widen import widened_state

    torch.manual_seed(0)
    source = _trained_looking(MBQVAE(small_config()))
    wide = MBQVAE(small_config(**widths))
    wide.load_state_dict(widened_state(source, wide, concat_inputs={"fuse": 3}))
    wide.eval()
    video = moving_square()
    with torch.no_grad():
        torch.testing.assert_close(wide.encoder(video), source.encoder(video), rtol=1e-4, atol=1e-5)
        tokens = source.tokenize(video)
        torch.testing.assert_close(wide.decode_tokens(tokens), source.decode_tokens(tokens), rtol=1e-4, atol=1e-5)
    assert sum(p.numel() for p in wide.decoder.parameters()) > 2 * sum(p.numel() for p in source.decoder.parameters())


def test_more_lfq_bits_start_from_the_initial_models_codes():
    """6 -> 8 bits: bits 6 and 7 start as copies of bits 0 and 1, and the decoder, whose inputs for a
    copied bit are halved, decodes the longer codes as the initial model decoded the short ones."""
    from vidtool.autoencoders.widen import widened_state

    torch.manual_seed(0)
    source = _trained_looking(MBQVAE(small_config()))
    more = MBQVAE(small_config(codebook_size=256))
    more.load_state_dict(widened_state(source, more, concat_inputs={"fuse": 3}))
    more.eval()
    video = moving_square()
    with torch.no_grad():
        short, long = source.tokenize(video), more.tokenize(video)
        # The whole-latent norm now weighs bits 0 and 1 twice, so a few signs near zero may flip.
        bits = torch.arange(5, -1, -1)
        agree = ((long[..., None] >> 2 >> bits) & 1) == ((short[..., None] >> bits) & 1)
        assert agree.float().mean() > 0.9
        torch.testing.assert_close(long & 3, long >> 6)  # the copies of bits 0 and 1
        expanded = (short << 2) | (short >> 4)  # every short code written with its two copied bits
        torch.testing.assert_close(more.decode_tokens(expanded), source.decode_tokens(short), rtol=1e-4, atol=1e-5)


def test_from_init_widens_with_symmetry_breaking_noise_and_refuses_other_changes():
    torch.manual_seed(0)
    source = _trained_looking(MBQVAE(small_config()))
    wide = MBQVAE.from_init(source, small_config(decoder_channels=(16, 16, 32))).eval()
    tokens = source.tokenize(moving_square())
    with torch.no_grad():
        close = (wide.decode_tokens(tokens) - source.decode_tokens(tokens)).abs().mean()
    assert 0 < close < 0.05
    # The copies of a channel are no longer equal, so they get different gradients and can part.
    weight = wide.decoder.conv_in.weight
    assert not weight[:16].equal(weight[16:])
    same = MBQVAE.from_init(source, small_config())
    assert all(a.equal(b) for a, b in zip(same.state_dict().values(), source.state_dict().values()))
    from vidtool.errors import UserError

    with pytest.raises(UserError, match="group"):  # x3: GroupNorm groups would change size
        MBQVAE.from_init(source, small_config(decoder_channels=(24, 24, 48)))
    with pytest.raises(UserError, match="not in the initial model"):
        MBQVAE.from_init(source, small_config(decoder_mb_blocks=1))
    with pytest.raises(UserError, match="not a widening"):
        MBQVAE.from_init(source, small_config(codebook_size=32))


def test_psnr_term_is_the_benchmark_psnr_and_weights_frames_by_their_relative_error():
    torch.manual_seed(11)
    only_psnr = dict(l1_weight=0.0, l2_weight=0.0, psnr_weight=1.0, trainable="decoder")
    model = MBQVAE(small_config(**NO_MASKING, **only_psnr)).train()
    video = moving_square()
    recon = (video + 0.05 * torch.randn_like(video) * torch.linspace(0.2, 2, 8)[:, None, None]).clamp(-1, 1)
    # The benchmark's score: frames mapped to [0, 1], mean of per-frame PSNRs, mean over clips.
    clips = [rearrange((x + 1) / 2, "b c t h w -> b t h w c").double().numpy() for x in (video, recon)]
    expected = sum(psnr_frames(a, b).mean() for a, b in zip(*clips)) / len(video)
    assert model._reconstruction_terms(recon, video)["psnr"].item() == pytest.approx(expected, abs=1e-3)

    out = model.training_losses({"video": video}, step=0, total_steps=10)
    out["loss"].backward()
    assert out["loss"] == -out["psnr"]
    assert model.decoder.conv_out.weight.grad.abs().sum() > 0
    assert all(p.grad is None for p in model.encoder.parameters())

    # d(-PSNR)/d(recon) is the L2 gradient over the frame's MSE: a frame with ten times the error
    # (a hundred times the MSE) pulls a hundred times less per unit of error.
    target = torch.zeros(1, 3, 2, 4, 4)
    recon = torch.stack([torch.full((3, 4, 4), 0.01), torch.full((3, 4, 4), 0.1)], dim=1)[None].requires_grad_()
    model._reconstruction_terms(recon, target)["rec"].backward()
    per_unit_error = recon.grad[0, :, :, 0, 0].mean(0) / recon.detach()[0, :, :, 0, 0].mean(0)
    assert (per_unit_error[0] / per_unit_error[1]).item() == pytest.approx(100.0, rel=1e-4)
