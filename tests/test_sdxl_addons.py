"""HARIVO's off-the-shelf add-ons on an SDXL base (HARIVO §1, §4.3): `generate --lora` (diffusers/peft
and kohya layouts, the latter with SDXL's sgm block names and both text encoders' parts), `--base DIR`
(a DreamBooth SDXL U-Net), `--controlnet` (an SDXL ControlNetModel, which reads the pooled text and
size conditions as the U-Net does) and `--ip-adapter` (h94's SDXL layout; its `image_embeds` reach
the U-Net together with `text_embeds` and `time_ids`). The pipeline, the HARIVO model trained on it
for two updates and every add-on are tiny random instances of the real classes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import one_line_error
from safetensors.torch import save_file
from test_controlnet import control_image
from test_ip_adapter import ip_adapter, picture
from test_lora import RANK, generate, random_lora, save_kohya
from test_sdxl_base import TEXT_DIM, TEXT_DIM_2, tiny_sdxl_pipeline

from vidtool import checkpoint

# Layers of the tiny SDXL U-Net (level 0 has no attention, as in SDXL; level 1 has two transformer
# blocks): self- and cross-attention, the mid block, an up block, a 3x3 conv and the added-condition MLP.
LINEAR = ["down_blocks.1.attentions.0.transformer_blocks.1.attn1.to_q",
          "down_blocks.1.attentions.0.transformer_blocks.0.attn2.to_k", "mid_block.attentions.0.proj_out",
          "up_blocks.0.attentions.1.transformer_blocks.1.attn2.to_v"]
KOHYA_EXTRA = ["down_blocks.0.resnets.0.conv1", "add_embedding.linear_1"]


def sgm_name(name: str, layers_per_block: int = 1) -> str:
    """The name kohya's SDXL trainer gives a diffusers U-Net module (its sgm U-Net's: input_blocks.N.0
    resnets / .1 attentions, middle_block.0-2, output_blocks.N, label_emb for add_embedding)."""
    p = name.split(".")
    if p[0] == "add_embedding":
        return "label_emb.0." + {"linear_1": "0", "linear_2": "2"}[p[1]]
    inner = {"resnets": "0", "attentions": "1"}
    if p[0] == "down_blocks":
        head = f"input_blocks.{1 + int(p[1]) * (layers_per_block + 1) + int(p[3])}.{inner[p[2]]}"
    elif p[0] == "up_blocks":
        head = f"output_blocks.{int(p[1]) * (layers_per_block + 1) + int(p[3])}.{inner[p[2]]}"
    else:
        head = "middle_block." + {"attentions.0": "1", "resnets.0": "0", "resnets.1": "2"}[f"{p[1]}.{p[2]}"]
    tail = ".".join(p[4:] if p[0] != "mid_block" else p[3:])
    return f"{head}.{ {'conv1': 'in_layers.2', 'conv2': 'out_layers.3'}.get(tail, tail)}"


def save_kohya_sdxl(path: Path, layers: dict, alpha: float) -> Path:
    """kohya's SDXL layout: `lora_unet_<sgm name>`, and LoRA of both text encoders (`lora_te1_`, `lora_te2_`)."""
    state = {}
    for name, (down, up) in layers.items():
        key = "lora_unet_" + sgm_name(name).replace(".", "_")
        state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"] = down, up
        state[f"{key}.alpha"] = torch.tensor(float(alpha))
    for te in ("lora_te1_", "lora_te2_"):
        key = te + "text_model_encoder_layers_0_self_attn_q_proj"
        state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"] = torch.ones(RANK, 8), torch.ones(8, RANK)
        state[f"{key}.alpha"] = torch.tensor(1.0)
    save_file(state, path)
    return path


def save_peft_sdxl(folder: Path, layers: dict, alpha: float) -> Path:
    """The diffusers/peft layout as StableDiffusionXLPipeline.save_lora_weights writes it, with LoRA of both
    text encoders beside the U-Net's."""
    from diffusers.loaders import StableDiffusionXLLoraLoaderMixin

    unet = {f"{n}.lora_{p}.weight": t for n, (a, b) in layers.items() for p, t in (("A", a), ("B", b))}
    def te():
        return {f"text_model.encoder.layers.0.self_attn.q_proj.lora_{p}.weight": torch.ones(*s)
                for p, s in (("A", (RANK, 8)), ("B", (8, RANK)))}

    StableDiffusionXLLoraLoaderMixin.save_lora_weights(folder, unet_lora_layers=unet, text_encoder_lora_layers=te(),
                                                       text_encoder_2_lora_layers=te(),
                                                       unet_lora_adapter_metadata={"r": RANK, "lora_alpha": alpha})
    return folder / "pytorch_lora_weights.safetensors"


@pytest.fixture(scope="module")
def xl(tmp_path_factory):
    """The pipeline, HARIVO trained on it (--steps 2) and its output with no add-on."""
    from stage_runner import run_stage

    from vidtool.data.make import make_dataset

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sdxl-addons")
    pipeline = tiny_sdxl_pipeline(root / "sdxl")
    make_dataset("shapes", root / "data", 2, seed=0)
    assert run_stage("train-denoiser", "--family", "harivo", "--base", pipeline, "--data",
                     root / "data" / "manifest.jsonl", "--steps", "2", "--size", "32", "--batch-size", "2",
                     "-o", root / "harivo") == 0
    return root, pipeline, generate(root, "plain", "harivo", "--model", root / "harivo")


def frozen_unet(root: Path):
    return checkpoint.from_pretrained(root / "harivo").base.unet


def run(root: Path, name: str, *args) -> torch.Tensor:
    return generate(root, name, "harivo", "--model", root / "harivo", *args)


def changed(a: torch.Tensor, b: torch.Tensor, share: float = 0.05) -> bool:
    return bool((a - b).abs().mean() > share * b.abs().mean())


# --- LoRA --------------------------------------------------------------------------------------

def test_kohya_sdxl_names_map_to_the_diffusers_unet_and_text_encoder_parts_are_left_out(xl, tmp_path):
    from vidtool import lora

    root, _, _ = xl
    unet = frozen_unet(root)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    layers = random_lora(unet, LINEAR + KOHYA_EXTRA)
    read = lora.read(save_kohya_sdxl(tmp_path / "k.safetensors", layers, alpha=2.0), unet)
    assert set(read.layers) == set(layers) and read.skipped == 2  # one layer of each text encoder
    peft = lora.read(save_peft_sdxl(tmp_path, random_lora(unet, LINEAR), alpha=2.0), unet)
    assert set(peft.layers) == set(LINEAR) and peft.skipped == 2
    lora.merge(unet, read, 0.5)
    for name in (LINEAR[1], "add_embedding.linear_1"):
        down, up = layers[name]
        want = before[f"{name}.weight"] + 0.5 * up @ down * (2.0 / RANK)
        torch.testing.assert_close(unet.get_submodule(name).weight, want, rtol=0, atol=1e-6)


# Key names as kohya's released SDXL LoRAs spell them, and the module of the published SDXL base 1.0
# U-Net (layers_per_block 2, ten transformer blocks in the middle) each one updates.
KOHYA_SDXL = {"input_blocks_4_1_transformer_blocks_0_attn1_to_q": "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q",
              "input_blocks_7_0_in_layers_2": "down_blocks.2.resnets.0.conv1",
              "middle_block_1_transformer_blocks_9_ff_net_2": "mid_block.attentions.0.transformer_blocks.9.ff.net.2",
              "output_blocks_0_1_transformer_blocks_0_attn2_to_k": "up_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k",
              "output_blocks_2_1_proj_out": "up_blocks.0.attentions.2.proj_out",
              "label_emb_0_0": "add_embedding.linear_1"}


def test_a_kohya_lora_of_the_published_sdxl_unet_maps_onto_its_modules(tmp_path):
    from diffusers import UNet2DConditionModel
    from test_bring_your_own_weights import SDXL_UNET

    from vidtool import lora

    with torch.device("meta"):
        unet = UNet2DConditionModel(**SDXL_UNET)
    state = {}
    for key, name in KOHYA_SDXL.items():
        w = unet.get_submodule(name).weight
        state[f"lora_unet_{key}.lora_down.weight"] = torch.zeros(RANK, *w.shape[1:])
        state[f"lora_unet_{key}.lora_up.weight"] = torch.zeros(w.shape[0], RANK, *(1, 1)[:w.dim() - 2])
        state[f"lora_unet_{key}.alpha"] = torch.tensor(8.0)
    for te in ("lora_te1_text_model_encoder_layers_11_mlp_fc1", "lora_te2_text_model_encoder_layers_31_mlp_fc1"):
        state[f"{te}.lora_down.weight"], state[f"{te}.lora_up.weight"] = torch.zeros(RANK, 8), torch.zeros(8, RANK)
    save_file(state, tmp_path / "xl.safetensors")
    read = lora.read(tmp_path / "xl.safetensors", unet)
    assert set(read.layers) == set(KOHYA_SDXL.values()) and read.skipped == 2
    assert all(layer.scale == 8.0 / RANK for layer in read.layers.values())


@pytest.mark.parametrize("layout", ["peft", "kohya"])
def test_an_sdxl_lora_changes_the_video_and_scale_0_is_bit_identical(xl, layout):
    torch.set_num_threads(1)
    root, _, plain = xl
    layers = random_lora(frozen_unet(root), LINEAR + (KOHYA_EXTRA if layout == "kohya" else []), seed=1)
    folder = root / f"lora-{layout}"
    folder.mkdir()
    path = save_peft_sdxl(folder, layers, RANK) if layout == "peft" else save_kohya_sdxl(folder / "k.safetensors",
                                                                                        layers, RANK)
    assert changed(run(root, f"{layout}-on", "--lora", path), plain)
    assert torch.equal(run(root, f"{layout}-off", "--lora", path, "--lora-scale", "0"), plain)


# --- DreamBooth U-Net as the frozen base ----------------------------------------------------------

def test_a_dreambooth_sdxl_unet_swaps_in_and_its_own_weights_change_nothing(xl):
    from diffusers import UNet2DConditionModel

    torch.set_num_threads(1)
    root, pipeline, plain = xl
    assert torch.equal(run(root, "same-base", "--base", pipeline), plain)  # the pipeline's own unet/
    unet = UNet2DConditionModel.from_pretrained(pipeline / "unet")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    unet.save_pretrained(root / "dreambooth" / "unet")
    assert changed(run(root, "tuned-base", "--base", root / "dreambooth" / "unet"), plain, 0.01)


# --- ControlNet -------------------------------------------------------------------------------------

def sdxl_controlnet(root: Path, folder: Path) -> Path:
    """An SDXL ControlNetModel of the base (text_time added embedding, x4 conditioning embedding like the
    pipeline's x4 VAE), its zero convolutions trained away from zero."""
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_unet(frozen_unet(root), conditioning_embedding_out_channels=(16, 32, 64))
    assert controlnet.config.addition_embed_type == "text_time"
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                     controlnet.controlnet_cond_embedding.conv_out]:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
    controlnet.save_pretrained(folder)
    return folder


def test_an_sdxl_controlnet_steers_the_chosen_frames_with_the_pooled_and_size_conditions(xl):
    from vidtool.frozen_base import adapt

    torch.set_num_threads(1)
    root, _, plain = xl
    net = sdxl_controlnet(root, root / "controlnet")
    edges = control_image(root / "edges.png", 1, size=32)
    args = ("--controlnet", net, "--control-image", f"0={edges}", "--control-image", f"-1={edges}")
    controlled = run(root, "controlled", *args)
    for frame in (0, 2):
        assert changed(controlled[:, :, frame], plain[:, :, frame])
    assert torch.equal(run(root, "control-off", *args, "--control-scale", "0"), plain)
    # What reaches the ControlNet: the controlled rows' pooled embeddings and size conditions.
    model = checkpoint.from_pretrained(root / "harivo")
    adapt(model, {"controlnet": str(net), "control_images": [[0, str(edges)]], "control_scale": 1.0, "frames": 3})
    seen = []
    model.base.control.controlnet.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["added_cond_kwargs"]),
                                                            with_kwargs=True)
    pooled = torch.randn(6, model.base.config.text_embeds_dim)
    with torch.no_grad():
        model.base.predict(torch.randn(6, 4, 8, 8), torch.full((6,), 500), torch.randn(6, 5, TEXT_DIM + TEXT_DIM_2), frames=3,
                           text_embeds=pooled)
    assert torch.equal(seen[0]["text_embeds"], pooled[[0, 3]])
    assert seen[0]["time_ids"].tolist() == [[32, 32, 0, 0, 32, 32]] * 2


# --- IP-Adapter ---------------------------------------------------------------------------------------

def test_an_sdxl_ip_adapter_prompts_by_image_with_the_pooled_and_size_conditions_beside_it(xl):
    from vidtool.frozen_base import adapt

    torch.set_num_threads(1)
    root, _, plain = xl
    adapter = ip_adapter(root / "sdxl_models", frozen_unet(root))  # h94's sdxl_models/: file + image_encoder/
    red = picture(root / "red.png", (255, 0, 0))
    assert changed(run(root, "image", "--ip-adapter", adapter, "--image", red), plain)
    assert torch.equal(run(root, "image-off", "--ip-adapter", adapter, "--image", red, "--ip-adapter-scale", "0"),
                       plain)
    model = checkpoint.from_pretrained(root / "harivo")
    adapt(model, {"ip_adapter": str(adapter), "ip_image": str(red), "ip_adapter_scale": 1.0})
    seen = []
    model.base.unet.register_forward_pre_hook(lambda m, a, kw: seen.append(kw["added_cond_kwargs"]), with_kwargs=True)
    with torch.no_grad():
        model.base.predict(torch.randn(4, 4, 8, 8), torch.full((4,), 500), torch.randn(4, 5, TEXT_DIM + TEXT_DIM_2),
                           text_embeds=torch.randn(4, model.base.config.text_embeds_dim))
    assert set(seen[0]) == {"image_embeds", "text_embeds", "time_ids"}


# --- refusals -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", [pytest.param("sd-lora", marks=pytest.mark.slow),
                                  pytest.param("sd-controlnet", marks=pytest.mark.slow)])
def test_add_ons_of_a_stable_diffusion_1_base_are_refused_on_sdxl(vidtool, xl, tmp_path, case):
    from diffusers import ControlNetModel, UNet2DConditionModel
    from test_bring_your_own_weights import tiny_sd_pipeline
    from test_lora import Q

    root, _, _ = xl
    sd_unet = UNet2DConditionModel.from_pretrained(tiny_sd_pipeline(tmp_path / "sd") / "unet")
    if case == "sd-lora":  # SD 1.x has attention at its first level, SDXL none
        args = ["--lora", save_kohya(tmp_path / "sd15.safetensors", random_lora(sd_unet, [Q]), RANK)]
        message = "is for another base"
    else:
        ControlNetModel.from_unet(sd_unet).save_pretrained(tmp_path / "cn")
        args = ["--controlnet", tmp_path / "cn", "--control-image", f"0={control_image(tmp_path / 'e.png', 1)}"]
        message = "made for another U-Net than the model's frozen base"
    out = tmp_path / "never.safetensors"
    line = one_line_error(vidtool("generate", "a red circle", "--family", "harivo", "--model", root / "harivo",
                                  "--frames", "3", "--steps", "1", *args, "-o", out))
    assert message in line and not out.exists()


def test_a_controlnet_without_the_sdxl_added_embedding_is_refused_before_anything_changes(xl, tmp_path):
    """Same widths and blocks as the base, but no text_time embedding: it could not read the pooled and
    size conditions the base is sampled with."""
    from diffusers import ControlNetModel

    from vidtool.errors import UserError
    from vidtool.frozen_base import adapt

    root, _, _ = xl
    config = dict(ControlNetModel.from_unet(frozen_unet(root)).config, addition_embed_type=None)
    ControlNetModel.from_config(config).save_pretrained(tmp_path / "cn")
    model = checkpoint.from_pretrained(root / "harivo")
    with pytest.raises(UserError, match="addition_embed_type: None, the base's 'text_time'"):
        adapt(model, {"controlnet": str(tmp_path / "cn"), "control_images": [[0, str(tmp_path / "e.png")]]})
    assert getattr(model.base, "control", None) is None
