"""`generate --lora` and `--base DIR` on FusionFrames' keyframe model with a Kandinsky 3 base (the frozen
Kandinsky3UNet, as published): a diffusers-format LoRA of its attention and linear layers merged into
it, a fine-tuned Kandinsky3UNet of the same config swapped in; ControlNet and IP-Adapter stay refused
(the U-Net has no slot for them). The pipeline and the model trained on it (two updates) are tiny
random instances of the real classes."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from conftest import one_line_error
from test_kandinsky3_base import TINY_UNET, tiny_kandinsky3_pipeline
from test_lora import RANK, generate, random_lora, save_peft

from vidtool import checkpoint

# Self- and cross-attention projections of the tiny Kandinsky3UNet (diffusers' Attention: to_q/k/v,
# to_out.0) on both levels, and its text projection (encoder_hid_proj), all nn.Linear.
LAYERS = ["down_blocks.1.attentions.0.attention.to_q", "down_blocks.1.attentions.1.attention.to_k",
          "down_blocks.1.attentions.1.attention.to_v", "up_blocks.0.attentions.2.attention.to_out.0",
          "up_blocks.1.attentions.1.attention.to_q", "encoder_hid_proj.projection_linear"]


@pytest.fixture(scope="module")
def k3(tmp_path_factory):
    """The pipeline, the keyframe model trained on it (--steps 2) and its output with no add-on."""
    from stage_runner import run_stage

    from vidtool.data.make import make_dataset

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("k3-addons")
    pipeline = tiny_kandinsky3_pipeline(root / "k3")
    make_dataset("shapes", root / "data", 2, seed=0)
    assert run_stage("train-denoiser", "--family", "keyframes", "--base", pipeline, "--data",
                     root / "data" / "manifest.jsonl", "--steps", "2", "--size", "32", "--batch-size", "2",
                     "-o", root / "keyframes") == 0
    return root, pipeline, run(root, "plain")


def run(root: Path, name: str, *args) -> torch.Tensor:
    return generate(root, name, "keyframes", "--model", root / "keyframes", *args)


def frozen_unet(root: Path):
    return checkpoint.from_pretrained(root / "keyframes").base.unet


def changed(a: torch.Tensor, b: torch.Tensor, share: float) -> bool:
    return bool((a - b).abs().mean() > share * b.abs().mean())


def test_a_lora_of_the_kandinsky3_unet_merges_exactly_and_changes_the_keyframes(k3):
    from vidtool import lora

    torch.set_num_threads(1)
    root, _, plain = k3
    unet = frozen_unet(root)
    before = {k: v.clone() for k, v in unet.state_dict().items()}
    layers = random_lora(unet, LAYERS, seed=1)
    (root / "lora").mkdir()
    path = save_peft(root / "lora", layers, alpha=2 * RANK)
    lora.merge(unet, lora.read(path, unet), 0.5)
    for name, (down, up) in layers.items():
        want = before[f"{name}.weight"] + 0.5 * up @ down * 2.0
        torch.testing.assert_close(unet.get_submodule(name).weight, want, rtol=0, atol=1e-6)
    assert {k for k, v in unet.state_dict().items() if not torch.equal(v, before[k])} == {f"{n}.weight" for n in LAYERS}
    assert changed(run(root, "lora", "--lora", path), plain, 0.05)
    assert torch.equal(run(root, "lora-off", "--lora", path, "--lora-scale", "0"), plain)


def test_a_fine_tuned_kandinsky3_unet_swaps_in_and_its_own_weights_change_nothing(k3):
    from diffusers import Kandinsky3UNet

    from vidtool.errors import UserError
    from vidtool.frozen_base import adapt

    torch.set_num_threads(1)
    root, pipeline, plain = k3
    assert torch.equal(run(root, "same-base", "--base", pipeline), plain)  # the pipeline's own unet/
    unet = Kandinsky3UNet.from_pretrained(pipeline / "unet")
    torch.manual_seed(0)
    with torch.no_grad():
        for p in unet.parameters():
            p.add_(0.02 * torch.randn_like(p))
    unet.save_pretrained(root / "tuned" / "unet")
    assert changed(run(root, "tuned-base", "--base", root / "tuned" / "unet"), plain, 0.01)
    Kandinsky3UNet(**{**TINY_UNET, "attention_head_dim": 4}).save_pretrained(root / "other")  # same shapes
    model = checkpoint.from_pretrained(root / "keyframes")
    with pytest.raises(UserError, match="another architecture than the model's frozen base"):
        adapt(model, {"base": str(root / "other")})


def test_controlnet_and_ip_adapter_stay_refused_on_kandinsky3(k3):
    from vidtool.errors import UserError
    from vidtool.frozen_base import adapt

    root, _, _ = k3
    model = checkpoint.from_pretrained(root / "keyframes")
    with pytest.raises(UserError, match="frozen base is a Kandinsky3UNet, which has no slot"):
        adapt(model, {"ip_adapter": str(root), "ip_image": "red.png"})


@pytest.mark.slow
def test_a_stable_diffusion_lora_on_kandinsky3_is_one_line_exit_2(vidtool, k3, tmp_path):
    from diffusers import UNet2DConditionModel
    from test_bring_your_own_weights import tiny_sd_pipeline
    from test_lora import Q

    root, _, _ = k3
    sd_unet = UNet2DConditionModel.from_pretrained(tiny_sd_pipeline(tmp_path / "sd") / "unet")
    path = save_peft(tmp_path, random_lora(sd_unet, [Q]), RANK)
    out = tmp_path / "never.safetensors"
    line = one_line_error(vidtool("generate", "a red circle", "--family", "keyframes", "--model", root / "keyframes",
                                  "--steps", "1", "--lora", path, "-o", out))
    assert "is for another base" in line and "this U-Net has no down_blocks.0.attentions.0" in line
    assert not out.exists()


def test_a_lora_trained_with_peft_on_a_kandinsky3_unet_merges_to_what_peft_computes(tmp_path):
    """The adapter as peft builds and diffusers saves it (LoRA on every attention projection and the text
    projection, alpha 2r): the merged U-Net predicts what the U-Net with peft's LoRA layers predicts.
    peft (which needs accelerate) is not in the test extra: accelerate changes diffusers' loading defaults."""
    pytest.importorskip("peft")
    from diffusers import Kandinsky3UNet
    from diffusers.loaders import StableDiffusionLoraLoaderMixin
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model

    from vidtool import lora

    torch.manual_seed(0)
    unet = Kandinsky3UNet(**TINY_UNET).eval()
    with torch.no_grad():  # as after training: the time embedding reaches the blocks
        for name, p in unet.named_parameters():
            if "context_mlp" in name:
                p.normal_(0, 0.1)
    tuned = Kandinsky3UNet(**TINY_UNET).eval()
    tuned.load_state_dict(unet.state_dict())
    config = LoraConfig(r=RANK, lora_alpha=2 * RANK, init_lora_weights=False,
                        target_modules=["to_q", "to_k", "to_v", "to_out.0", "projection_linear"])
    inject_adapter_in_model(config, tuned)
    StableDiffusionLoraLoaderMixin.save_lora_weights(tmp_path, unet_lora_layers=get_peft_model_state_dict(tuned),
                                                     unet_lora_adapter_metadata=config.to_dict())
    read = lora.read(tmp_path / "pytorch_lora_weights.safetensors", unet)
    assert len(read.layers) == sum(name.endswith(("to_q", "to_k", "to_v", "to_out.0", "projection_linear"))
                                   for name, _ in unet.named_modules())
    x, t, text = torch.randn(2, 4, 8, 8), torch.tensor([10, 500]), torch.randn(2, 6, TINY_UNET["encoder_hid_dim"])
    mask = torch.ones(2, 6)
    with torch.no_grad():
        before = unet(x, t, encoder_hidden_states=text, encoder_attention_mask=mask).sample
        lora.merge(unet, read, 1.0)
        want = tuned(x, t, encoder_hidden_states=text, encoder_attention_mask=mask).sample
        assert (want - before).abs().mean() > 0.05 * before.abs().mean()
        torch.testing.assert_close(unet(x, t, encoder_hidden_states=text, encoder_attention_mask=mask).sample, want,
                                   rtol=1e-4, atol=1e-5)
