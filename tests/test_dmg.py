"""LaMD's diffusion-based motion generator (`dmg`): schedule, conditions, K-step sampling, training."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidtool import checkpoint
from vidtool.errors import UserError
from vidtool.generators.dmg import DMGConfig, DMGModel, preset
from vidtool.pipelines import lamd

TEXT_DIM = 12


def small_config(**overrides) -> DMGConfig:
    base = dict(motion_channels=3, sample_size=4, content_channels=2, block_out_channels=(16, 32), layers_per_block=1,
                attention_head_dim=2, norm_num_groups=8, dropout=0.0, cross_attention_dim=16, text_dim=TEXT_DIM,
                text_max_length=5, sampling_steps=10)
    return DMGConfig(**{**base, **overrides})


def batch(b: int = 3, labels: bool = False) -> dict:
    g = torch.Generator().manual_seed(0)
    out = {"motion": torch.randn(b, 3, 4, 4, generator=g), "content": torch.randn(b, 2, 4, 4, generator=g),
           "text": torch.randn(b, 5, TEXT_DIM, generator=g), "text_mask": torch.ones(b, 5, dtype=torch.bool),
           "null_text": torch.zeros(5, TEXT_DIM), "null_mask": torch.tensor([True, True, False, False, False])}
    if labels:
        out["label"] = torch.tensor([0, 1, 2][:b])
    return out


def test_schedule_is_table_2_linear_ddpm():
    schedule = DMGConfig().schedule
    betas = np.linspace(1e-4, 0.02, 1000, dtype=np.float64)  # DDPM's linear schedule, T = 1000
    alpha_bar = schedule.training_scheduler().alphas_cumprod.double().numpy()
    assert schedule.train_timesteps == 1000
    np.testing.assert_allclose(alpha_bar, np.cumprod(1 - betas), rtol=1e-5)
    assert DMGConfig().sampling_steps == 200


def test_condition_concatenates_content_text_and_label_tokens():
    model = DMGModel(small_config(num_classes=3))
    data = batch(labels=True)
    tokens, mask = model.condition(data["content"], data["text"], data["text_mask"], data["label"])
    assert tokens.shape == (3, 4 * 4 + 5 + 1, 16) and mask.shape == (3, 22)  # h·w content + text + one class token
    no_text, _ = model.condition(data["content"])
    assert no_text.shape == (3, 16 + 1, 16)


def test_sampling_runs_k_network_calls_on_a_subsequence():
    model = DMGModel(small_config()).eval()
    calls = []
    model.unet.register_forward_hook(lambda module, args, kwargs_out: calls.append(args[1].clone()))
    data = batch()
    z = lamd.sample_motion(model, data["content"], steps=7, generator=torch.Generator().manual_seed(0))
    assert z.shape == (3, 3, 4, 4) and len(calls) == 7
    steps = [int(c[0]) for c in calls]
    assert steps == sorted(steps, reverse=True) and len(set(steps)) == 7 and max(steps) <= 999


def test_guidance_doubles_the_batch_only_with_text_and_scale():
    model = DMGModel(small_config()).eval()
    sizes = []
    model.unet.register_forward_hook(lambda module, args, out: sizes.append(args[0].shape[0]))
    data = batch()
    kwargs = dict(text=data["text"], text_mask=data["text_mask"], null_text=data["null_text"],
                  null_mask=data["null_mask"], steps=2)
    lamd.sample_motion(model, data["content"], guidance_scale=1.0, **kwargs)
    lamd.sample_motion(model, data["content"], guidance_scale=3.0, **kwargs)
    assert sizes == [3, 3, 6, 6]


def test_batch_equals_items_one_by_one():
    model = DMGModel(small_config()).eval()
    data = batch()
    null = dict(null_text=data["null_text"], null_mask=data["null_mask"], guidance_scale=2.0, steps=4)
    together = lamd.sample_motion(model, data["content"], text=data["text"], text_mask=data["text_mask"],
                              generator=[torch.Generator().manual_seed(10 + i) for i in range(3)], **null)
    alone = lamd.sample_motion(model, data["content"][2:], text=data["text"][2:], text_mask=data["text_mask"][2:],
                           generator=[torch.Generator().manual_seed(12)], **null)
    assert torch.allclose(together[2:], alone, atol=1e-4)


def test_one_step_lowers_the_loss():
    torch.manual_seed(0)
    model = DMGModel(small_config(num_classes=3, cond_dropout=0.5))
    data = batch(labels=True)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)

    def loss():
        torch.manual_seed(3)  # the same t, noise and dropped conditions
        return model.training_losses(data, step=0, total_steps=1)["loss"]

    first = loss()
    first.backward()
    optimizer.step()
    with torch.no_grad():
        assert loss() < first


def test_bad_conditions_are_user_errors():
    model = DMGModel(small_config(text_dim=None))
    data = batch()
    with pytest.raises(UserError, match="no text"):
        lamd.sample_motion(model, data["content"], text=data["text"], steps=1)
    with pytest.raises(UserError, match="without class labels"):
        lamd.sample_motion(model, data["content"], label=torch.tensor([0, 0, 0]), steps=1)
    with pytest.raises(UserError, match="content latent"):
        lamd.sample_motion(model, torch.zeros(1, 5, 4, 4), steps=1)
    labelled = DMGModel(small_config(num_classes=2))
    with pytest.raises(UserError, match=r"\[0, 1\]"):
        lamd.sample_motion(labelled, data["content"], label=torch.tensor([0, 1, 5]), steps=1)


def test_save_and_load_round_trip(tmp_path):
    model = DMGModel(small_config(vae="mcd-vae@0123456789abcdef")).eval()
    checkpoint.save_pretrained(model, tmp_path / "dmg")
    loaded = checkpoint.from_pretrained(tmp_path / "dmg")
    assert loaded.config == model.config and loaded.config.schedule.beta_schedule == "linear"
    data = batch()
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert torch.equal(lamd.sample_motion(model, data["content"], steps=3, generator=g()),
                       lamd.sample_motion(loaded, data["content"], steps=3, generator=g()))


def test_presets_follow_table_2():
    bair, cater = preset("bair"), preset("cater")
    assert bair.block_out_channels == (192, 384, 768) and bair.layers_per_block == 2
    assert (bair.cross_attention_dim, bair.dropout, bair.sampling_steps) == (512, 0.2, 200)
    assert (bair.sample_size, bair.motion_channels) == (16, 3) and cater.sample_size == 32
    assert bair.cond_transformer_layers == 0 and cater.cond_transformer_layers > 0


def test_paper_presets_are_within_ten_percent_of_table_2_counts():
    from vidtool.generators.dmg import count_parameters

    assert count_parameters(preset("bair"))["total"] == pytest.approx(241e6, rel=0.1)
    assert count_parameters(preset("cater"))["total"] == pytest.approx(282e6, rel=0.1)
