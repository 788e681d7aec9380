"""harivo: a frozen T2I U-Net made into a video model (HARIVO §3, Algorithm 1, App. A and D)."""

from __future__ import annotations

import dataclasses
import signal

import pytest
import torch
from einops import rearrange, repeat

from vidtool import checkpoint
from vidtool.data.latents import LatentSetInfo
from vidtool.diffusion.guidance import cfg_weight, guide
from vidtool.diffusion.mitigating import CfgSchedule, mitigating_gradient
from vidtool.generators import harivo
from vidtool.generators.t2i import T2IConfig, T2IModel
from vidtool.nn.harivo_blocks import with_frame_tokens
from vidtool.train.config import TrainConfig
from vidtool.train.loop import train
from vidtool.pipelines import harivo as harivo_pipeline

# A test-sized base: 8x8x4 latents, 16/32/32 channels, 16-d text tokens, 6 of them.
BASE = T2IConfig(block_out_channels=(16, 32, 32), attention_head_dim=8, cross_attention_dim=16, norm_num_groups=8,
                 text_max_length=6, latent_scale=0.5, vae="movq-temporal@test")
FRAMES = 4
VIDEO = dict(frames=FRAMES, temporal_head_dim=8, mapping_hidden=8, mapping_heads=2, mapping_head_dim=4,
             dc_queue_size=8)
DATA = LatentSetInfo(vae=BASE.vae, latent_std=2.0, text_encoder="test", frames=FRAMES, size=32)


def base_model(seed: int = 0) -> T2IModel:
    torch.manual_seed(seed)
    return T2IModel(dataclasses.replace(BASE))


def video_model(seed: int = 0, **overrides) -> harivo.HarivoModel:
    base = base_model(seed)
    torch.manual_seed(seed + 1)
    return harivo.build("tiny", {**VIDEO, **overrides}, base, DATA)


def make_batch(b: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    length, dim = BASE.text_max_length, BASE.cross_attention_dim
    mask = torch.zeros(b, length, dtype=torch.bool)
    mask[:, :4] = True
    return {"latents": torch.randn(b, 4, FRAMES, 8, 8, generator=g), "text": torch.randn(b, length, dim, generator=g),
            "text_mask": mask, "null_text": torch.zeros(b, length, dim), "null_mask": mask & False,
            "prompt": ["a"] * b}


def perturb_zero_initialised(model: harivo.HarivoModel, scale: float = 0.05) -> None:
    """Stand-in for training: give every trainable parameter a random nudge."""
    with torch.no_grad():
        for p in model.parameters():
            if p.requires_grad:
                p.add_(scale * torch.randn_like(p))


def per_frame_t2i(base: T2IModel, x: torch.Tensor, t: torch.Tensor, text: torch.Tensor, mask: torch.Tensor):
    f = x.shape[2]
    out = base.predict(rearrange(x, "b c f h w -> (b f) c h w"), repeat(t, "b -> (b f)", f=f),
                       repeat(text, "b m d -> (b f) m d", f=f), repeat(mask, "b m -> (b f) m", f=f))
    return rearrange(out, "(b f) c h w -> b c f h w", f=f)


def test_frozen_base_stays_bit_identical_through_optimizer_steps():
    source = base_model()
    model = video_model()
    before = {k: v.clone() for k, v in model.base.state_dict().items()}
    trainable_before = {k: p.clone() for k, p in model.named_parameters() if p.requires_grad}
    assert not any(p.requires_grad for p in model.base.parameters())
    assert trainable_before and all(not k.startswith("base.") for k in trainable_before)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3, weight_decay=0.1)
    for step in range(3):
        model.training_losses(make_batch(seed=step), step=step, total_steps=3)["loss"].backward()
        optimizer.step()
        optimizer.zero_grad()
    for key, value in model.base.state_dict().items():
        assert torch.equal(value, before[key]), key
        assert torch.equal(value, source.state_dict()[key]), key  # build() copied the base exactly
    changed = [k for k, p in model.named_parameters() if p.requires_grad and not torch.equal(p, trainable_before[k])]
    assert len(changed) == len(trainable_before)


def test_untrained_video_model_is_the_t2i_model_per_frame():
    """Zero-initialised temporal layers and mapping network add exact zeros (§3.1, App. A)."""
    model = video_model(frame_tokens=0)
    batch = make_batch()
    x, t = batch["latents"], torch.tensor([10, 700])
    with torch.no_grad():
        expected = per_frame_t2i(model.base, x, t, batch["text"], batch["text_mask"])
        assert torch.equal(model.predict(x, t, batch["text"], batch["text_mask"]), expected)
        perturb_zero_initialised(model)
        trained = model.predict(x, t, batch["text"], batch["text_mask"])
    assert not torch.allclose(trained, expected, atol=1e-3)


def test_frame_tokens_extend_each_frames_text_and_mask():
    """With K tokens per frame the untrained model is the T2I model with each frame's cross-attention
    seeing text + that frame's K tokens (§3.5), and the mask marks those K tokens attendable."""
    model = video_model()
    batch = make_batch()
    text, mask = batch["text"], batch["text_mask"]
    x, t = batch["latents"], torch.tensor([500, 900])
    with torch.no_grad():
        tokens = model.token_generator(text, FRAMES)
        assert tokens.shape == (2, FRAMES, 3, BASE.cross_attention_dim)
        text_f, mask_f = with_frame_tokens(text, mask, tokens, FRAMES)
        assert text_f.shape == (2 * FRAMES, BASE.text_max_length + 3, BASE.cross_attention_dim)
        assert mask_f[:, :4].all() and not mask_f[:, 4:6].any() and mask_f[:, 6:].all()
        assert torch.equal(text_f[FRAMES + 2, 6:], tokens[1, 2])  # clip 1, frame 2 gets its own tokens
        expected = model.base.predict(rearrange(x, "b c f h w -> (b f) c h w"), repeat(t, "b -> (b f)", f=FRAMES),
                                      text_f, mask_f)
        got = rearrange(model.predict(x, t, text, mask), "b c f h w -> (b f) c h w")
    assert torch.equal(got, expected)


def test_t2i_path_of_l_reg_skips_temporal_layers_and_frame_tokens():
    """Eq. 2's f_{l^M, phi}: mapping network + frozen U-Net per frame; with an identity mapping
    network it is the T2I model even when the temporal layers are trained."""
    model = video_model()
    perturb_zero_initialised(model)
    with torch.no_grad():
        for p in model.mapping.parameters():
            p.zero_()
        batch = make_batch()
        x, t = batch["latents"], torch.tensor([10, 700])
        expected = per_frame_t2i(model.base, x, t, batch["text"], batch["text_mask"])
        assert torch.equal(model.predict_t2i(x, t, batch["text"], batch["text_mask"]), expected)


@pytest.mark.parametrize("term", ["simple", "trs", "reg", "dc"])
def test_each_loss_sends_gradients_to_trainable_parts_only(term):
    model = video_model()
    model.training_losses(make_batch(), step=0, total_steps=1)[term].backward()
    assert all(p.grad is None for p in model.base.parameters())
    reached = {name.split(".")[0] for name, p in model.named_parameters()
               if p.requires_grad and p.grad is not None and p.grad.abs().sum() > 0}
    assert reached, f"L_{term} reaches no trainable parameter"
    if term == "dc":
        assert "projection" in reached
    if term == "reg":  # at init the two paths differ only by the frame-wise tokens
        assert "token_generator" in reached


def test_recorded_pass_collects_decoder_self_attention_change_and_h_space():
    """L_TRS reads the decoder's spatial self-attention: two CrossAttnUp blocks of two transformers
    at 4x4 and 8x8 (16 and 64 queries), each with 8 heads (diffusers' UNet2DConditionModel takes
    `attention_head_dim` as the head count); L_DC reads the mid-block output at 2x2. Each layer's
    record is Eq. 3's frame-to-frame change of its softmax(q k^T) maps, which a hook here computes
    from the maps themselves."""
    model = video_model()
    batch = make_batch()
    maps = []

    def keep_maps(module, args, kwargs):
        x = args[0] if args else kwargs["hidden_states"]
        q = rearrange(module.to_q(x), "n s (h d) -> n h s d", h=module.heads)
        k = rearrange(module.to_k(x), "n s (h d) -> n h s d", h=module.heads)
        maps.append(torch.softmax(q @ k.transpose(-1, -2) * module.scale, dim=-1))

    for name, module in model.base.unet.up_blocks.named_modules():
        if name.endswith("attn1"):
            module.register_forward_pre_hook(keep_maps, with_kwargs=True)
    with torch.no_grad():
        rec = model._predict(batch["latents"], torch.tensor([5, 50]), batch["text"], batch["text_mask"],
                             temporal=True, record=True).recording
    assert [tuple(a.shape) for a in maps] == [(8, 8, 16, 16)] * 2 + [(8, 8, 64, 64)] * 2
    assert len(rec.attention_change) == 4
    for a, change in zip(maps, rec.attention_change):
        a = rearrange(a, "(b f) h q k -> b f h q k", f=FRAMES)
        torch.testing.assert_close(change, (a[:, 1:] - a[:, :-1]).abs().mean(dim=(0, 2, 3, 4)))
    assert rec.h.shape == (2 * FRAMES, 32, 2, 2)


def test_attention_change_in_query_chunks_equals_the_whole_maps():
    from vidtool.generators.harivo import attention_change

    q, k = torch.randn(2 * FRAMES, 2, 10, 4), torch.randn(2 * FRAMES, 2, 10, 4)
    a = rearrange(torch.softmax(q @ k.transpose(-1, -2) * 0.5, dim=-1), "(b f) h q k -> b f h q k", f=FRAMES)
    whole = (a[:, 1:] - a[:, :-1]).abs().mean(dim=(0, 2, 3, 4))
    torch.testing.assert_close(attention_change(q, k, 0.5, FRAMES, chunk=3), whole)


def test_trs_loss_weights_decoder_layers_by_depth():
    """Eq. 3 with lambda_i = i/N: layer 1 of 2 counts half, layer 2 fully; frame pairs add up."""
    model = video_model()
    # one layer whose frame pairs (1,2) and (2,3) each differ by 1/2, then one 3x as far
    change = torch.zeros(FRAMES - 1)
    change[1:3] = 0.5
    assert model._trs_loss([change, 3 * change]).item() == pytest.approx(0.5 * 1.0 + 1.0 * 3.0)


def test_dc_queue_keeps_normalised_positives_of_earlier_steps():
    model = video_model()
    model.training_losses(make_batch(b=3), step=0, total_steps=2)
    assert int(model.dc_queue_count) == 6
    norms = model.dc_queue[:6].norm(dim=-1)
    torch.testing.assert_close(norms, torch.ones(6))
    assert torch.equal(model.dc_queue[6:], torch.zeros(2, model.dc_queue.shape[1]))
    model.training_losses(make_batch(b=3, seed=1), step=1, total_steps=2)
    assert int(model.dc_queue_count) == 8  # capped at dc_queue_size


def test_mg_term_is_the_kernel_gradient_of_eq_7():
    """Algorithm 1 line 4 equals -omega times the gradient of exp(-||x0_j - x0_{j-1}||^2 / S) with
    respect to the later frame x0_j (S fixed), frame 0 gets nothing, and a small step along it pulls
    each frame's predicted x0 towards the previous one."""
    g = torch.Generator().manual_seed(3)
    x, eps = torch.randn(2, 4, 5, 3, 3, generator=g), torch.randn(2, 4, 5, 3, 3, generator=g)
    alpha_bar = torch.tensor(0.3)
    term = mitigating_gradient(x, eps, alpha_bar)
    x0 = ((x - (1 - alpha_bar).sqrt() * eps) / alpha_bar.sqrt()).requires_grad_(True)
    diff = x0[:, :, 1:] - x0[:, :, :-1]
    dist = diff.detach().square().sum(dim=(1, 3, 4)).sqrt()
    s = dist.median(dim=1).values.square() / torch.log(torch.tensor(4.0))
    later = x0[:, :, 1:]
    kernel = torch.exp(-(later - x0[:, :, :-1].detach()).square().sum(dim=(1, 3, 4)) / s[:, None]).sum()
    (grad,) = torch.autograd.grad(kernel, later)
    omega = ((1 - alpha_bar) / alpha_bar).sqrt()
    assert torch.equal(term[:, :, 0], torch.zeros_like(term[:, :, 0]))
    torch.testing.assert_close(term[:, :, 1:], -omega * grad)
    nudged = x0.detach() - omega * 0.01 * term  # x0 after eps += 0.01 * term
    before = diff.detach().square().sum(dim=(1, 3, 4))
    after = (nudged[:, :, 1:] - x0.detach()[:, :, :-1]).square().sum(dim=(1, 3, 4))
    assert (after < before).all()


def test_mg_sampling_with_alpha_zero_is_plain_cfg_ddim():
    model = video_model()
    perturb_zero_initialised(model)
    batch = make_batch(b=1)
    text, mask, null_text, null_mask = batch["text"], batch["text_mask"], batch["null_text"][0], batch["null_mask"][0]
    cfg = CfgSchedule()
    steps = 4
    got = harivo_pipeline.generate(model, text, mask, null_text, null_mask, frames=FRAMES, steps=steps, cfg=cfg,
                         generator=torch.Generator().manual_seed(7), alpha=0.0).latents
    smoothed = harivo_pipeline.generate(model, text, mask, null_text, null_mask, frames=FRAMES, steps=steps, cfg=cfg,
                              generator=torch.Generator().manual_seed(7), alpha=40.0).latents

    x = torch.randn(1, 4, FRAMES, 8, 8, generator=torch.Generator().manual_seed(7))
    scheduler = BASE.schedule.sampler("ddim")
    scheduler.set_timesteps(steps)
    scales = []
    with torch.no_grad():
        for t in scheduler.timesteps:
            ts = torch.full((1,), int(t))
            # cond and uncond in one batch, as generate() runs them, so the sums are the same
            both = model.predict(torch.cat([x, x]), torch.cat([ts, ts]), torch.cat([text, null_text[None]]),
                                 torch.cat([mask, null_mask[None]]))
            cond, uncond = both.chunk(2)
            scales.append(12.5 if int(t) >= 700 else 7.5)  # App. D: stronger guidance near T
            x = scheduler.step(guide(cond, uncond, cfg_weight(scales[-1])), t, x).prev_sample
    assert 12.5 in scales and 7.5 in scales
    assert torch.equal(got, x / BASE.latent_scale)
    assert not torch.allclose(smoothed, got, atol=1e-3)


def test_save_load_round_trip_is_bit_exact(tmp_path):
    model = video_model()
    perturb_zero_initialised(model)
    model.training_losses(make_batch(), step=0, total_steps=1)  # fills the negative queue
    checkpoint.save_pretrained(model, tmp_path / "harivo")
    loaded = checkpoint.from_pretrained(tmp_path / "harivo")
    assert isinstance(loaded, harivo.HarivoModel) and loaded.config == model.config
    state, reloaded = model.state_dict(), loaded.state_dict()
    assert state.keys() == reloaded.keys() and "dc_queue" in state
    for key in state:
        assert torch.equal(state[key], reloaded[key]), key
    assert not any(p.requires_grad for p in loaded.base.parameters())
    batch = make_batch()
    t = torch.tensor([300, 600])
    with torch.no_grad():
        assert torch.equal(model.predict(batch["latents"], t, batch["text"], batch["text_mask"]),
                           loaded.predict(batch["latents"], t, batch["text"], batch["text_mask"]))


class LatentClips(torch.utils.data.Dataset):
    """Items shaped like vidtool.data.latents.LatentDataset's."""

    def __init__(self, count: int = 6):
        self.batch = make_batch(b=count, seed=5)

    def __len__(self) -> int:
        return len(self.batch["prompt"])

    def __getitem__(self, i: int) -> dict:
        return {k: v[i] for k, v in self.batch.items()}


def test_training_resumes_bit_identically_with_the_negative_queue(tmp_path):
    """The queue is model state (a persistent buffer): a run stopped and resumed ends where an
    uninterrupted one does, queue included."""
    config = TrainConfig(steps=4, batch_size=2, lr=1e-3, device="cpu", checkpoint_every=4, log_every=1, seed=3)
    full = video_model()
    train(full, LatentClips(), None, config, tmp_path / "full", progress=False)
    with pytest.raises(SystemExit):
        train(video_model(), LatentClips(), None, config, tmp_path / "split", progress=False,
              on_log=lambda r: r["step"] == 2 and signal.raise_signal(signal.SIGTERM))
    resumed = video_model(seed=9)  # other init: everything must come from the saved state
    train(resumed, LatentClips(), None, dataclasses.replace(config, resume=True), tmp_path / "split", progress=False)
    assert int(full.dc_queue_count) == 8
    for key, value in full.state_dict().items():
        assert torch.equal(resumed.state_dict()[key], value), key


def test_build_needs_a_base_and_enough_frames():
    with pytest.raises(ValueError, match="t2i"):
        harivo.build("tiny", VIDEO, None, DATA)
    with pytest.raises(ValueError, match="frames"):
        harivo.build("tiny", {**VIDEO, "frames": 8}, base_model(), DATA)
    model = video_model()
    assert model.config.vae == BASE.vae and model.config.latent_scale == BASE.latent_scale
    with pytest.raises(ValueError, match="at most 4 frames"):
        model.predict(torch.zeros(1, 4, 5, 8, 8), torch.tensor([1]), make_batch(b=1)["text"],
                      make_batch(b=1)["text_mask"])
