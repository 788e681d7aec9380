"""`generate --ip-adapter DIR --image IMG --ip-adapter-scale S` on the frozen text-to-image U-Net of
HARIVO and FusionFrames' keyframe model (HARIVO §1, §4.3: an off-the-shelf IP-Adapter of the base,
no retraining). The adapters are written here in the released layout (one safetensors file with
`image_proj.proj/.norm` and `ip_adapter.<n>.to_k_ip/to_v_ip.weight`, n = 1, 3, 5, ... over the
cross-attention layers) beside a tiny transformers CLIPVisionModelWithProjection in image_encoder/."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import one_line_error
from PIL import Image
from safetensors.torch import save_file
from test_lora import FAMILIES, frozen_unet, generate

from vidtool import tensorfile

IMAGE_DIM = 16  # the tiny image encoder's projection width


def image_encoder(folder: Path, projection_dim: int = IMAGE_DIM) -> Path:
    from transformers import CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    config = CLIPVisionConfig(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4,
                              image_size=32, patch_size=8, projection_dim=projection_dim)
    CLIPVisionModelWithProjection(config).save_pretrained(folder)
    return folder


def ip_adapter(folder: Path, unet, seed: int = 0, layers: int | None = None) -> Path:
    """A trained-looking IP-Adapter of `unet` (random weights), as h94/IP-Adapter lays it out."""
    g = torch.Generator().manual_seed(seed)
    width = unet.config.cross_attention_dim
    state = {"image_proj.proj.weight": torch.randn(4 * width, IMAGE_DIM, generator=g) * 0.3,
             "image_proj.proj.bias": torch.zeros(4 * width),
             "image_proj.norm.weight": torch.ones(width), "image_proj.norm.bias": torch.zeros(width)}
    cross = [n.removesuffix(".processor") for n in unet.attn_processors if n.endswith("attn2.processor")]
    for i, name in enumerate(cross[:layers]):
        shape = unet.get_submodule(name).to_k.weight.shape
        for kv in "kv":
            state[f"ip_adapter.{2 * i + 1}.to_{kv}_ip.weight"] = torch.randn(shape, generator=g) * 0.3
    folder.mkdir(parents=True, exist_ok=True)
    save_file(state, folder / "ip-adapter_tiny.safetensors")
    image_encoder(folder / "image_encoder")
    return folder


def picture(path: Path, colour: tuple[int, int, int]) -> Path:
    pixels = np.zeros((40, 48, 3), np.uint8)
    pixels[8:32, 10:30] = colour
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("ip-adapter")
    torch.set_num_threads(1)
    plain = {family: generate(root, f"plain-{family}", family) for family in FAMILIES}
    adapters = {family: ip_adapter(root / f"ip-{family}", frozen_unet(family)) for family in FAMILIES}
    images = [picture(root / "red.png", (255, 0, 0)), picture(root / "blue.png", (0, 0, 255))]
    return root, plain, adapters, images


@pytest.mark.parametrize("family", list(FAMILIES))
def test_an_image_prompt_changes_the_output_by_its_image_and_scale_0_is_bit_identical(setup, family):
    torch.set_num_threads(1)
    root, plain, adapters, (red, blue) = setup
    without = plain[family]
    with_red = generate(root, f"red-{family}", family, "--ip-adapter", adapters[family], "--image", red)
    with_blue = generate(root, f"blue-{family}", family, "--ip-adapter", adapters[family], "--image", blue)
    assert (with_red - without).abs().mean() > 0.05 * without.abs().mean()
    assert (with_red - with_blue).abs().mean() > 0.01 * without.abs().mean()  # the image itself steers it
    off = generate(root, f"off-{family}", family, "--ip-adapter", adapters[family], "--image", red,
                   "--ip-adapter-scale", "0")
    assert torch.equal(off, without)
    params = tensorfile.load(root / f"red-{family}.safetensors").params
    assert params["ip_adapter"] == str(adapters[family]) and params["ip_image"] == str(red)
    assert params["ip_adapter_scale"] == 1.0


def test_the_image_goes_to_the_conditional_half_and_zeros_to_the_unconditional(setup):
    from vidtool import checkpoint, model_store
    from vidtool.frozen_base import adapt

    root, _, adapters, (red, _) = setup
    model = checkpoint.from_pretrained(model_store.bundled(FAMILIES["harivo"]))
    adapt(model, {"ip_adapter": str(adapters["harivo"]), "ip_image": str(red), "ip_adapter_scale": 1.0})
    (embeds,) = model.base.image_prompt.added_cond_kwargs(6)["image_embeds"]
    assert embeds.shape == (6, 1, IMAGE_DIM)
    assert (embeds[:3] == model.base.image_prompt.embedding).all() and (embeds[3:] == 0).all()
    assert embeds[:3].abs().sum() > 0


# Each case is a fresh process: the first two run by default, the rest with -m slow.
@pytest.mark.parametrize("case", ["fewer-layers", "not-an-image",
                                  *(pytest.param(case, marks=pytest.mark.slow) for case in (
                                      "other-width", "other-encoder", "no-image", "missing-image", "no-encoder",
                                      "plus-variant", "scale-without-adapter"))])
def test_bad_ip_adapter_input_is_one_line_exit_2_and_writes_nothing(vidtool, setup, tmp_path, case):
    root, _, adapters, (red, _) = setup
    unet = frozen_unet("harivo")
    args = ["--ip-adapter", adapters["harivo"], "--image", red]
    if case == "fewer-layers":  # an adapter of a U-Net with fewer cross-attention layers
        args[1], message = ip_adapter(tmp_path / "few", unet, layers=2), "another U-Net than the model's frozen base"
    elif case == "other-width":
        folder = ip_adapter(tmp_path / "wide", unet)
        file = folder / "ip-adapter_tiny.safetensors"
        from safetensors.torch import load_file

        state = load_file(file)
        state["image_proj.proj.weight"] = torch.zeros(4 * 768, IMAGE_DIM)
        save_file(state, file)
        args[1], message = folder, "projects images to width 768"
    elif case == "other-encoder":
        folder = ip_adapter(tmp_path / "enc", unet)
        image_encoder(folder / "image_encoder", projection_dim=8)
        args[1], message = folder, "embeds images in 8 dimensions"
    elif case == "no-image":
        args, message = args[:2], "pass --image IMG"
    elif case == "missing-image":
        args[3], message = tmp_path / "none.png", "no such file"
    elif case == "not-an-image":
        (tmp_path / "notes.png").write_text("not a picture\n")
        args[3], message = tmp_path / "notes.png", "is not a readable image"
    elif case == "no-encoder":
        folder = tmp_path / "bare"
        folder.mkdir()
        (folder / "a.safetensors").write_bytes((adapters["harivo"] / "ip-adapter_tiny.safetensors").read_bytes())
        args[1], message = folder, "no image_encoder/ folder"
    elif case == "plus-variant":
        folder = ip_adapter(tmp_path / "plus", unet)
        save_file({"image_proj.latents": torch.zeros(1, 16, 384)}, folder / "ip-adapter_tiny.safetensors")
        args[1], message = folder, "not a plain IP-Adapter"
    else:
        args, message = ["--ip-adapter-scale", "0.5"], "pass it too"
    out = tmp_path / "never.safetensors"
    line = one_line_error(vidtool("generate", "a red circle", "--family", "harivo", "--frames", "3", "--steps", "1",
                                  *args, "-o", out))
    assert message in line and not out.exists()
