"""keyframes: FusionFrames' keyframe U-Net, a frozen T2I U-Net plus temporal blocks (§4.1, Fig. 3, §5)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from einops import rearrange, repeat

from vidtool import checkpoint
from vidtool.data.latents import LatentSetInfo
from vidtool.errors import UserError
from vidtool.generators.build import build_generator
from vidtool.generators.keyframes import TEMPORAL_VARIANTS, KeyframeConfig, KeyframeModel, sample_keyframes
from vidtool.generators.t2i import T2IConfig, T2IModel
from vidtool.nn.temporal_blocks import TemporalAttention
from vidtool.train.config import TrainConfig
from vidtool.train.loop import train
from vidtool.pipelines import fusionframes

# A test-sized T2I base: 8x8x4 latents, two levels (attention at 8x8 and in the 4x4 mid block).
BASE = T2IConfig(block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=8, norm_num_groups=8,
                 latent_scale=0.5, vae="movq-temporal@0123456789abcdef")
TEXT_DIM, TEXT_LEN = 384, 32


def t2i(seed: int = 0) -> T2IModel:
    torch.manual_seed(seed)
    return T2IModel(dataclasses.replace(BASE))


def keyframe_model(temporal: str = "conv1d_attn1d_blocks", base: T2IModel | None = None, **options) -> KeyframeModel:
    base = base or t2i()
    model = KeyframeModel(KeyframeConfig(base=dataclasses.replace(BASE), temporal=temporal, position_dim=16, **options))
    model.base.load_state_dict(base.state_dict())
    return model.eval()


def perturb_temporal(model: KeyframeModel, seed: int = 1) -> None:
    """Stand-in for training: every temporal parameter moved off its initialisation."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in model.temporal.parameters():
            p.add_(0.1 * torch.randn_like(p))


def prompts(batch: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    mask = torch.zeros(batch, TEXT_LEN, dtype=torch.bool)
    mask[:, :6] = True
    return torch.randn(batch, TEXT_LEN, TEXT_DIM, generator=g) * mask[..., None], mask


def null_prompt() -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.zeros(TEXT_LEN, dtype=torch.bool)
    mask[:2] = True
    return torch.zeros(TEXT_LEN, TEXT_DIM), mask


def inputs(batch: int = 2, frames: int = 3, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    noisy = torch.randn(batch, 4, frames, 8, 8, generator=g)
    timesteps = torch.randint(0, 1000, (batch,), generator=g)
    return (noisy, timesteps, *prompts(batch, seed))


@pytest.mark.parametrize("temporal", list(TEMPORAL_VARIANTS))
def test_untrained_keyframe_model_predicts_what_the_t2i_model_predicts_for_each_frame(temporal):
    image_model = t2i()
    model = keyframe_model(temporal, base=image_model)
    noisy, timesteps, text, mask = inputs()
    with torch.no_grad():
        got = model.predict(noisy, timesteps, text, mask)
        expected = image_model.predict(rearrange(noisy, "b c t h w -> (b t) c h w"), repeat(timesteps, "b -> (b t)", t=3),
                                       repeat(text, "b l d -> (b t) l d", t=3), repeat(mask, "b l -> (b t) l", t=3))
    assert torch.equal(got, rearrange(expected, "(b t) c h w -> b c t h w", t=3))


@pytest.mark.parametrize("temporal", list(TEMPORAL_VARIANTS))
def test_trained_temporal_parts_mix_the_frames_of_a_clip_but_never_two_clips(temporal):
    model = keyframe_model(temporal)
    perturb_temporal(model)
    noisy, timesteps, text, mask = inputs()
    changed = noisy.clone()
    changed[0, :, 0] += torch.randn(4, 8, 8)  # clip 0, frame 0
    with torch.no_grad():
        before, after = model.predict(noisy, timesteps, text, mask), model.predict(changed, timesteps, text, mask)
    assert not torch.allclose(before[0, :, 1:], after[0, :, 1:])  # the other frames of clip 0 see it
    assert torch.equal(before[1], after[1])  # clip 1 does not


@pytest.mark.parametrize(("window", "reached", "not_reached"), [(1, (0, 0), (1, 1)), (2, (1, 1), (2, 2))],
                         ids=["attn1d", "attn3d"])
def test_temporal_attention_sees_all_frames_of_its_window_only(window, reached, not_reached):
    torch.manual_seed(0)
    attention = TemporalAttention(16, heads=2, position_dim=8, window=window)
    with torch.no_grad():
        attention.out.weight.normal_()  # a trained output projection
        x = torch.randn(1, 16, 4, 4, 4)
        changed = x.clone()
        changed[0, :, 0, 0, 0] += torch.randn(16)  # frame 0, position (0, 0)
        positions = torch.randn(1, 4, 8)
        before, after = attention(x, positions), attention(changed, positions)
    assert not torch.allclose(before[0, :, 3, reached[0], reached[1]], after[0, :, 3, reached[0], reached[1]])
    assert torch.equal(before[0, :, 3, not_reached[0], not_reached[1]], after[0, :, 3, not_reached[0], not_reached[1]])


def test_keyframes_are_taken_frame_skip_apart_from_a_random_start():
    clips = repeat(torch.arange(16.0), "t -> b c t h w", b=64, c=1, h=1, w=1)  # frame i holds the value i
    picked = sample_keyframes(clips, 4, 4)[:, 0, :, 0, 0]  # [64, 4]
    starts = picked[:, 0]
    assert torch.equal(picked, starts[:, None] + torch.tensor([0.0, 4, 8, 12]))  # 8 fps -> 2 fps
    assert set(starts.tolist()) == {0.0, 1.0, 2.0, 3.0}  # every start whose last keyframe fits in 16 frames
    with pytest.raises(UserError, match="need clips of 13 frames"):
        sample_keyframes(clips[:, :, :12], 4, 4)


def latent_batch(batch: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    text, mask = prompts(batch, seed)
    null_text, null_mask = null_prompt()
    return {"latents": torch.randn(batch, 4, 16, 8, 8, generator=g), "text": text, "text_mask": mask,
            "null_text": repeat(null_text, "l d -> b l d", b=batch), "null_mask": repeat(null_mask, "l -> b l", b=batch),
            "prompt": ["a red circle moving right"] * batch}


def test_loss_sends_gradients_into_the_temporal_parts_only():
    model = keyframe_model().train()
    loss = model.training_losses(latent_batch(), step=0, total_steps=1)["loss"]
    loss.backward()
    assert all(p.grad is None and not p.requires_grad for p in model.base.parameters())
    temporal = dict(model.named_parameters())
    temporal = {name: p for name, p in temporal.items() if not name.startswith("base.")}
    assert temporal and all(p.grad is not None for p in temporal.values())
    # At the zero initialisation only the output projections receive a non-zero gradient.
    outputs = [p for name, p in temporal.items() if name.endswith(("out.weight", "up.weight", "layers.5.weight"))]
    assert outputs and all(p.grad.abs().sum() > 0 for p in outputs)



def test_train_cross_attention_opens_only_the_bases_text_cross_attention():
    """The tiny recipe's remedy for a base that reads no direction word (issue 31): the base's attn2
    layers train beside the temporal blocks; every other base weight stays frozen and gets no gradient."""
    model = keyframe_model(train_cross_attention=True).train()
    model.training_losses(latent_batch(), step=0, total_steps=1)["loss"].backward()
    opened = {name for name, p in model.base.named_parameters() if p.requires_grad}
    assert opened and all(".attn2." in name for name in opened)
    assert {name for name in dict(model.base.named_parameters()) if ".attn2." in name} == opened
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for name, p in model.base.named_parameters()
               if name in opened and name.endswith(("to_k.weight", "to_v.weight")))
    assert all(p.grad is None for name, p in model.base.named_parameters() if name not in opened)
    # Without the option (FusionFrames as published, and the paper preset) the base stays wholly frozen.
    assert not any(p.requires_grad for p in keyframe_model().base.parameters())

class InMemoryLatents(torch.utils.data.Dataset):
    """Items shaped like vidtool.data.latents.LatentDataset's."""

    def __init__(self, count: int = 4):
        self.batch = latent_batch(count, seed=3)

    def __len__(self) -> int:
        return self.batch["latents"].shape[0]

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.batch.items()}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A keyframe model after three AdamW steps of the real trainer, its base before, and its folder."""
    model = keyframe_model("conv1d_attn3d_blocks")
    base_before = {k: v.clone() for k, v in model.base.state_dict().items()}
    temporal_before = {k: v.clone() for k, v in model.temporal.state_dict().items()}
    out = tmp_path_factory.mktemp("keyframes")
    train(model, InMemoryLatents(), None, TrainConfig(steps=3, batch_size=2, lr=1e-3, warmup_steps=0, device="cpu",
                                                      checkpoint_every=3, log_every=1), out, progress=False)
    return model.eval(), base_before, temporal_before, out


def test_training_leaves_the_frozen_t2i_weights_bit_identical(trained):
    model, base_before, temporal_before, _ = trained
    assert all(torch.equal(v, base_before[k]) for k, v in model.base.state_dict().items())
    assert any(not torch.equal(v, temporal_before[k]) for k, v in model.temporal.state_dict().items())


def test_save_and_load_reproduce_predictions_and_samples_bit_for_bit(trained):
    model, _, _, folder = trained
    loaded = checkpoint.from_pretrained(folder)
    assert isinstance(loaded, KeyframeModel) and loaded.config == model.config
    noisy, timesteps, text, mask = inputs(seed=5)
    null_text, null_mask = null_prompt()
    with torch.no_grad():
        assert torch.equal(loaded.predict(noisy, timesteps, text, mask), model.predict(noisy, timesteps, text, mask))
    samples = [fusionframes.sample_keyframes(m, text, mask, null_text, null_mask, frames=3, steps=2, cfg=3.0,
                          generator=[torch.Generator().manual_seed(i) for i in range(2)]).latents for m in (model, loaded)]
    assert torch.equal(*samples)


def test_a_batch_samples_what_its_items_sample_one_by_one():
    model = keyframe_model()
    perturb_temporal(model)
    text, mask = prompts(2)
    null_text, null_mask = null_prompt()
    options = dict(frames=3, steps=3, cfg=4.0)
    together = fusionframes.sample_keyframes(model, text, mask, null_text, null_mask, generator=[torch.Generator().manual_seed(s) for s in (7, 8)],
                              **options).latents
    alone = torch.cat([fusionframes.sample_keyframes(model, text[i:i + 1], mask[i:i + 1], null_text, null_mask,
                                      generator=[torch.Generator().manual_seed(7 + i)], **options).latents for i in range(2)])
    assert together.shape == (2, 4, 3, 8, 8)
    # Batched and single matmuls round differently with several threads (~1e-4 after 3 CFG steps);
    # a wrong seed or a shared noise draw would differ by order 1.
    torch.testing.assert_close(together, alone, rtol=0, atol=1e-3)
    assert not torch.allclose(together[0], together[1], atol=1e-3)


def test_generate_returns_latents_divided_by_the_latent_scale():
    unit = keyframe_model(base=t2i())
    unit.config.base.latent_scale = 1.0
    halved = keyframe_model(base=t2i())  # BASE.latent_scale = 0.5
    text, mask = prompts(1)
    null_text, null_mask = null_prompt()
    got = [fusionframes.sample_keyframes(m, text, mask, null_text, null_mask, frames=2, steps=2, cfg=2.0,
                      generator=[torch.Generator().manual_seed(0)]).latents for m in (unit, halved)]
    assert torch.equal(got[1], 2 * got[0])


def test_frames_beyond_the_position_table_are_refused():
    model = keyframe_model(max_position=16)  # positions 0, 4, 8, 12 fit; a fifth keyframe (16) does not
    assert torch.equal(model.positions(4), torch.tensor([0, 4, 8, 12]))
    with pytest.raises(UserError, match="at most 4 frames"):
        model.positions(5)


def test_build_freezes_the_t2i_folder_and_checks_the_clip_length(tmp_path):
    checkpoint.save_pretrained(t2i(seed=4), tmp_path / "t2i")
    data = LatentSetInfo(vae=BASE.vae, latent_std=2.0, text_encoder="all-MiniLM-L6-v2", frames=16, size=64)
    model = build_generator("keyframes", "tiny", ["temporal=conv3d_attn1d_blocks", "position_dim=16"],
                            tmp_path / "t2i", data)
    folder_weights = checkpoint.from_pretrained(tmp_path / "t2i").state_dict()
    assert all(torch.equal(v, folder_weights[k]) for k, v in model.base.state_dict().items())
    assert model.config.base.block_out_channels == BASE.block_out_channels and model.fps == 2.0
    assert not any(p.requires_grad for p in model.base.parameters())
    assert all(p.requires_grad for p in model.temporal.parameters())
    with pytest.raises(UserError, match="need clips of 13 frames"):
        build_generator("keyframes", "tiny", [], tmp_path / "t2i", dataclasses.replace(data, frames=8))


# --- PYoCo's mixed noise prior (noise_correlation) ---------------------------------------------


def test_correlated_frame_noise_is_standard_normal_per_frame_and_correlates_by_rho():
    from vidtool.diffusion.noise import initial_video_noise

    noise = initial_video_noise((4, 3, 32, 32), 64, torch.Generator().manual_seed(0), 0.6)
    assert noise.shape == (64, 4, 3, 32, 32)
    assert abs(float(noise.std()) - 1.0) < 0.02 and abs(float(noise.mean())) < 0.02
    frames = rearrange(noise, "b c t h w -> t (b c h w)")
    correlation = torch.corrcoef(frames)
    for i, j in ((0, 1), (0, 2), (1, 2)):
        assert abs(float(correlation[i, j]) - 0.6) < 0.02


def test_zero_correlation_draws_the_same_noise_as_before():
    from vidtool.diffusion.noise import initial_noise, initial_video_noise

    gens = lambda: [torch.Generator().manual_seed(s) for s in (3, 4)]  # noqa: E731
    assert torch.equal(initial_video_noise((4, 3, 8, 8), 2, gens(), 0.0), initial_noise((4, 3, 8, 8), 2, gens()))


def test_keyframe_sampling_and_training_use_the_configured_noise_prior(monkeypatch):
    from vidtool.generators import keyframes

    text, mask = prompts(1)
    null_text, null_mask = null_prompt()
    # With the temporal parts untrained (identity) every frame is the base's own sample from its
    # noise: strongly shared noise makes the frames alike, independent noise does not.
    alike = []
    for rho in (0.0, 0.9):
        keys = fusionframes.sample_keyframes(keyframe_model(noise_correlation=rho), text, mask, null_text, null_mask,
                                             frames=3, steps=3, cfg=2.0,
                                             generator=[torch.Generator().manual_seed(0)]).latents[0]
        alike.append(float(torch.corrcoef(rearrange(keys, "c t h w -> t (c h w)"))[0, 1:].mean()))
    assert alike[1] > 0.8 and alike[0] < 0.5, alike
    # Training draws its noise with the same prior: the targets (the noise) correlate across frames.
    seen, real = [], keyframes.diffusion_pair

    def spy(schedule, clean, *args, noise=None, **kwargs):
        seen.append(noise)
        return real(schedule, clean, *args, noise=noise, **kwargs)

    monkeypatch.setattr(keyframes, "diffusion_pair", spy)
    keyframe_model(noise_correlation=0.9).train().training_losses(latent_batch(8), step=1, total_steps=1)
    frames = rearrange(seen[0], "b c t h w -> t (b c h w)")
    assert abs(float(torch.corrcoef(frames)[0, 1]) - 0.9) < 0.05


def test_a_noise_correlation_outside_0_1_is_refused():
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="noise_correlation"):
            KeyframeConfig(base=dataclasses.replace(BASE), noise_correlation=bad)
