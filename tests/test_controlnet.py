"""`generate --controlnet DIR --control-image FRAME=IMG --control-scale S` on the frozen text-to-image
U-Net of HARIVO and FusionFrames' keyframe model (HARIVO §1, §4.3: an off-the-shelf ControlNet of
the base, no retraining). The ControlNets are diffusers `ControlNetModel`s built from the tiny
bases' U-Nets (`ControlNetModel.from_unet`) and saved with `save_pretrained`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import one_line_error
from PIL import Image
from test_lora import FAMILIES, frozen_unet, generate

from vidtool import tensorfile


def trained_controlnet(unet, folder: Path, seed: int = 0) -> Path:
    """A ControlNet of `unet` as after training: from_unet copies the encoder, and its zero
    convolutions (which make a fresh ControlNet a no-op) are given random weights."""
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_unet(unet)
    g = torch.Generator().manual_seed(seed)
    zero_convs = [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                  controlnet.controlnet_cond_embedding.conv_out]
    with torch.no_grad():
        for conv in zero_convs:
            conv.weight.copy_(torch.randn(conv.weight.shape, generator=g) * 0.3)
    controlnet.save_pretrained(folder)
    return folder


def control_image(path: Path, seed: int, size: int = 64) -> Path:
    """An edge-map-like picture: white lines on black, at another size than the frames (it is resized)."""
    rng = np.random.default_rng(seed)
    pixels = np.zeros((size, size + 16, 3), np.uint8)
    pixels[rng.integers(0, size, 6)] = 255
    pixels[:, rng.integers(0, size + 16, 6)] = 255
    Image.fromarray(pixels).save(path)
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Each family's output without a ControlNet, its ControlNet and two control images."""
    root = tmp_path_factory.mktemp("controlnet")
    torch.set_num_threads(1)
    plain = {family: generate(root, f"plain-{family}", family) for family in FAMILIES}
    nets = {family: trained_controlnet(frozen_unet(family), root / f"cn-{family}") for family in FAMILIES}
    images = [control_image(root / "first.png", 1), control_image(root / "last.png", 2)]
    return root, plain, nets, images


@pytest.mark.parametrize("family", list(FAMILIES))
def test_a_controlnet_on_the_first_and_last_frames_changes_them_and_scale_0_is_bit_identical(setup, family):
    torch.set_num_threads(1)
    root, plain, nets, (first, last) = setup
    args = ("--controlnet", nets[family], "--control-image", f"0={first}", "--control-image", f"-1={last}")
    controlled = generate(root, f"on-{family}", family, *args)
    without = plain[family]
    for frame in (0, 2):  # --frames 3: frame -1 is frame 2
        change = (controlled[:, :, frame] - without[:, :, frame]).abs().mean()
        assert change > 0.05 * without[:, :, frame].abs().mean(), (frame, change)
    assert torch.equal(generate(root, f"off-{family}", family, *args, "--control-scale", "0"), without)
    params = tensorfile.load(root / f"on-{family}.safetensors").params
    assert params["controlnet"] == str(nets[family]) and params["control_scale"] == 1.0
    assert params["control_images"] == [[0, str(first)], [-1, str(last)]]


def test_the_residuals_reach_only_the_controlled_frames_of_every_clip(setup, tmp_path):
    """At the U-Net's input side: the ControlNet runs on frames 0 and 2 of each clip of the batch
    (both halves of classifier-free guidance), the other frames' residuals are exactly zero. Its
    config.json lacks the keys released SD 1.5 ControlNets lack (their defaults are the base's)."""
    import json
    import shutil

    from vidtool import checkpoint, model_store
    from vidtool.frozen_base import adapt

    torch.set_num_threads(1)
    root, _, nets, (first, last) = setup
    shutil.copytree(nets["harivo"], tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    for key in ("mid_block_type", "transformer_layers_per_block", "conditioning_channels"):
        del config[key]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    model = checkpoint.from_pretrained(model_store.bundled(FAMILIES["harivo"]))
    adapt(model, {"controlnet": str(tmp_path / "old"), "control_images": [[0, str(first)], [2, str(last)]],
                  "control_scale": 1.0, "frames": 3})
    x = torch.randn(2 * 3, 4, 8, 8)
    text = torch.randn(2 * 3, 5, model.config.base.cross_attention_dim)
    extra = model.base.control.residuals(x, torch.full((6,), 500), text, frames=3)
    for residual in (*extra["down_block_additional_residuals"], extra["mid_block_additional_residual"]):
        per_frame = residual.abs().flatten(1).sum(dim=1)
        assert (per_frame[[1, 4]] == 0).all() and (per_frame[[0, 2, 3, 5]] > 0).all()
    # Frame 0 of clip 2 gets the same residuals as the ControlNet run on it alone.
    alone = model.base.control.controlnet(x[3:4], torch.full((1,), 500), encoder_hidden_states=text[3:4],
                                          controlnet_cond=model.base.control.conditioning(3, 8, 8, x)[:1],
                                          return_dict=False)[1]
    torch.testing.assert_close(extra["mid_block_additional_residual"][3:4], alone)


# Each case is a fresh process (torch and diffusers imported again): the first two run by default, the
# rest with -m slow.
@pytest.mark.parametrize("case", ["other-widths", "frame-out-of-range",
                                  *(pytest.param(case, marks=pytest.mark.slow) for case in (
                                      "missing-image", "not-an-image", "not-a-controlnet", "no-control-image",
                                      "image-without-controlnet", "bad-pair", "grey-conditioning", "motionaura"))])
def test_bad_controlnet_input_is_one_line_exit_2_and_writes_nothing(vidtool, setup, tmp_path, case):
    from diffusers import UNet2DConditionModel

    root, _, nets, (first, last) = setup
    family, net = "harivo", nets["harivo"]
    args = ["--controlnet", net, "--control-image", f"0={first}"]
    if case == "other-widths":
        config = dict(frozen_unet("harivo").config, block_out_channels=(32, 64, 64))
        other = trained_controlnet(UNet2DConditionModel.from_config(config), tmp_path / "other")
        args, message = ["--controlnet", other, "--control-image", f"0={first}"], "block_out_channels"
    elif case == "frame-out-of-range":
        args, message = [*args, "--control-image", f"3={last}"], "the video has 3 frames"
    elif case == "missing-image":
        args, message = [*args, "--control-image", f"2={tmp_path / 'nothing.png'}"], "no such file"
    elif case == "not-an-image":
        (tmp_path / "notes.png").write_text("not a picture\n")
        args, message = [*args, "--control-image", f"2={tmp_path / 'notes.png'}"], "is not a readable image"
    elif case == "not-a-controlnet":
        frozen_unet("harivo").save_pretrained(tmp_path / "unet")
        args, message = ["--controlnet", tmp_path / "unet", "--control-image", f"0={first}"], "pass a diffusers Control"
    elif case == "no-control-image":
        args, message = ["--controlnet", net], "needs at least one --control-image"
    elif case == "image-without-controlnet":
        args, message = ["--control-image", f"0={first}"], "go with a --controlnet DIR"
    elif case == "grey-conditioning":  # a ControlNet that reads 1-channel control images
        from diffusers import ControlNetModel

        ControlNetModel.from_unet(frozen_unet("harivo"), conditioning_channels=1).save_pretrained(tmp_path / "grey")
        args, message = ["--controlnet", tmp_path / "grey", "--control-image", f"0={first}"], "1-channel control"
    elif case == "bad-pair":
        args, message = ["--controlnet", net, "--control-image", str(first)], "write FRAME=IMAGE"
    else:
        family, message = "motionaura", "a motionaura model has none"
    out = tmp_path / "never.safetensors"
    line = one_line_error(vidtool("generate", "a red circle", "--family", family, "--frames", "3", "--steps", "1",
                                  *args, "-o", out))
    assert message in line and not out.exists()


def test_a_controlnet_and_an_ip_adapter_of_a_stable_diffusion_unet_apply_to_harivo_trained_on_it(tmp_path):
    """The SD path end to end: HARIVO trained on a (tiny) SD pipeline folder, generated with a
    ControlNet from that pipeline's root (`controlnet/`, a 4x conditioning embedding like its 4x VAE)
    on frames 0 and last, together with an IP-Adapter of its unet/, decoded by the pipeline's VAE."""
    import json

    from diffusers import ControlNetModel, UNet2DConditionModel
    from stage_runner import run_stage
    from test_bring_your_own_weights import harivo_on_tiny_sd
    from test_ip_adapter import ip_adapter, picture

    from vidtool.video import read_video

    sd = harivo_on_tiny_sd(tmp_path)
    unet = UNet2DConditionModel.from_pretrained(sd / "unet")
    controlnet = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=(16, 32, 64))
    with torch.no_grad():
        for conv in [*controlnet.controlnet_down_blocks, controlnet.controlnet_mid_block,
                     controlnet.controlnet_cond_embedding.conv_out]:
            conv.weight.normal_(0, 0.3)
    controlnet.save_pretrained(sd / "controlnet")
    index = json.loads((sd / "model_index.json").read_text())
    index |= {"_class_name": "StableDiffusionControlNetPipeline", "controlnet": ["diffusers", "ControlNetModel"]}
    (sd / "model_index.json").write_text(json.dumps(index))
    adapter = ip_adapter(tmp_path / "ip", unet)
    edges = control_image(tmp_path / "edges.png", 3, size=32)
    args = ("--model", tmp_path / "harivo", "--frames", "3", "--steps", "1")
    plain = generate(tmp_path, "plain", "harivo", *args)
    both = generate(tmp_path, "both", "harivo", *args, "--controlnet", sd, "--control-image", f"0={edges}",
                    "--control-image", f"-1={edges}", "--ip-adapter", adapter, "--image",
                    picture(tmp_path / "red.png", (255, 0, 0)))
    assert (both - plain).abs().mean() > 0.01 * plain.abs().mean()
    assert run_stage("decode", tmp_path / "both.safetensors", "-o", tmp_path / "out.mp4") == 0
    assert read_video(tmp_path / "out.mp4").frames.shape == (3, 32, 32, 3)
