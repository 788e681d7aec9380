"""An SDXL pipeline as the frozen base of HARIVO and FusionFrames (keyframes, interpolation): two text
encoders whose penultimate hidden states are concatenated (the U-Net's tokens) and the second's
pooled projection plus the size micro-conditioning (its `added_cond_kwargs`), as diffusers'
StableDiffusionXLPipeline passes them. The models are tiny random instances of the real classes;
the published SDXL base 1.0 U-Net is built on the meta device."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from test_bring_your_own_weights import SDXL_UNET, TEXT_DIM, clip_text_config, clip_tokenizer, shapes

TEXT_DIM_2 = 48  # the second encoder's width (SDXL base: 768 + 1280)
POOLED_DIM = 16  # its projection (SDXL base: 1280)
TIME_EMBED = 8  # addition_time_embed_dim (SDXL base: 256)


def tiny_sdxl_pipeline(root: Path, *, force_zeros: bool | None = None) -> Path:
    """An SDXL-layout pipeline folder as diffusers writes it: model_index.json, unet/ (text_time
    added conditioning), vae/, text_encoder/ (CLIPTextModel), text_encoder_2/
    (CLIPTextModelWithProjection), tokenizer/ and tokenizer_2/."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    torch.manual_seed(0)
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                         down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                         up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), layers_per_block=1,
                         transformer_layers_per_block=(1, 2), use_linear_projection=True,
                         cross_attention_dim=TEXT_DIM + TEXT_DIM_2, attention_head_dim=(2, 4), norm_num_groups=8,
                         addition_embed_type="text_time", addition_time_embed_dim=TIME_EMBED,
                         projection_class_embeddings_input_dim=POOLED_DIM + 6 * TIME_EMBED).save_pretrained(root / "unet")
    AutoencoderKL(block_out_channels=(16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, norm_num_groups=8,
                  sample_size=32, scaling_factor=0.13025).save_pretrained(root / "vae")
    for tokenizer_dir in ("tokenizer", "tokenizer_2"):
        tokenizer = clip_tokenizer(root / tokenizer_dir)
        tokenizer.save_pretrained(root / tokenizer_dir)
    CLIPTextModel(clip_text_config(len(tokenizer))).save_pretrained(root / "text_encoder")
    second = CLIPTextConfig(**{**clip_text_config(len(tokenizer)).to_dict(), "hidden_size": TEXT_DIM_2,
                               "projection_dim": POOLED_DIM})
    CLIPTextModelWithProjection(second).save_pretrained(root / "text_encoder_2")
    index = {"_class_name": "StableDiffusionXLPipeline", "_diffusers_version": "0.42.1",
             "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
             "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
             "text_encoder_2": ["transformers", "CLIPTextModelWithProjection"],
             "tokenizer_2": ["transformers", "CLIPTokenizer"], "scheduler": ["diffusers", "EulerDiscreteScheduler"]}
    if force_zeros is not None:
        index["force_zeros_for_empty_prompt"] = force_zeros
    (root / "model_index.json").write_text(json.dumps(index))
    return root


@pytest.fixture(scope="module")
def sdxl(tmp_path_factory):
    return tiny_sdxl_pipeline(tmp_path_factory.mktemp("sdxl"))


# --- the text side: StableDiffusionXLPipeline.encode_prompt's conditioning -------------------

def test_sdxl_root_encodes_penultimate_states_of_both_encoders_and_the_pooled_projection(sdxl):
    from transformers import CLIPTextModel, CLIPTextModelWithProjection, CLIPTokenizer

    from vidtool.text import TextEncoder

    encoder = TextEncoder(sdxl, max_length=12)
    assert (encoder.dim, encoder.text_embeds_dim) == (TEXT_DIM + TEXT_DIM_2, POOLED_DIM)
    out = encoder.encode(["a cat", ""])
    want, masks = [], []
    for sub, cls in (("", CLIPTextModel), ("_2", CLIPTextModelWithProjection)):
        tokenizer = CLIPTokenizer.from_pretrained(sdxl / f"tokenizer{sub}")
        model = cls.from_pretrained(sdxl / f"text_encoder{sub}").eval()
        ids = tokenizer(["a cat"], padding="max_length", max_length=12, return_tensors="pt")
        with torch.no_grad():
            states = model(ids["input_ids"], output_hidden_states=True)  # no mask, as the pipeline calls it
        mask = ids["attention_mask"].bool()
        want.append(states.hidden_states[-2] * mask[..., None])
        masks.append(mask)
    assert torch.allclose(out.tokens[:1], torch.cat(want, dim=-1), atol=1e-5)
    assert torch.equal(out.mask[:1], masks[0] | masks[1])
    assert torch.allclose(out.text_embeds[:1], states.text_embeds, atol=1e-5)
    # force_zeros_for_empty_prompt (the pipeline's default): the null condition is zeros.
    assert not out.tokens[1].any() and not out.text_embeds[1].any() and out.text_embeds[0].abs().sum() > 0


def test_a_pipeline_that_keeps_the_empty_prompt_encodes_it(tmp_path):
    from vidtool.text import TextEncoder

    out = TextEncoder(tiny_sdxl_pipeline(tmp_path / "xl", force_zeros=False), max_length=8).encode([""])
    assert out.tokens.abs().sum() > 0 and out.text_embeds.abs().sum() > 0


def test_embed_text_caches_the_pooled_embeddings_of_an_sdxl_pipeline(sdxl, tmp_path):
    from stage_runner import run_stage

    from vidtool.tensorfile import load
    from vidtool.text import TextEncoder
    from vidtool.text_cache import EmbeddingCache

    (tmp_path / "prompts.txt").write_text("a red circle\na blue square\n")
    out = tmp_path / "xl.safetensors"
    assert run_stage("embed-text", tmp_path / "prompts.txt", "--text-encoder", sdxl, "-o", out) == 0
    cache = load(out, kinds=["embeddings"])
    assert cache["embeddings"].shape == (3, 32, TEXT_DIM + TEXT_DIM_2)
    assert cache["text_embeds"].shape == (3, POOLED_DIM)
    read = EmbeddingCache(out).encode(["a blue square", ""])
    direct = TextEncoder(sdxl).encode(["a blue square", ""])
    assert torch.allclose(read.text_embeds, direct.text_embeds, atol=1e-2)  # stored as float16
    assert torch.allclose(read.tokens, direct.tokens, atol=1e-2)


def test_prompt_dropout_drops_the_pooled_embedding_with_its_tokens():
    from vidtool.generators.t2i import drop_conditions

    torch.manual_seed(0)
    batch = {"text": torch.randn(64, 4, 8), "text_mask": torch.ones(64, 4, dtype=torch.bool),
             "null_text": torch.zeros(64, 4, 8), "null_mask": torch.zeros(64, 4, dtype=torch.bool),
             "text_embeds": torch.randn(64, 5), "null_text_embeds": torch.zeros(64, 5)}
    text, mask, pooled = drop_conditions(batch, 0.5)
    dropped = ~mask.any(dim=1)
    assert 0 < dropped.sum() < 64
    assert not pooled[dropped].any() and (pooled[~dropped] == batch["text_embeds"][~dropped]).all()
    assert not text[dropped].any()


# --- the published SDXL base 1.0 U-Net, built on the meta device --------------------------------

def test_video_families_build_around_the_full_size_sdxl_unet_and_feed_its_added_conditions():
    from diffusers import UNet2DConditionModel

    from vidtool.generators.harivo import HarivoConfig, HarivoModel
    from vidtool.generators.interpolation import FRAMES_PER_GROUP, VideoUNet
    from vidtool.generators.keyframes import KeyframeConfig, KeyframeModel
    from vidtool.generators.t2i import T2IModel, config_from_unet

    with torch.device("meta"):
        checkpoint_unet = UNet2DConditionModel(**SDXL_UNET)
        base = config_from_unet(checkpoint_unet.config, text_max_length=77)
        # 2816 = 1280 (CLIP ViT-bigG's projection) + 6 size values x 256 features.
        assert base.text_embeds_dim == 1280 and base.cross_attention_dim == 2048
        for model in (KeyframeModel(KeyframeConfig(base=base)), HarivoModel(HarivoConfig(base=base))):
            assert shapes(model.base.unet) == shapes(checkpoint_unet)
            assert len(model.temporal) > 0
        video = VideoUNet(base, in_channels=8, out_channels=4 * FRAMES_PER_GROUP, temporal_kernel=3)
        video.load_base(checkpoint_unet, input_slot=1, output_copies=FRAMES_PER_GROUP)
        assert video.pooled_context.shape == (1, 1280)
        t2i = T2IModel(base)
        t2i.unet = checkpoint_unet
        out = t2i.predict(torch.empty(2, 4, 16, 16), torch.zeros(2, dtype=torch.long), torch.empty(2, 77, 2048),
                          text_embeds=torch.empty(2, 1280))
        assert out.shape == (2, 4, 16, 16)
        with pytest.raises(Exception, match="pooled text embeddings"):
            t2i.predict(torch.empty(2, 4, 16, 16), torch.zeros(2, dtype=torch.long), torch.empty(2, 77, 2048))


def test_size_condition_is_the_pipelines_default_in_pixels():
    from vidtool.generators.t2i import size_condition

    ids = size_condition(torch.zeros(3, 4, 128, 96), 8)
    assert ids.tolist() == [[1024, 768, 0, 0, 1024, 768]] * 3  # (original, crop, target) as _get_add_time_ids


# --- train-denoiser --base SDXL_PIPELINE_DIR, generate, decode -------------------------------

@pytest.fixture(scope="module")
def sdxl_runs(sdxl, tmp_path_factory):
    from stage_runner import run_stage

    from vidtool.data.make import make_dataset

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("sdxl-runs")
    make_dataset("shapes", root / "data", 4, seed=0)
    assert run_stage("train-denoiser", "--family", "harivo", "--base", sdxl, "--data", root / "data" / "manifest.jsonl",
                     "--steps", "2", "--size", "32", "--batch-size", "2", "-o", root / "harivo") == 0
    return root


def test_harivo_on_an_sdxl_pipeline_records_both_encoders_and_the_vae(sdxl, sdxl_runs):
    from vidtool.tensorfile import load

    config = json.loads((sdxl_runs / "harivo" / "config.json").read_text())["config"]["base"]
    assert Path(config["text_encoder_path"]) == sdxl.resolve()  # the root: both encoders
    assert config["latent_scale"] == 0.13025 and config["pixels_per_latent"] == 4
    assert config["cross_attention_dim"] == TEXT_DIM + TEXT_DIM_2
    latent_set = load(sdxl_runs / "harivo" / "latent-set.safetensors")
    assert latent_set["text_embeds"].shape == (4, POOLED_DIM) and latent_set["null_text_embeds"].shape == (1, POOLED_DIM)
    assert latent_set.params["text_embeds_dim"] == POOLED_DIM


def _decodes(root: Path, generated: Path) -> None:
    from stage_runner import run_stage

    from vidtool.tensorfile import load
    from vidtool.video import read_video

    tf = load(generated)
    assert tf.model.startswith("sd-vae@")
    assert run_stage("decode", generated, "-o", root / f"{generated.stem}.mp4") == 0
    frames = read_video(root / f"{generated.stem}.mp4").frames
    assert frames.shape[1:] == (32, 32, 3) and len(frames) == tf["latents"].shape[2]


def test_harivo_on_an_sdxl_pipeline_generates_and_decodes(sdxl_runs):
    from stage_runner import run_stage

    out = sdxl_runs / "harivo.safetensors"
    assert run_stage("generate", "--family", "harivo", "a red circle", "--model", sdxl_runs / "harivo",
                     "--steps", "2", "-o", out) == 0
    _decodes(sdxl_runs, out)


def test_generate_guides_with_the_prompts_pooled_embedding_against_the_null_ones(sdxl, sdxl_runs):
    """What `generate` wrote is the pipeline run with the encoder's pooled embeddings (the prompt's
    for the conditional half, the empty prompt's zeros for the other); other pooled embeddings
    give another video, so they do reach the U-Net."""
    from stage_runner import run_stage

    from vidtool import checkpoint
    from vidtool.pipelines.harivo import generate
    from vidtool.tensorfile import load
    from vidtool.text import TextEncoder

    out = sdxl_runs / "guided.safetensors"
    assert run_stage("generate", "--family", "harivo", "a red circle", "--model", sdxl_runs / "harivo",
                     "--steps", "2", "-o", out) == 0
    model = checkpoint.from_pretrained(sdxl_runs / "harivo")
    prompt, null = TextEncoder(sdxl).encode(["a red circle"]), TextEncoder(sdxl).encode([""])
    args = (model, prompt.tokens, prompt.mask, null.tokens[0], null.mask[0])

    def run(text_embeds, null_text_embeds):
        with torch.inference_mode():
            return generate(*args, steps=2, generator=[torch.Generator().manual_seed(0)], text_embeds=text_embeds,
                            null_text_embeds=null_text_embeds).latents

    written = load(out)["latents"]
    assert torch.allclose(run(prompt.text_embeds, null.text_embeds[0]), written, atol=1e-5)
    assert not torch.allclose(run(-prompt.text_embeds, null.text_embeds[0]), written, atol=1e-3)


def test_fusionframes_keyframes_and_interpolation_on_an_sdxl_unet_folder(sdxl, sdxl_runs):
    """--base names the pipeline's unet/: its vae/ and both text encoders are found beside it."""
    from stage_runner import run_stage

    latent_set = sdxl_runs / "harivo" / "latent-set.safetensors"
    (sdxl_runs / "prompts.txt").write_text("a blue square\n")
    validate = {"keyframes": ["--validate-every", "1", "--validate-prompts", sdxl_runs / "prompts.txt",
                              "--validate-steps", "1"], "interp": []}
    for family in ("keyframes", "interp"):
        assert run_stage("train-denoiser", "--family", family, "--base", sdxl / "unet", "--latent-set", latent_set,
                         "--steps", "1", "--batch-size", "2", *validate[family], "-o", sdxl_runs / family) == 0
    assert (sdxl_runs / "keyframes" / "samples" / "step-1" / "0.mp4").is_file()  # sampled with the pooled embeddings
    keyframes = sdxl_runs / "keyframes.safetensors"
    assert run_stage("generate", "--family", "fusionframes", "a red circle", "--model", sdxl_runs / "keyframes",
                     "--steps", "2", "-o", keyframes) == 0
    _decodes(sdxl_runs, keyframes)
    video = sdxl_runs / "video.safetensors"
    assert run_stage("interpolate", keyframes, "--model", sdxl_runs / "interp", "--steps", "2", "-o", video) == 0
    _decodes(sdxl_runs, video)


def test_an_sdxl_base_on_captions_without_pooled_embeddings_is_refused_with_one_line(sdxl, sdxl_runs, capsys):
    from stage_runner import run_stage

    assert run_stage("train-denoiser", "--family", "harivo", "--base", sdxl, "--text-encoder", sdxl / "text_encoder",
                     "--data", sdxl_runs / "data" / "manifest.jsonl", "--steps", "1", "--size", "32",
                     "-o", sdxl_runs / "refused") == 2
    err = capsys.readouterr().err
    assert "SDXL-layout U-Net that takes 16-d pooled text embeddings" in err and "carry none" in err
