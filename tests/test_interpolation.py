"""FusionFrames' interpolation model (§4.2, App. 9) and the masked-frame-interpolation baseline (App. 10)."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from einops import rearrange, repeat

from vidtool import checkpoint
from vidtool.data.latents import LatentSetInfo
from vidtool.errors import UserError
from vidtool.generators.build import build_generator
from vidtool.generators.interpolation import (InterpolationConfig, InterpolationModel, drop_context, interleave,
                                              sample_groups)
from vidtool.generators.masked_interpolation import MaskedInterpolationModel
from vidtool.generators.t2i import T2IConfig, T2IModel
from vidtool.pipelines import fusionframes

# A test-sized T2I U-Net: two levels of 32 channels, cross-attention to 32-d tokens, 8x8x4 latents.
BASE = T2IConfig(block_out_channels=(32, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=16, cross_attention_dim=32,
                 norm_num_groups=8, latent_scale=0.5, vae="movq-temporal@0123456789abcdef")
MODELS = [InterpolationModel, MaskedInterpolationModel]


def t2i(seed: int = 0) -> T2IModel:
    torch.manual_seed(seed)
    return T2IModel(replace(BASE))


def fresh(cls=InterpolationModel, **overrides):
    base = t2i()
    config = InterpolationConfig(base=replace(BASE), latent_scale=BASE.latent_scale, vae=BASE.vae, **overrides)
    return base, cls.from_base(base, config)


def trained_looking(model, seed: int = 1):
    """Give every weight, the zero-initialised new ones included, a random nudge, so the keyframes,
    s, tp and the temporal convs all change the output (as after training)."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def latents(b: int = 2, t: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(b, 4, t, 8, 8, generator=torch.Generator().manual_seed(seed))


def test_fresh_model_predicts_the_t2i_output_for_the_middle_noisy_latent_in_all_three_slots():
    """App. 9: T2I weights on z_t^2, zeros for z_t^1, z_t^3 and the keyframes, output conv x3, zero temporal
    convs, zero s/tp embeddings, zero context: every predicted frame of group g is the T2I U-Net's
    prediction for that group's middle noisy latent with a zero text context."""
    base, model = fresh()
    model.eval()
    b, t = 2, 4
    noisy, keyframes = latents(b, 3 * (t - 1), seed=1), latents(b, t, seed=2)
    timesteps = torch.tensor([10, 700])
    with torch.no_grad():
        out = model.predict(noisy, timesteps, keyframes, torch.tensor([3, 1]), torch.tensor([0, 200]))
        middle = rearrange(noisy, "b c (g k) h w -> (b g) k c h w", k=3)[:, 1]
        expected = base.unet(middle, repeat(timesteps, "b -> (b g)", g=t - 1),
                             encoder_hidden_states=torch.zeros(b * (t - 1), 1, BASE.cross_attention_dim)).sample
        other = model.predict(noisy, timesteps, torch.randn_like(keyframes), torch.tensor([12, 6]), torch.tensor([5, 0]))
    slots = rearrange(out, "b c (g k) h w -> (b g) k c h w", k=3)
    for k in range(3):
        # The extra input channels meet exact zero weights; only summation order may differ.
        torch.testing.assert_close(slots[:, k], expected, rtol=0, atol=1e-6)
        assert torch.equal(slots[:, k], slots[:, 0]), "the replicated output conv gives identical frames"
    assert torch.equal(other, out), "a fresh model ignores keyframes, s and tp"


def test_fresh_mfi_model_is_the_t2i_unet_on_each_noisy_frame():
    base, model = fresh(MaskedInterpolationModel)
    model.eval()
    b, g = 1, 2
    noisy = torch.randn(b, 4, g, 5, 8, 8)
    timesteps = torch.tensor([300])
    with torch.no_grad():
        out = model.predict(noisy, timesteps, latents(b, g + 1), torch.tensor([3]), torch.tensor([0]),
                            torch.tensor([True]))
        frames = rearrange(noisy, "b c g n h w -> (b g n) c h w")
        expected = base.unet(frames, timesteps.repeat(frames.shape[0]),
                             encoder_hidden_states=torch.zeros(frames.shape[0], 1, BASE.cross_attention_dim)).sample
    torch.testing.assert_close(rearrange(out, "b c g n h w -> (b g n) c h w"), expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("cls", MODELS)
@pytest.mark.parametrize("t", [2, 4])
def test_interpolation_gives_4t_minus_3_frames_with_the_keyframes_in_place(cls, t):
    _, model = fresh(cls)
    keyframes = latents(1, t)
    out = fusionframes.interpolate(model, keyframes, steps=2, generator=torch.Generator().manual_seed(0)).latents
    assert out.shape == (1, 4, 4 * t - 3, 8, 8)
    assert torch.equal(out[:, :, ::4], keyframes)
    twice = fusionframes.interpolate(model, out, steps=2, skip=1, generator=torch.Generator().manual_seed(0)).latents
    assert twice.shape == (1, 4, 4 * (4 * t - 3) - 3, 8, 8)
    assert torch.equal(twice[:, :, ::16], keyframes)


def test_interleave_places_three_frames_between_each_pair():
    keyframes = torch.arange(3.0).view(1, 1, 3, 1, 1) * 4  # frames 0, 4, 8
    inbetweens = torch.tensor([1.0, 2, 3, 5, 6, 7]).view(1, 1, 6, 1, 1)
    assert interleave(keyframes, inbetweens).flatten().tolist() == list(range(9))


def test_training_groups_take_keyframes_4r_apart_and_the_three_frames_at_stride_r_between():
    clips = torch.arange(16.0).view(1, 1, 16, 1, 1).repeat(64, 2, 1, 2, 2)  # frame i holds the value i
    seen = {}
    for seed in range(30):
        groups = sample_groups(clips, max_groups=8, generator=torch.Generator().manual_seed(seed))
        r = groups.stride
        keys = groups.keyframes[:, 0, :, 0, 0]
        between = rearrange(groups.inbetweens[:, 0, :, 0, 0], "b (g k) -> b g k", k=3)
        assert torch.equal(keys[:, 1:] - keys[:, :-1], torch.full_like(keys[:, 1:], 4.0 * r))
        expected = keys[:, :-1, None] + r * torch.arange(1.0, 4.0)
        assert torch.equal(between, expected)
        assert keys.min() >= 0 and keys.max() <= 15
        seen[r] = keys.shape[1]
    # 16 frames: stride 1 fits 4 keyframes (0, 4, 8, 12 -> 13 frames), strides 2 and 3 fit 2.
    assert seen == {1: 4, 2: 2, 3: 2}


def test_training_target_is_v_prediction():
    """With linear clips, the in-betweens are the keyframes' linear interpolation, so a predictor that knows
    x0 can return v_t = alpha_t eps - sigma_t x0 = (alpha_t z_t - x0) / sigma_t exactly: the loss is then
    zero, and an epsilon predictor is far off."""
    _, model = fresh(cond_dropout=0.0, max_perturbation=0)
    assert model.config.schedule.prediction_type == "v_prediction"
    alphas = model.config.schedule.training_scheduler().alphas_cumprod
    pattern = torch.randn(4, 4, 1, 8, 8)
    clips = pattern * torch.arange(16.0).view(1, 1, 16, 1, 1)

    def oracle(kind):
        def predict(noisy, timesteps, keyframes, skip, perturbation):
            weights = torch.arange(1.0, 4.0).view(1, 1, 1, 3, 1, 1) / 4
            x0 = keyframes[:, :, :-1, None] + weights * (keyframes[:, :, 1:, None] - keyframes[:, :, :-1, None])
            x0 = rearrange(x0, "b c g k h w -> b c (g k) h w")
            a = alphas[timesteps].sqrt().view(-1, 1, 1, 1, 1)
            s = (1 - alphas[timesteps]).sqrt().view(-1, 1, 1, 1, 1)
            return (a * noisy - x0) / s if kind == "v" else (noisy - a * x0) / s
        return predict

    model.predict = oracle("v")
    assert model.training_losses({"latents": clips}, step=0, total_steps=1)["loss"] < 1e-8
    model.predict = oracle("epsilon")
    assert model.training_losses({"latents": clips}, step=0, total_steps=1)["loss"] > 0.1


def test_context_dropout_zeroes_the_keyframes_of_about_ten_percent_of_clips():
    """Eq. 4's m = 0 at uncond_prob = 10% (§5), seen in what the training step feeds the network."""
    _, model = fresh()
    captured = {}

    def predict(noisy, timesteps, keyframes, skip, perturbation):
        captured.update(keyframes=keyframes, perturbation=perturbation)
        return torch.zeros_like(noisy)

    model.predict = predict
    torch.manual_seed(0)
    n = 4000
    model.training_losses({"latents": torch.randn(n, 4, 5, 2, 2) + 3}, step=0, total_steps=1)
    dropped = (captured["keyframes"] == 0).flatten(1).all(1)
    rate = dropped.float().mean().item()
    assert abs(rate - 0.1) < 4 * (0.1 * 0.9 / n) ** 0.5, rate  # within 4 binomial standard deviations
    assert (captured["perturbation"][dropped] == 0).all(), "m = 0 carries no perturbation level (Eq. 5)"
    assert (captured["perturbation"][~dropped] > 0).float().mean() > 0.9, "tp is drawn from {0..250}"

    keyframes, level = torch.ones(10, 4, 2, 2, 2), torch.full((10,), 7)
    kept_keyframes, kept_level, kept = drop_context(keyframes, level, 0.0)
    assert kept.all() and torch.equal(kept_keyframes, keyframes) and torch.equal(kept_level, level)


def hand_sampler(model, keyframes, *, steps, skip, weight, seed):
    """Eq. 5 written out: (1 + w) z(m=1) - w z(m=0), DDIM, tp = 0 (the keyframes as given). The draws
    follow InterpolationModel.interpolate: perturbation noise (unused at tp = 0), then the start noise."""
    generator = torch.Generator().manual_seed(seed)
    cond = keyframes * model.config.latent_scale
    torch.randn(cond.shape, generator=generator)
    b, c, t, h, w = keyframes.shape
    x = torch.randn((b, c, 3 * (t - 1), h, w), generator=generator)
    scheduler = model.config.schedule.sampler("ddim")
    scheduler.set_timesteps(steps)
    s, zero = torch.full((b,), skip), torch.zeros(b, dtype=torch.long)
    with torch.no_grad():
        for step_t in scheduler.timesteps:
            ts = torch.full((b,), int(step_t))
            v = model.predict(x, ts, cond, s, zero)
            if weight:
                v = (1 + weight) * v - weight * model.predict(x, ts, torch.zeros_like(cond), s, zero)
            x = scheduler.step(v, step_t, x).prev_sample
    return x / model.config.latent_scale


@pytest.mark.parametrize("weight", [0.0, 0.25])
def test_context_guidance_follows_eq5_and_w0_is_plain_conditional_sampling(weight):
    _, model = fresh()
    trained_looking(model)
    keyframes = latents(1, 3)
    out = fusionframes.interpolate(model, keyframes, steps=3, skip=3, guidance=weight, generator=torch.Generator().manual_seed(5)).latents
    expected = hand_sampler(model, keyframes, steps=3, skip=3, weight=weight, seed=5)
    inbetweens = rearrange(rearrange(out[:, :, :-1], "b c (g k) h w -> b c g k h w", k=4)[:, :, :, 1:],
                           "b c g k h w -> b c (g k) h w")
    torch.testing.assert_close(inbetweens, expected, rtol=1e-5, atol=1e-5)
    if weight:
        plain = hand_sampler(model, keyframes, steps=3, skip=3, weight=0.0, seed=5)
        assert (inbetweens - plain).abs().max() > 1e-3, "guidance must change a model that uses its keyframes"


@pytest.mark.parametrize("cls", MODELS)
def test_the_loss_reaches_every_new_part_and_the_whole_model_trains(cls):
    _, model = fresh(cls, cond_dropout=0.0)
    assert all(p.requires_grad for p in model.parameters()), "§5: the entire interpolation model is trained"
    batch = {"latents": torch.randn(2, 4, 16, 8, 8)}
    torch.manual_seed(0)
    model.training_losses(batch, step=0, total_steps=1)["loss"].backward()
    grads = {name: p.grad for name, p in model.named_parameters()}
    assert all(g is not None for g in grads.values())
    nonzero = lambda name: grads[name].abs().sum() > 0  # noqa: E731
    # Zero-initialised parts with non-zero inputs get a gradient at the first step.
    new = [n for n in grads if n.endswith(("temporal.weight", "class_embedding.skip.2.weight",
                                           "class_embedding.perturbation.2.weight"))] + ["net.context"]
    assert len(new) > 4 and all(nonzero(n) for n in new)
    c = BASE.latent_channels
    slot = 1 if cls is InterpolationModel else 0

    def extra_input_grad():  # the zero-initialised input channels: keyframes (+ other noisy frames, or mask)
        g = model.net.unet.conv_in.weight.grad
        return torch.cat([g[:, :slot * c], g[:, (slot + 1) * c:]], 1).abs().sum()

    # FusionFrames' keyframes enter every group's input at once; MFI's reach the three trained frames of
    # a window only through the temporal convs, which start at zero.
    assert (extra_input_grad() > 0) == (cls is InterpolationModel)
    # alpha and the embeddings' first layers see zeros at step 0 (their successors are zero); one update
    # later they learn too.
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    optimizer.step()
    optimizer.zero_grad()
    torch.manual_seed(1)
    model.training_losses(batch, step=1, total_steps=2)["loss"].backward()
    later = [n for n in grads if n.endswith((".alpha", "class_embedding.skip.0.weight"))]
    assert later and all(model.get_parameter(n).grad.abs().sum() > 0 for n in later)
    assert extra_input_grad() > 0


@pytest.mark.parametrize("cls", MODELS)
def test_save_and_load_reproduce_the_model_bit_for_bit(cls, tmp_path):
    _, model = fresh(cls)
    trained_looking(model)
    checkpoint.save_pretrained(model, tmp_path / "interp")
    loaded = checkpoint.from_pretrained(tmp_path / "interp")
    assert type(loaded) is cls and loaded.config == model.config
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
    keyframes = latents(1, 3)
    outputs = [fusionframes.interpolate(m, keyframes, steps=2, tp=20, generator=torch.Generator().manual_seed(3)).latents
               for m in (model, loaded)]
    assert torch.equal(*outputs)


def test_fusionframes_runs_one_unet_image_per_group_and_mfi_five():
    """The source of §6.3's speed-up: per denoising step FusionFrames' U-Net sees 2 x B x (T-1) images
    (conditional and unconditional), MFI 2 x B x (T-1) x 5."""
    counts = {}
    for cls in MODELS:
        _, model = fresh(cls)
        sizes = []
        model.net.unet.conv_in.register_forward_hook(lambda m, args, out: sizes.append(args[0].shape[0]))
        fusionframes.interpolate(model, latents(2, 4), steps=1).latents
        counts[cls] = sizes
    assert counts == {InterpolationModel: [2 * 2 * 3], MaskedInterpolationModel: [2 * 2 * 3 * 5]}


@pytest.mark.parametrize("family", ["interp", "interp-mfi"])
def test_build_copies_a_saved_t2i_base_and_refuses_another_latent_space(family, tmp_path):
    base = t2i()
    checkpoint.save_pretrained(base, tmp_path / "t2i")
    info = LatentSetInfo(vae=BASE.vae, latent_std=2.0, text_encoder="all-MiniLM-L6-v2", frames=16, size=64)
    model = build_generator(family, "tiny", ["cond_dropout=0.2"], tmp_path / "t2i", info)
    assert model.config.vae == BASE.vae and model.config.latent_scale == 0.5 and model.config.cond_dropout == 0.2
    assert torch.equal(model.net.unet.mid_block.attentions[0].proj_in.weight,
                       base.unet.mid_block.attentions[0].proj_in.weight)
    with pytest.raises(UserError, match="latent set"):
        build_generator(family, "tiny", [], tmp_path / "t2i", replace(info, vae="cm-vae@ffffffffffffffff"))
    with pytest.raises(UserError, match="--base"):
        build_generator(family, "tiny", [], None, info)


def test_config_refuses_epsilon_prediction():
    from vidtool.diffusion.schedulers import NoiseSchedule

    with pytest.raises(ValueError, match="v-prediction"):
        InterpolationConfig(base=replace(BASE), schedule=NoiseSchedule())
