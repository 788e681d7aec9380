"""MotionAura's masked discrete diffusion, spectral transformer and sketch-inpainting LoRA."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from vidtool import checkpoint
from vidtool.errors import UserError
from vidtool.diffusion.masked import MaskSchedule, corrupt, draw, invert_cdf, masked_cross_entropy, sample, uniforms
from vidtool.generators.spectral_inpaint import SpectralInpaintConfig, SpectralInpaintModel
from vidtool.generators.spectral_transformer import PRESETS, SpectralTransformer, SpectralTransformerConfig, preset
from vidtool.nn.lora import LoRA, ParallelLoRALinear, SequentialLoRALinear
from vidtool.nn.rope import apply_rope, grid_positions, rope_angles
from vidtool.pipelines import motionaura

SMALL = SpectralTransformerConfig(dim=32, heads=2, blocks=2, time_embedding_dim=16, codebook_size=64, text_dim=12,
                                  token_frames=2, token_height=4, token_width=4, tokenizer="mbq-vae@0123456789abcdef")


def batch_of(b: int = 3, config: SpectralTransformerConfig = SMALL, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    shape = (b, config.token_frames, config.token_height, config.token_width)
    region = torch.zeros(shape, dtype=torch.bool)
    region[:, :, 1:3, 1:3] = True
    return {"tokens": torch.randint(0, config.codebook_size, shape, generator=g), "fps": torch.full((b,), 8.0),
            "text": torch.randn(b, 5, config.text_dim, generator=g), "text_mask": torch.ones(b, 5, dtype=torch.bool),
            "null_text": torch.zeros(5, config.text_dim), "null_mask": torch.ones(5, dtype=torch.bool),
            "masked_tokens": torch.randint(0, config.codebook_size, shape, generator=g), "region": region,
            "sketch": (torch.rand(b, 1, 32, 32, generator=g) > 0.8).float()}


@pytest.mark.parametrize("kind", ["cosine", "linear"])
def test_mask_schedule_runs_from_clean_at_t0_to_all_masked_at_t1(kind):
    schedule = MaskSchedule(kind)
    t = torch.linspace(0, 1, 101)
    ratio = schedule.ratio(t)
    assert ratio[0] == 0 and ratio[-1] == 1
    assert (ratio.diff() > 0).all()
    torch.testing.assert_close(schedule.time_of(ratio), t, atol=1e-5, rtol=0)


def test_corrupt_masks_the_scheduled_count_and_only_maskable_places():
    tokens = torch.randint(0, 50, (4, 100))
    maskable = torch.zeros(4, 100, dtype=torch.bool)
    maskable[:, :40] = True
    t = torch.tensor([0.0, 1 / 3, 0.5, 1.0])
    z_t, masked = corrupt(tokens, t, MaskSchedule("cosine"), 50, maskable)
    expected = [1, round(math.sin(math.pi / 6) * 40), round(math.sin(math.pi / 4) * 40), 40]  # at least one
    assert masked.sum(1).tolist() == expected
    assert not masked[:, 40:].any()
    assert (z_t[masked] == 50).all() and torch.equal(z_t[~masked], tokens[~masked])


def test_loss_counts_masked_places_only():
    target = torch.randint(0, 8, (2, 6))
    masked = torch.tensor([[1, 0, 1, 0, 0, 0], [0, 0, 0, 1, 0, 0]], dtype=torch.bool)
    logits = torch.randn(2, 6, 8)
    changed = logits.clone()
    changed[~masked] = torch.randn(int((~masked).sum()), 8) * 100  # anything at the unmasked places
    assert masked_cross_entropy(logits, target, masked) == masked_cross_entropy(changed, target, masked)
    by_hand = -torch.log_softmax(logits, -1).gather(-1, target[..., None])[..., 0][masked].mean()
    torch.testing.assert_close(masked_cross_entropy(logits, target, masked), by_hand)


def test_sampler_fills_every_mask_and_never_changes_a_given_token():
    tokens = torch.randint(0, 16, (3, 40))
    holes = torch.rand(3, 40) < 0.6
    start = tokens.masked_fill(holes, 16)
    calls = []

    def logits_fn(x, t):
        calls.append(t)
        return torch.randn(*x.shape, 16) * 3

    out = sample(logits_fn, start, 16, steps=5, schedule=MaskSchedule("cosine"),
                 generators=[torch.Generator().manual_seed(i) for i in range(3)])
    assert (out != 16).all()
    assert torch.equal(out[~holes], tokens[~holes])
    assert len(calls) == 5 and (calls[0] > calls[-1]).all()  # t falls as tokens are revealed


def test_sampler_is_deterministic_by_seed_and_keeps_the_most_confident():
    logits = torch.randn(1, 12, 10)

    def logits_fn(x, t):
        return logits

    start = torch.full((1, 12), 10)
    runs = [sample(logits_fn, start, 10, steps=3, schedule=MaskSchedule("linear"), temperature=0) for _ in range(2)]
    assert torch.equal(runs[0], runs[1]) and torch.equal(runs[0], logits.argmax(-1))

    first_step = sample(logits_fn, start, 10, steps=1_000_000, schedule=MaskSchedule("linear"), temperature=0)
    assert torch.equal(first_step, logits.argmax(-1))
    # One step of four on 12 tokens keeps 3: the most confident argmax predictions.
    kept = []
    sample(lambda x, t: (kept.append(x.clone()), logits)[1], start, 10, steps=4, schedule=MaskSchedule("linear"),
           temperature=0)
    confidence = logits.softmax(-1).amax(-1)[0]
    revealed = (kept[1][0] != 10).nonzero().flatten()
    assert set(revealed.tolist()) == set(confidence.topk(3).indices.tolist())


def test_choice_noise_anneals_the_unmasking_order_between_confidence_and_chance():
    logits = torch.randn(1, 40, 10) * 4

    def revealed_first(choice_temperature, seed):
        seen = []
        sample(lambda x, t: (seen.append(x.clone()), logits)[1], torch.full((1, 40), 10), 10, steps=4,
               schedule=MaskSchedule("linear"), temperature=0, choice_temperature=choice_temperature,
               generators=[torch.Generator().manual_seed(seed)])
        return frozenset((seen[1][0] != 10).nonzero().flatten().tolist())

    confidence = logits.softmax(-1).amax(-1)[0]
    most_confident = frozenset(confidence.topk(10).indices.tolist())
    # Faint noise keeps MaskGIT's order (most confident first); strong noise draws the places at
    # random, so different seeds reveal different places first.
    assert revealed_first(1e-6, 0) == revealed_first(1e-6, 1) == most_confident
    assert len({revealed_first(1e6, seed) for seed in range(4)}) == 4


def test_device_draws_invert_the_cdf_so_each_id_comes_with_its_probability():
    # Uniforms on an even grid of 8 points: id k takes exactly p_k of them; an unnormalised row is
    # read as its normalised self, and an id of probability zero is never drawn.
    probs = torch.tensor([[0.5, 0.0, 0.25, 0.25], [2.0, 2.0, 0.0, 4.0]])
    grid = (torch.arange(8) + 0.5) / 8
    ids = invert_cdf(probs[:, None].expand(-1, 8, -1), grid.expand(2, -1))
    assert ids.tolist() == [[0, 0, 0, 0, 2, 2, 3, 3], [0, 0, 1, 1, 3, 3, 3, 3]]


def test_draws_off_the_cpu_never_copy_the_probabilities_to_the_host_and_follow_each_items_seed():
    # A meta tensor cannot be copied to the host: the draw stays where the probabilities are.
    on_meta = draw(torch.empty(2, 5, 7, device="meta"), [torch.Generator().manual_seed(i) for i in range(2)])
    assert on_meta.device.type == "meta" and on_meta.shape == (2, 5) and on_meta.dtype == torch.int64
    # Item i's uniforms come from generator i alone, so a batch draws what its items draw one by one.
    both = uniforms([torch.Generator().manual_seed(3), torch.Generator().manual_seed(4)], 6, "cpu")
    alone = uniforms([torch.Generator().manual_seed(4)], 6, "cpu")
    assert torch.equal(both[1], alone[0])


def test_rope_scores_depend_on_relative_offsets_only():
    q, k = torch.randn(1, 1, 1, 12), torch.randn(1, 1, 1, 12)
    positions = torch.tensor([[1, 2, 3], [0, 5, 1]])
    angles = rope_angles(positions, 12)
    shifted = rope_angles(positions + torch.tensor([4, -2, 7]), 12)

    def score(a):
        return (apply_rope(q, a[:1]) * apply_rope(k, a[1:])).sum()

    torch.testing.assert_close(score(angles), score(shifted), atol=1e-4, rtol=0)
    assert grid_positions(2, 3, 4).tolist()[5] == [0, 1, 1]


def test_fft_switch_changes_the_outputs_with_the_same_weights():
    torch.manual_seed(0)
    with_fft = SpectralTransformer(SMALL)
    without = SpectralTransformer(dataclasses.replace(SMALL, fft=False))
    without.load_state_dict(with_fft.state_dict())
    b = batch_of()
    t = torch.full((3,), 0.5)
    args = (b["tokens"], t, b["fps"], b["text"], b["text_mask"])
    assert with_fft(*args).shape == (3, 32, SMALL.codebook_size)
    assert not torch.allclose(with_fft(*args), without(*args), atol=1e-3)


@pytest.mark.parametrize("variant", [{}, {"fft": False}, {"position_encoding": "sinusoidal"}])
def test_one_training_step_lowers_the_loss_and_more_steps_lower_it_further(variant):
    torch.manual_seed(0)
    model = SpectralTransformer(dataclasses.replace(SMALL, **variant))
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = batch_of(8)

    def loss() -> torch.Tensor:
        torch.manual_seed(1)  # the same masking both times
        return model.training_losses(batch, step=0, total_steps=1)["loss"]

    before = loss()
    before.backward()
    optimizer.step()  # one step
    after_one = loss()
    assert after_one < before
    for _ in range(4):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    assert loss() < after_one - 0.1


def test_generate_is_deterministic_by_seed_and_returns_a_token_grid():
    torch.manual_seed(0)
    model = SpectralTransformer(SMALL).eval()
    b = batch_of(2)
    runs = [motionaura.generate(model, b["text"], b["text_mask"], b["null_text"], b["null_mask"], frames=12, steps=3, cfg=2.0,
                           generator=[torch.Generator().manual_seed(s) for s in (5, 6)]).tokens for _ in range(2)]
    assert runs[0].shape == (2, 3, 4, 4) and torch.equal(runs[0], runs[1])
    assert int(runs[0].max()) < SMALL.codebook_size and int(runs[0].min()) >= 0
    with pytest.raises(UserError, match="multiple of the tokenizer's temporal factor"):
        motionaura.generate(model, b["text"], b["text_mask"], b["null_text"], b["null_mask"], frames=6).tokens


@pytest.mark.parametrize("name", ["s", "m", "l"])
def test_paper_presets_follow_table_2(name):
    table2 = {"s": (1024, 16, 17), "m": (2048, 16, 28), "l": (4096, 32, 37)}
    config = preset(name)
    assert (config.dim, config.heads, config.blocks) == table2[name]
    assert config.time_embedding_dim == 512 and config.text_dim == 4096  # Table 10: 512-d time, T5-XXL
    with torch.device("meta"):
        model = SpectralTransformer(config)
    assert model.parameter_counts()["total"] > 0
    assert set(PRESETS) == {"tiny", "s", "m", "l"}


def test_lora_starts_as_the_identity_and_draws_w_down_from_the_frozen_layer():
    torch.manual_seed(0)
    layer = torch.nn.Linear(64, 64)
    with torch.no_grad():
        layer.weight.mul_(5).add_(0.3)
    x = torch.randn(4, 64)
    for wrapper in (ParallelLoRALinear(layer, 8), SequentialLoRALinear(layer, 8)):
        torch.testing.assert_close(wrapper(x), layer(x))
        down = wrapper.lora.down.weight
        assert abs(down.mean() - layer.weight.mean()) < 0.1 and abs(down.std() / layer.weight.std() - 1) < 0.1
    with pytest.raises(AssertionError, match="rank"):
        LoRA(8, 8, 8)


@pytest.mark.parametrize("cls", [ParallelLoRALinear, SequentialLoRALinear])
def test_a_linear_lora_merges_into_the_frozen_weight(cls):
    torch.manual_seed(0)
    wrapper = cls(torch.nn.Linear(16, 16), 4, activation="identity")
    torch.nn.init.normal_(wrapper.lora.up.weight)
    x = torch.randn(3, 16)
    torch.testing.assert_close(wrapper.merged()(x), wrapper(x), atol=1e-5, rtol=1e-5)


def _inpaint_model(tmp_path, **overrides) -> tuple[SpectralInpaintModel, SpectralTransformer]:
    torch.manual_seed(0)
    base = SpectralTransformer(SMALL).eval()
    checkpoint.save_pretrained(base, tmp_path / "spectral")
    loaded = checkpoint.from_pretrained(tmp_path / "spectral")
    loaded.source_folder = tmp_path / "spectral"
    config = SpectralInpaintConfig(base=checkpoint.model_tag(tmp_path / "spectral"), base_path=str(tmp_path / "spectral"),
                                   tokenizer=SMALL.tokenizer, rank=4, **overrides)
    return SpectralInpaintModel(config, loaded), base


def test_fresh_adapters_reproduce_the_base_and_training_leaves_base_weights_untouched(tmp_path):
    model, original = _inpaint_model(tmp_path)
    b = batch_of(4)
    t = torch.full((4,), 0.7)
    args = (b["tokens"], t, b["fps"], b["text"], b["text_mask"])
    with torch.no_grad():
        torch.testing.assert_close(model.base(*args), original(*args))  # zero W_up: the base, exactly
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    assert names and all(n.startswith(("adapters.", "sketch_", "segment")) for n in names)
    assert len(model.adapters) == SMALL.blocks * 5  # Q, K of self- and cross-attention; the FF output
    frozen = {k: v.clone() for k, v in original.state_dict().items()}
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    torch.manual_seed(1)
    before = model.training_losses(b, step=0, total_steps=1)["loss"]
    for _ in range(4):
        optimizer.zero_grad()
        torch.manual_seed(1)
        model.training_losses(b, step=0, total_steps=1)["loss"].backward()
        optimizer.step()
    torch.manual_seed(1)
    assert model.training_losses(b, step=0, total_steps=1)["loss"] < before
    adapted_base = {k.replace(".base.", "."): v for k, v in model.base.state_dict().items() if ".lora." not in k}
    for key, value in frozen.items():
        assert torch.equal(adapted_base[key], value), key


def test_adapter_checkpoint_holds_only_adapters_and_reloads_against_the_base(tmp_path):
    model, _ = _inpaint_model(tmp_path)
    with torch.no_grad():
        for p in model.adapters.parameters():
            p.add_(0.01)
    checkpoint.save_pretrained(model, tmp_path / "inpaint")
    from safetensors import safe_open

    with safe_open(tmp_path / "inpaint" / "model.safetensors", "pt") as f:
        assert all(k.startswith(("adapters.", "sketch_", "segment")) for k in f.keys())
    reloaded = checkpoint.from_pretrained(tmp_path / "inpaint")
    b = batch_of(2)
    args = (b["tokens"], torch.full((2,), 0.5), b["fps"], b["text"], b["text_mask"], b["masked_tokens"])
    with torch.no_grad():
        torch.testing.assert_close(reloaded.logits(*args, reloaded.sketch_tokens(b["sketch"])),
                                   model.logits(*args, model.sketch_tokens(b["sketch"])))


def test_linear_adapters_merge_into_the_base_with_the_same_outputs(tmp_path):
    model, _ = _inpaint_model(tmp_path, lora_activation="identity")
    with torch.no_grad():
        for p in model.adapters.parameters():
            p.normal_(0, 0.05)
    b = batch_of(2)
    args = (b["tokens"], torch.full((2,), 0.5), b["fps"], b["text"], b["text_mask"])
    with torch.no_grad():
        before = model.base(*args)
        assert model.merge_adapters() == SMALL.blocks * 5
        torch.testing.assert_close(model.base(*args), before, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, (ParallelLoRALinear, SequentialLoRALinear)) for m in model.base.modules())


def test_inpaint_resamples_only_the_region(tmp_path):
    model, _ = _inpaint_model(tmp_path)
    b = batch_of(2)
    out = motionaura.fill_region(model, b["tokens"], b["masked_tokens"], b["region"], b["sketch"], b["text"], b["text_mask"],
                        b["null_text"], b["null_mask"], steps=3, cfg=2.0,
                        generator=[torch.Generator().manual_seed(i) for i in range(2)])
    assert torch.equal(out[~b["region"]], b["tokens"][~b["region"]])
    assert (out[b["region"]] < SMALL.codebook_size).all()
    assert not torch.equal(out[b["region"]], b["tokens"][b["region"]])


def test_token_region_marks_tokens_whose_footprint_touches_the_mask():
    from vidtool.data.tokens import box_region, sketch_image, token_region

    masks = torch.zeros(1, 8, 16, 16, dtype=torch.bool)
    masks[0, 5, 6, 9] = True  # one pixel, in frame 5
    region = token_region(masks, temporal_factor=4, spatial_factor=4)
    assert region.shape == (1, 2, 4, 4) and region.sum() == 1 and region[0, 1, 1, 2]
    box = box_region(masks[0].numpy().astype("uint8"), margin=1)
    assert box[5].sum() == 9 and box[0].sum() == 0
    outline = torch.zeros(20, 20)
    outline[4:12, 4] = outline[4:12, 11] = outline[4, 4:12] = outline[11, 4:12] = 1
    sketch = sketch_image(outline.numpy())
    assert sketch.shape == (32, 32) and sketch[16, 16] == 0 and sketch[:, :4].sum() > 0 and sketch[16].sum() > 0



def test_mask_and_sketch_files_are_read_in_every_documented_form(tmp_path):
    import numpy as np
    from PIL import Image

    from vidtool.data.tokens import read_sketch
    from vidtool.errors import UserError
    from vidtool.data.tokens import read_mask

    hole = np.zeros((32, 32), dtype=np.uint8)
    hole[8:16, 8:24] = 255
    Image.fromarray(hole).save(tmp_path / "hole.png")
    masks = read_mask(tmp_path / "hole.png", 5, (64, 64))  # one image for every frame, scaled ×2 (nearest)
    assert masks.shape == (5, 64, 64) and masks[:, 16:32, 16:48].all() and masks.sum() == 5 * 16 * 32
    stack = np.zeros((3, 64, 64), dtype=np.uint8)
    stack[1, 10:20, 10:20] = 1
    np.savez(tmp_path / "m.npz", mask=stack)
    read = read_mask(tmp_path / "m.npz", 5, (64, 64))  # the last frame held to the clip's length
    assert read.shape == (5, 64, 64) and read[1].sum() == 100 and not read[2:].any()
    Image.fromarray(np.zeros((8, 8), dtype=np.uint8)).save(tmp_path / "empty.png")
    with pytest.raises(UserError, match="empty"):
        read_mask(tmp_path / "empty.png", 2, (8, 8))

    paper = np.full((40, 40), 255, dtype=np.uint8)
    paper[10, 5:30] = 0  # a pencil stroke on white paper
    Image.fromarray(paper).save(tmp_path / "sketch.png")
    strokes = read_sketch(tmp_path / "sketch.png")
    assert strokes.sum() == 25 and strokes[10, 5:30].all()
    Image.fromarray(255 - paper).save(tmp_path / "inverted.png")  # light strokes on black
    assert np.array_equal(read_sketch(tmp_path / "inverted.png"), strokes)
