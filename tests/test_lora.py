"""`generate --lora FILE --lora-scale S` and `--base DIR` on the frozen text-to-image U-Net of HARIVO
and FusionFrames' keyframe model (HARIVO §1, §4.3: off-the-shelf LoRA and DreamBooth weights, no
retraining). The LoRA files are written here in the two layouts they are shared in: diffusers/peft
(by diffusers' own `save_lora_weights`) and kohya (`lora_unet_..._to_q.lora_down.weight`, `.alpha`)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import one_line_error
from safetensors.torch import save_file

from vidtool import checkpoint, model_store, tensorfile

FAMILIES = {"harivo": "harivo-tiny", "fusionframes": "keyframes-tiny"}
Q = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_q"  # a linear layer of every SD-style U-Net
LINEAR = [Q, "up_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", "mid_block.attentions.0.proj_out"]
CONV = "down_blocks.0.resnets.0.conv1"  # 3x3: kohya's LoCon form, a 3x3 down and a 1x1 up
RANK = 4


def frozen_unet(family: str):
    return checkpoint.from_pretrained(model_store.bundled(FAMILIES[family])).base.unet


def random_lora(unet, names: list[str], seed: int = 0) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """(A, B) for each module, both random (a trained LoRA, not the B = 0 of a fresh one)."""
    g = torch.Generator().manual_seed(seed)
    layers = {}
    for name in names:
        w = unet.get_submodule(name).weight
        down_shape = (RANK, *w.shape[1:])
        up_shape = (w.shape[0], RANK) + (1, 1) * (w.dim() == 4)
        layers[name] = (torch.randn(down_shape, generator=g) * 0.3, torch.randn(up_shape, generator=g) * 0.3)
    return layers


def save_peft(folder: Path, layers: dict, alpha: float) -> Path:
    """The diffusers/peft layout, written by diffusers: `unet.<module>.lora_A.weight`, alpha in the metadata."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    state = {}
    for name, (down, up) in layers.items():
        state[f"{name}.lora_A.weight"], state[f"{name}.lora_B.weight"] = down, up
    StableDiffusionLoraLoaderMixin.save_lora_weights(folder, unet_lora_layers=state,
                                                     unet_lora_adapter_metadata={"r": RANK, "lora_alpha": alpha})
    return folder / "pytorch_lora_weights.safetensors"


def save_kohya(path: Path, layers: dict, alpha: float, text_encoder: bool = False) -> Path:
    state = {}
    for name, (down, up) in layers.items():
        key = "lora_unet_" + name.replace(".", "_")
        state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"] = down, up
        state[f"{key}.alpha"] = torch.tensor(float(alpha))
    if text_encoder:  # kohya files usually carry the text encoder's LoRA too
        key = "lora_te_text_model_encoder_layers_0_self_attn_q_proj"
        state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"] = torch.ones(RANK, 8), torch.ones(8, RANK)
        state[f"{key}.alpha"] = torch.tensor(1.0)
    save_file(state, path)
    return path


# --- the merge ------------------------------------------------------------------------------

@pytest.mark.parametrize("layout", ["peft", "kohya"])
def test_merge_is_w_plus_scale_times_b_a_alpha_over_r(layout, tmp_path):
    from vidtool import lora

    unet = frozen_unet("harivo")
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    layers = random_lora(unet, LINEAR + ([CONV] if layout == "kohya" else []))
    path = save_peft(tmp_path, layers, alpha=2.0) if layout == "peft" else save_kohya(tmp_path / "k.safetensors",
                                                                                      layers, alpha=2.0)
    lora.merge(unet, lora.read(path, unet), 0.7)
    down, up = layers[Q]
    want = before[f"{Q}.weight"] + 0.7 * up @ down * (2.0 / RANK)
    torch.testing.assert_close(unet.get_submodule(Q).weight, want, rtol=0, atol=1e-6)
    if layout == "kohya":  # a 3x3 down and 1x1 up: delta[o, i, y, x] = sum_r B[o, r] A[r, i, y, x]
        down, up = layers[CONV]
        want = before[f"{CONV}.weight"] + 0.7 * torch.einsum("or,riyx->oiyx", up[:, :, 0, 0], down) * (2.0 / RANK)
        torch.testing.assert_close(unet.get_submodule(CONV).weight, want, rtol=0, atol=1e-6)
    changed = {k for k, v in unet.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {f"{name}.weight" for name in layers}


def test_peft_alpha_pattern_and_a_kohya_text_encoder_part(tmp_path):
    """peft's per-module alpha (`alpha_pattern`) is read; a kohya file's text-encoder layers are left
    out (the prompts are embedded by another model) and counted, the U-Net part still merged."""
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    from vidtool import lora

    unet = frozen_unet("harivo")
    layers = random_lora(unet, LINEAR[:2])
    state = {f"{n}.lora_{p}.weight": t for n, (a, b) in layers.items() for p, t in (("A", a), ("B", b))}
    StableDiffusionLoraLoaderMixin.save_lora_weights(tmp_path, unet_lora_layers=state, unet_lora_adapter_metadata={
        "r": RANK, "lora_alpha": 4, "alpha_pattern": {"attn2.to_k": 1}})
    read = lora.read(tmp_path / "pytorch_lora_weights.safetensors", unet)
    assert read.layers[LINEAR[0]].scale == 4 / RANK and read.layers[LINEAR[1]].scale == 1 / RANK
    kohya = lora.read(save_kohya(tmp_path / "k.safetensors", layers, 3.0, text_encoder=True), unet)
    assert kohya.skipped == 1 and set(kohya.layers) == set(layers)
    assert all(layer.scale == 3.0 / RANK for layer in kohya.layers.values())


# --- generate ---------------------------------------------------------------------------------

def generate(root: Path, name: str, family: str, *args) -> torch.Tensor:
    from stage_runner import run_stage

    out = root / f"{name}.safetensors"
    assert run_stage("generate", "a red circle moving right", "--family", family, "--steps", "2", "--frames", "3",
                     "--seed", "5", *args, "-o", out) == 0
    return tensorfile.load(out).main


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """Each family's output without add-ons, and the folder the add-on files go in."""
    root = tmp_path_factory.mktemp("lora")
    torch.set_num_threads(1)
    return root, {family: generate(root, f"plain-{family}", family) for family in FAMILIES}


@pytest.mark.parametrize("layout", ["peft", "kohya"])
@pytest.mark.parametrize("family", list(FAMILIES))
def test_generate_with_a_lora_changes_the_output_and_scale_0_is_bit_identical(plain, family, layout):
    torch.set_num_threads(1)
    root, without = plain
    layers = random_lora(frozen_unet(family), LINEAR, seed=1)
    folder = root / f"{family}-{layout}"
    folder.mkdir()
    path = save_peft(folder, layers, RANK) if layout == "peft" else save_kohya(folder / "k.safetensors", layers, RANK)
    with_lora = generate(folder, "on", family, "--lora", path)
    assert (with_lora - without[family]).abs().mean() > 0.05 * without[family].abs().mean()
    assert torch.equal(generate(folder, "off", family, "--lora", path, "--lora-scale", "0"), without[family])
    params = tensorfile.load(folder / "on.safetensors").params
    assert params["lora"] == [str(path)] and params["lora_scale"] == [1.0]


def test_a_dreambooth_unet_as_base_keeps_the_temporal_layers(plain):
    """--base with a diffusers U-Net folder: the model's own base weights give its output bit for bit;
    fine-tuned ones change it, and the temporal layers stay the trained ones."""
    from vidtool.frozen_base import adapt

    torch.set_num_threads(1)
    root, without = plain
    model = checkpoint.from_pretrained(model_store.bundled(FAMILIES["harivo"]))
    model.base.unet.save_pretrained(root / "same-unet")
    assert torch.equal(generate(root, "same-base", "harivo", "--base", root / "same-unet"), without["harivo"])
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.base.unet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    model.base.unet.save_pretrained(root / "tuned-unet")
    assert not torch.equal(generate(root, "tuned-base", "harivo", "--base", root / "tuned-unet"), without["harivo"])
    fresh = checkpoint.from_pretrained(model_store.bundled(FAMILIES["harivo"]))
    temporal = {k: v.clone() for k, v in fresh.temporal.state_dict().items()}
    adapt(fresh, {"base": str(root / "tuned-unet")})
    assert all(torch.equal(v, model.base.unet.state_dict()[k]) for k, v in fresh.base.unet.state_dict().items())
    assert all(torch.equal(v, temporal[k]) for k, v in fresh.temporal.state_dict().items())


# --- refusals ---------------------------------------------------------------------------------

def sd15_names() -> list[str]:
    """Layers an SD 1.5 LoRA updates that a tiny base does not have (it has two levels with attention)."""
    return [f"down_blocks.2.attentions.1.transformer_blocks.0.attn1.to_{p}" for p in "qkv"]


# Each case is a fresh process: the first two run by default, the rest with -m slow.
@pytest.mark.parametrize("case", ["no-such-layers", "pickle",
                                  *(pytest.param(case, marks=pytest.mark.slow) for case in (
                                      "shape-mismatch", "not-safetensors", "motionaura", "scale-without-lora",
                                      "base-of-another-architecture"))])
def test_bad_addons_are_one_line_exit_2_and_write_nothing(vidtool, tmp_path, case):
    from diffusers import UNet2DConditionModel

    unet = frozen_unet("harivo")
    family, args = "harivo", []
    if case == "no-such-layers":
        layers = {n: (torch.randn(RANK, 320), torch.randn(320, RANK)) for n in sd15_names()}
        args, message = ["--lora", save_kohya(tmp_path / "sd15.safetensors", layers, 1)], "this U-Net has no"
    elif case == "shape-mismatch":  # the right names, another width (an SD 1.5 LoRA on the tiny base)
        layers = {Q: (torch.randn(RANK, 320), torch.randn(320, RANK))}
        args, message = ["--lora", save_peft(tmp_path, layers, RANK)], "does not make its weight"
    elif case == "not-safetensors":
        (tmp_path / "notes.safetensors").write_text("not a tensor file\n")
        args, message = ["--lora", tmp_path / "notes.safetensors"], "is not a safetensors file"
    elif case == "pickle":
        torch.save(random_lora(unet, [Q]), tmp_path / "lora.bin")
        args, message = ["--lora", tmp_path / "lora.bin"], "never from pickles"
    elif case == "motionaura":
        family, args = "motionaura", ["--lora", save_peft(tmp_path, random_lora(unet, [Q]), RANK)]
        message = "a motionaura model has none"
    elif case == "scale-without-lora":
        args, message = ["--lora-scale", "0.5"], "pass --lora too"
    else:
        config = dict(unet.config, attention_head_dim=2)  # same weights' shapes, other heads
        UNet2DConditionModel.from_config(config).save_pretrained(tmp_path / "other")
        args, message = ["--base", tmp_path / "other"], "another architecture than the model's frozen base"
    out = tmp_path / "never.safetensors"
    line = one_line_error(vidtool("generate", "a red circle", "--family", family, "--steps", "1", *args, "-o", out))
    assert message in line and not out.exists()


def test_a_lora_with_one_foreign_layer_changes_nothing(tmp_path):
    """Every layer is checked before any is merged: a file with good layers and one that fits no
    layer of the base leaves the whole U-Net as it was."""
    from vidtool.errors import UserError
    from vidtool.frozen_base import adapt

    model = checkpoint.from_pretrained(model_store.bundled(FAMILIES["fusionframes"]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    layers = random_lora(model.base.unet, LINEAR) | {sd15_names()[0]: (torch.randn(RANK, 320), torch.randn(320, RANK))}
    path = save_kohya(tmp_path / "mixed.safetensors", layers, RANK)
    with pytest.raises(UserError, match="1 of its 4 layers do not fit"):
        adapt(model, {"lora": [str(path)], "lora_scale": [1.0]})
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_two_loras_each_at_its_scale_and_a_vidtool_t2i_folder_as_base(tmp_path):
    """--base first, then each --lora at its own --lora-scale, on FusionFrames' keyframe model; the
    base may be a t2i folder vidtool trained (here: the bundled one, fine-tuned by a perturbation)."""
    from vidtool.frozen_base import adapt

    t2i = checkpoint.from_pretrained(model_store.bundled("t2i-tiny"))
    torch.manual_seed(1)
    with torch.no_grad():
        for p in t2i.unet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    checkpoint.save_pretrained(t2i, tmp_path / "tuned-t2i")
    model = checkpoint.from_pretrained(model_store.bundled(FAMILIES["fusionframes"]))
    first, second = random_lora(model.base.unet, [Q], seed=2), random_lora(model.base.unet, [Q, LINEAR[1]], seed=3)
    paths = [save_kohya(tmp_path / "a.safetensors", first, RANK), save_peft(tmp_path / "b", second, 2.0)]
    notes = adapt(model, {"base": str(tmp_path / "tuned-t2i"), "lora": [str(p) for p in paths],
                          "lora_scale": [1.0, 0.5]})
    assert len(notes) == 3
    tuned = t2i.unet.state_dict()
    want = tuned[f"{Q}.weight"] + first[Q][1] @ first[Q][0] + 0.5 * second[Q][1] @ second[Q][0] * (2.0 / RANK)
    torch.testing.assert_close(model.base.unet.get_submodule(Q).weight, want, rtol=0, atol=1e-6)
    untouched = "down_blocks.0.attentions.0.transformer_blocks.0.attn1.to_v.weight"
    assert torch.equal(model.base.unet.state_dict()[untouched], tuned[untouched])


def test_a_kohya_lora_of_a_stable_diffusion_unet_applies_to_harivo_trained_on_it(tmp_path):
    """The SD path end to end: HARIVO trained on a (tiny) SD pipeline folder, generated with a kohya
    LoRA made for that pipeline's unet/, decoded by the pipeline's VAE."""
    from diffusers import UNet2DConditionModel
    from stage_runner import run_stage
    from test_bring_your_own_weights import harivo_on_tiny_sd

    from vidtool.video import read_video

    sd = harivo_on_tiny_sd(tmp_path)
    unet = UNet2DConditionModel.from_pretrained(sd / "unet")
    path = save_kohya(tmp_path / "sd-lora.safetensors", random_lora(unet, [Q, "up_blocks.1.attentions.0.proj_in"]),
                      RANK, text_encoder=True)
    args = ("--model", tmp_path / "harivo", "--frames", "3", "--steps", "1")
    plain = generate(tmp_path, "plain", "harivo", *args)
    with_lora = generate(tmp_path, "lora", "harivo", *args, "--lora", path)
    assert (with_lora - plain).abs().mean() > 0.01 * plain.abs().mean()
    assert run_stage("decode", tmp_path / "lora.safetensors", "-o", tmp_path / "out.mp4") == 0
    assert read_video(tmp_path / "out.mp4").frames.shape == (3, 32, 32, 3)
