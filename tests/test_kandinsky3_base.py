"""FusionFrames as published: a Kandinsky 3 pipeline folder (diffusers layout: `unet/` Kandinsky3UNet,
`movq/` VQModel, `text_encoder/` T5EncoderModel, `tokenizer/`, `scheduler/`) as `train-denoiser --base`.
The models are tiny random instances of the real classes saved with `save_pretrained`; the published
Kandinsky 3 U-Net configuration is built on the meta device to show the wrapper and the temporal
blocks take a full-size checkpoint as it is."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_bring_your_own_weights import TEXT_DIM, shapes, t5_config, t5_tokenizer

# kandinsky-community/kandinsky-3 unet/config.json (the values of diffusers' Kandinsky3UNet defaults).
K3_UNET = dict(in_channels=4, time_embedding_dim=1536, groups=32, attention_head_dim=64, layers_per_block=3,
               block_out_channels=(384, 768, 1536, 3072), cross_attention_dim=4096, encoder_hid_dim=4096)
TINY_UNET = dict(in_channels=4, time_embedding_dim=32, groups=4, attention_head_dim=8, layers_per_block=2,
                 block_out_channels=(16, 32), cross_attention_dim=16, encoder_hid_dim=TEXT_DIM)


def tiny_kandinsky3_pipeline(root: Path) -> Path:
    from diffusers import DDPMScheduler, Kandinsky3UNet, VQModel
    from transformers import T5EncoderModel

    torch.manual_seed(0)
    Kandinsky3UNet(**TINY_UNET).save_pretrained(root / "unet")
    # MoVQ's layout (spatial-norm decoder, attention at the last level), x4, 4 latent channels (its
    # SpatialNorm has 32 groups, so widths are multiples of 32).
    VQModel(in_channels=3, out_channels=3, block_out_channels=(32, 32, 32), layers_per_block=1, latent_channels=4,
            down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D", "AttnDownEncoderBlock2D"),
            up_block_types=("AttnUpDecoderBlock2D", "UpDecoderBlock2D", "UpDecoderBlock2D"), norm_num_groups=8,
            num_vq_embeddings=32, vq_embed_dim=4, norm_type="spatial", sample_size=32).save_pretrained(root / "movq")
    T5EncoderModel(t5_config()).save_pretrained(root / "text_encoder")
    t5_tokenizer().save_pretrained(root / "tokenizer")
    DDPMScheduler(beta_schedule="linear", beta_start=0.0001, beta_end=0.02).save_pretrained(root / "scheduler")
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "Kandinsky3Pipeline", "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "Kandinsky3UNet"], "movq": ["diffusers", "VQModel"],
        "text_encoder": ["transformers", "T5EncoderModel"], "tokenizer": ["transformers", "T5TokenizerFast"],
        "scheduler": ["diffusers", "DDPMScheduler"]}))
    return root


def kandinsky3_base(layout: dict):
    from vidtool.generators.t2i import T2IModel, base_config, config_from_unet

    config = config_from_unet(layout, "Kandinsky3UNet", text_max_length=128)
    # Through config.json and back, as a video model's folder stores its base.
    return T2IModel(base_config(json.loads(json.dumps(vars(config), default=vars))))


def test_full_size_kandinsky3_unet_fits_the_wrapper_and_takes_temporal_blocks_at_every_block():
    from diffusers import Kandinsky3UNet
    from diffusers.models.unets.unet_kandinsky3 import Kandinsky3AttentionBlock, Kandinsky3Block, Kandinsky3ResNetBlock

    from vidtool.generators.keyframes import TEMPORAL_VARIANTS, KeyframeConfig, KeyframeModel

    with torch.device("meta"):
        checkpoint_unet = Kandinsky3UNet(**K3_UNET)
        wrapped = kandinsky3_base(dict(checkpoint_unet.config))
        assert shapes(wrapped.unet) == shapes(checkpoint_unet)
        assert wrapped.config.cross_attention_dim == 4096 and wrapped.config.norm_num_groups == 32
        modules = list(checkpoint_unet.modules())
        resnets = sum(isinstance(m, Kandinsky3ResNetBlock) for m in modules)
        attentions = sum(isinstance(m, Kandinsky3AttentionBlock) for m in modules)
        self_attentions = sum(isinstance(m, Kandinsky3AttentionBlock) and name.endswith("attentions.0")
                              for name, m in checkpoint_unet.named_modules())
        spatial_convs = sum(isinstance(m, Kandinsky3Block) and m.projection.kernel_size == (3, 3) for m in modules)
        for variant in TEMPORAL_VARIANTS:
            model = KeyframeModel(KeyframeConfig(base=wrapped.config, temporal=variant))
            assert shapes(model.base.unet) == shapes(checkpoint_unet)  # the base keeps every weight as it is
            assert not any(p.requires_grad for p in model.base.parameters())
            assert all(p.requires_grad for p in model.temporal.parameters())
            want = spatial_convs + self_attentions if variant.endswith("layers") else resnets + attentions
            assert len(model.temporal) == want
    # 4 levels down and up, 3 ResNet pairs each; self- and cross-attention on all but the first level.
    assert resnets == 4 * 3 * 2 * 2 and attentions == 3 * 2 * (1 + 3) and self_attentions == 3 * 2


def test_keyframe_model_on_a_kandinsky3_base_starts_as_the_t2i_model_on_each_frame():
    from vidtool.generators.keyframes import KeyframeConfig, KeyframeModel

    torch.manual_seed(0)
    base = kandinsky3_base(TINY_UNET).eval()
    model = KeyframeModel(KeyframeConfig(base=base.config)).eval()
    model.base.load_state_dict(base.state_dict())
    noisy, text = torch.randn(2, 4, 4, 8, 8), torch.randn(2, 6, TEXT_DIM)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 0]], dtype=torch.bool)
    with torch.no_grad():
        video = model.predict(noisy, torch.tensor([10, 500]), text, mask)
        for b in range(2):
            frames = noisy[b].permute(1, 0, 2, 3)
            alone = base.predict(frames, torch.full((4,), [10, 500][b]), text[b:b + 1].expand(4, -1, -1),
                                 mask[b:b + 1].expand(4, -1))
            assert torch.allclose(video[b].permute(1, 0, 2, 3), alone, atol=1e-5)
        # The temporal blocks are in the path: a non-zero output projection changes the prediction.
        for block in model.temporal.values():
            for p in block.parameters():
                p.add_(0.05 * torch.randn_like(p))
        assert not torch.allclose(model.predict(noisy, torch.tensor([10, 500]), text, mask), video, atol=1e-3)


def test_movq_latents_are_the_pipelines_unquantised_ones_and_decode_without_the_codebook(tmp_path):
    from diffusers import VQModel

    from vidtool.checkpoint import from_pretrained, model_tag

    pipeline = tiny_kandinsky3_pipeline(tmp_path / "k3")
    movq = VQModel.from_pretrained(pipeline / "movq").eval()
    ours = from_pretrained(pipeline)  # the pipeline root: its movq/
    assert ours.family == "vq-model" and model_tag(pipeline / "movq").startswith("vq-model@")
    assert (ours.spatial_factor, ours.temporal_factor, ours.latent_channels, ours.scaling_factor) == (4, 1, 4, 1.0)
    video = torch.rand(1, 3, 2, 32, 32) * 2 - 1
    with torch.no_grad():
        latents = ours.encode(video).latents
        want = movq.encode(video[:, :, 1]).latents
        assert torch.allclose(latents[:, :, 1], want, atol=1e-5)
        quantised = movq.quantize(want)[0]
        assert not torch.allclose(want, quantised)  # so the check above tells the two apart
        assert torch.allclose(ours.decode(latents)[:, :, 1], movq.decode(want, force_not_quantize=True).sample, atol=1e-5)


# --- train, generate, decode with no other flags ------------------------------------------------------

@pytest.fixture(scope="module")
def k3_runs(tmp_path_factory):
    from stage_runner import run_stage

    from vidtool.data.make import make_dataset

    root = tmp_path_factory.mktemp("k3")
    pipeline = tiny_kandinsky3_pipeline(root / "k3")
    make_dataset("shapes", root / "data", 4, seed=0)
    assert run_stage("train-denoiser", "--family", "keyframes", "--base", pipeline, "--data",
                     root / "data" / "manifest.jsonl", "--steps", "2", "--size", "32", "--batch-size", "2",
                     "-o", root / "keyframes") == 0
    return root


def test_keyframes_on_a_kandinsky3_pipeline_record_movq_t5_scale_and_schedule(k3_runs):
    doc = json.loads((k3_runs / "keyframes" / "config.json").read_text())["config"]["base"]
    assert doc["unet_class"] == "Kandinsky3UNet"
    assert doc["vae"].startswith("vq-model@") and Path(doc["vae_path"]) == (k3_runs / "k3" / "movq").resolve()
    assert Path(doc["text_encoder_path"]) == (k3_runs / "k3" / "text_encoder").resolve()
    assert doc["latent_scale"] == 1.0  # Kandinsky3Pipeline diffuses raw MoVQ latents
    assert doc["schedule"]["beta_schedule"] == "linear" and doc["schedule"]["beta_end"] == 0.02  # scheduler/
    assert doc["sample_size"] == 8  # 32-pixel clips over the x4 MoVQ


def test_keyframes_on_a_kandinsky3_pipeline_generate_and_decode_with_no_other_flags(k3_runs):
    from stage_runner import run_stage

    from vidtool.tensorfile import load
    from vidtool.video import read_video

    out = k3_runs / "keyframes.safetensors"
    assert run_stage("generate", "--family", "keyframes", "a red circle", "--model", k3_runs / "keyframes",
                     "--steps", "2", "-o", out) == 0
    tf = load(out)
    assert tf.model.startswith("vq-model@") and tuple(tf["latents"].shape) == (1, 4, 4, 8, 8)
    assert run_stage("decode", out, "-o", k3_runs / "out.mp4") == 0
    frames = read_video(k3_runs / "out.mp4").frames
    assert frames.shape == (4, 32, 32, 3)


def test_interpolation_model_on_a_kandinsky3_base_starts_as_its_t2i_unet_on_the_middle_frame():
    """App. 9 on Kandinsky 3: input conv inflated with zeros, output conv replicated, zero temporal convs
    and (s, tp) embeddings: each of the three frames is what the T2I U-Net predicts for z_t^2 given
    the zero context token."""
    from vidtool.generators.interpolation import InterpolationConfig, InterpolationModel

    torch.manual_seed(0)
    base = kandinsky3_base(TINY_UNET).eval()
    with torch.no_grad():  # a fresh Kandinsky3UNet ignores its time embedding (zero norm MLPs); a trained one not
        for name, p in base.unet.named_parameters():
            if "context_mlp" in name:
                p.normal_(0, 0.1)
    model = InterpolationModel.from_base(base, InterpolationConfig(base=base.config)).eval()
    # Two 3x3 convs in each ResNet block: 2 levels, down and up, 2 blocks each, resnets_in and _out.
    assert len(model.net.temporal_names) == 2 * 2 * 2 * 2 * 2
    noisy, keyframes = torch.randn(1, 4, 6, 8, 8), torch.randn(1, 4, 3, 8, 8)
    t, skip, tp = torch.tensor([300]), torch.tensor([3]), torch.tensor([0])
    with torch.no_grad():
        out = model.predict(noisy, t, keyframes, skip, tp)
        middle = noisy[0, :, 1::3].permute(1, 0, 2, 3)  # z_t^2 of each group
        zero = torch.zeros(2, 1, TEXT_DIM)
        want = base.unet(middle, t.expand(2), encoder_hidden_states=zero,
                         encoder_attention_mask=torch.ones(2, 1)).sample
        for k in range(3):
            assert torch.allclose(out[0, :, k::3].permute(1, 0, 2, 3), want, atol=1e-5)
        # (s, tp) reach the U-Net once their embedding is trained away from zero.
        for p in model.net.unet.class_embedding.parameters():
            p.add_(0.1 * torch.randn_like(p))
        assert not torch.allclose(model.predict(noisy, t, keyframes, skip, tp), out, atol=1e-4)


def test_interp_on_a_kandinsky3_pipeline_fills_in_generated_keyframes_and_decodes(k3_runs):
    from stage_runner import run_stage

    from vidtool.tensorfile import load
    from vidtool.video import read_video

    assert run_stage("train-denoiser", "--family", "interp", "--base", k3_runs / "k3", "--latent-set",
                     k3_runs / "keyframes" / "latent-set.safetensors", "--steps", "2", "--batch-size", "2",
                     "-o", k3_runs / "interp") == 0
    keyframes, video = k3_runs / "kf.safetensors", k3_runs / "video.safetensors"
    assert run_stage("generate", "--family", "keyframes", "a red circle", "--model", k3_runs / "keyframes",
                     "--steps", "2", "-o", keyframes) == 0
    assert run_stage("interpolate", keyframes, "--model", k3_runs / "interp", "--steps", "2", "-o", video) == 0
    tf = load(video)
    assert tf.model.startswith("vq-model@") and tf["latents"].shape[2] == 4 * 4 - 3
    assert run_stage("decode", video, "-o", k3_runs / "interp.mp4") == 0
    assert read_video(k3_runs / "interp.mp4").frames.shape == (13, 32, 32, 3)


def test_controlnet_on_a_kandinsky3_base_is_refused_in_one_line(k3_runs):
    from vidtool.checkpoint import from_pretrained
    from vidtool.errors import UserError
    from vidtool.frozen_base import adapt

    model = from_pretrained(k3_runs / "keyframes")
    with pytest.raises(UserError, match="frozen base is a Kandinsky3UNet, which has no slot"):
        adapt(model, {"controlnet": str(k3_runs / "k3"), "control_images": [[0, "first.png"]]})
