"""Bring your own pretrained weights: the standard folders of diffusers and transformers (a Stable
Diffusion pipeline root and its components, T5/CLIP text encoders) through every option that names a
model folder, as their libraries save them. The models are tiny random instances of the real classes;
the real configurations of SD 1.5, SD 2.1 and SDXL are built on the meta device to show that a
full-size checkpoint's weights fit what the loader builds."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from conftest import one_line_error

TEXT_DIM = 32
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def clip_tokenizer(folder: Path):
    """A CLIP BPE tokenizer over single letters (no merges), built from a vocabulary written here."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for c in LETTERS:
        vocab[c], vocab[c + "</w>"] = len(vocab), len(vocab) + 1
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    (folder / "merges.txt").write_text("#version: 0.2\n")
    return CLIPTokenizer(str(folder / "vocab.json"), str(folder / "merges.txt"))


def clip_text_config(vocab_size: int):
    from transformers import CLIPTextConfig

    return CLIPTextConfig(vocab_size=vocab_size, hidden_size=TEXT_DIM, intermediate_size=37, num_hidden_layers=2,
                          num_attention_heads=4, max_position_embeddings=77, projection_dim=16,
                          bos_token_id=0, eos_token_id=1, pad_token_id=1)


def t5_tokenizer():
    """A T5 (Unigram, SentencePiece-style) tokenizer over single letters, built with `tokenizers`."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import T5TokenizerFast

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)] + [(c, -1.0) for c in "▁" + LETTERS]
    backend = Tokenizer(models.Unigram(pieces, unk_id=2))
    backend.pre_tokenizer, backend.decoder = pre_tokenizers.Metaspace(), decoders.Metaspace()
    return T5TokenizerFast(tokenizer_object=backend, extra_ids=0)


def t5_config():
    from transformers import T5Config

    return T5Config(vocab_size=32, d_model=TEXT_DIM, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                    decoder_start_token_id=0)


def harivo_on_tiny_sd(root: Path) -> Path:
    """A tiny SD pipeline under ROOT/sd and a HARIVO model trained on it for one update (ROOT/harivo),
    on one thread (the add-on tests compare outputs bit for bit); returns ROOT/sd."""
    from stage_runner import run_stage

    from vidtool.data.make import make_dataset

    torch.set_num_threads(1)
    sd = tiny_sd_pipeline(root / "sd")
    make_dataset("shapes", root / "data", 2, seed=0)
    assert run_stage("train-denoiser", "--family", "harivo", "--base", sd, "--data", root / "data" / "manifest.jsonl",
                     "--steps", "1", "--size", "32", "--batch-size", "2", "-o", root / "harivo") == 0
    return sd


def tiny_sd_pipeline(root: Path) -> Path:
    """A Stable Diffusion 1.x-layout pipeline folder as diffusers writes it: model_index.json, unet/,
    vae/ (x4, 4 latent channels), text_encoder/ (CLIPTextModel) and tokenizer/ beside it."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    UNet2DConditionModel(sample_size=8, in_channels=4, out_channels=4, block_out_channels=(32, 64),
                         down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                         up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                         cross_attention_dim=TEXT_DIM, attention_head_dim=4, norm_num_groups=8).save_pretrained(root / "unet")
    AutoencoderKL(block_out_channels=(16, 16, 16), down_block_types=("DownEncoderBlock2D",) * 3,
                  up_block_types=("UpDecoderBlock2D",) * 3, latent_channels=4, norm_num_groups=8,
                  sample_size=32).save_pretrained(root / "vae")
    tokenizer = clip_tokenizer(root / "tokenizer")
    tokenizer.save_pretrained(root / "tokenizer")
    CLIPTextModel(clip_text_config(len(tokenizer))).save_pretrained(root / "text_encoder")
    (root / "model_index.json").write_text(json.dumps({
        "_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
        "unet": ["diffusers", "UNet2DConditionModel"], "vae": ["diffusers", "AutoencoderKL"],
        "text_encoder": ["transformers", "CLIPTextModel"], "tokenizer": ["transformers", "CLIPTokenizer"],
        "scheduler": ["diffusers", "DDIMScheduler"], "safety_checker": [None, None],
        "feature_extractor": [None, None]}))
    return root


# The published configs (the `unet/config.json` of runwayml/stable-diffusion-v1-5,
# stabilityai/stable-diffusion-2-1 and stabilityai/stable-diffusion-xl-base-1.0), minus defaults.
SD15_UNET = dict(sample_size=64, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280, 1280), attention_head_dim=8, cross_attention_dim=768,
                 down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"))
SD21_UNET = dict(SD15_UNET, sample_size=96, attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024,
                 use_linear_projection=True, upcast_attention=True)
SDXL_UNET = dict(sample_size=128, in_channels=4, out_channels=4, layers_per_block=2,
                 block_out_channels=(320, 640, 1280), attention_head_dim=(5, 10, 20), cross_attention_dim=2048,
                 down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                 up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                 transformer_layers_per_block=(1, 2, 10), use_linear_projection=True, addition_embed_type="text_time",
                 addition_time_embed_dim=256, projection_class_embeddings_input_dim=2816)
SD_VAE = dict(block_out_channels=(128, 256, 512, 512), down_block_types=("DownEncoderBlock2D",) * 4,
              up_block_types=("UpDecoderBlock2D",) * 4, latent_channels=4, layers_per_block=2, sample_size=512)


def shapes(module) -> dict[str, tuple]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


@pytest.mark.parametrize("layout", [SD15_UNET, SD21_UNET, SDXL_UNET], ids=["sd1.5", "sd2.1", "sdxl"])
def test_full_size_stable_diffusion_unets_fit_the_wrapper_weight_for_weight(layout):
    """What a checkpoint of each layout holds (its U-Net built on the meta device) is exactly what the
    t2i wrapper built from that checkpoint's config expects: every key, every shape."""
    from diffusers import UNet2DConditionModel

    from vidtool.generators.t2i import T2IModel, base_config, config_from_unet

    with torch.device("meta"):
        checkpoint_unet = UNet2DConditionModel(**layout)
        config = config_from_unet(checkpoint_unet.config)
        # Through config.json and back, as a video model's folder stores its base.
        wrapped = T2IModel(base_config(json.loads(json.dumps(vars(config), default=vars))))
    assert shapes(wrapped.unet) == shapes(checkpoint_unet)


@pytest.mark.parametrize("layout", [SD15_UNET, SD21_UNET], ids=["sd1.5", "sd2.1"])
def test_video_families_build_around_a_full_size_sd_unet_and_keep_its_weights_as_they_are(layout):
    from diffusers import UNet2DConditionModel

    from vidtool.generators.harivo import HarivoConfig, HarivoModel
    from vidtool.generators.keyframes import KeyframeConfig, KeyframeModel
    from vidtool.generators.t2i import config_from_unet

    with torch.device("meta"):
        unet = shapes(UNet2DConditionModel(**layout))
        base = config_from_unet(UNet2DConditionModel(**layout).config, text_max_length=77)
        for model in (KeyframeModel(KeyframeConfig(base=base)), HarivoModel(HarivoConfig(base=base))):
            own = shapes(model.base.unet)
            assert own == unet
            assert len(model.temporal) > 0


def test_full_size_sd_vae_fits_the_sd_vae_family():
    from diffusers import AutoencoderKL

    from vidtool.autoencoders.sd_vae import SDVAE, SDVAEConfig, diffusers_config

    with torch.device("meta"):
        vae = AutoencoderKL(**SD_VAE)
        model = SDVAE(SDVAEConfig(diffusers=diffusers_config(vae.config)))
    assert shapes(model.vae) == shapes(vae)
    assert (model.spatial_factor, model.temporal_factor, model.latent_channels) == (8, 1, 4)
    assert model.scaling_factor == 0.18215  # AutoencoderKL's default, SD 1.x/2.x's published factor


# --- text encoders ----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sd_pipeline(tmp_path_factory):
    return tiny_sd_pipeline(tmp_path_factory.mktemp("sd"))


def test_t5_encoder_folder_of_current_transformers_embeds_as_the_model_does(tmp_path):
    """A T5EncoderModel saved by transformers 5 (config `is_encoder_decoder: false`) gives the
    encoder's own last hidden states, zero at padding."""
    from transformers import T5EncoderModel

    from vidtool.text import TextEncoder

    torch.manual_seed(0)
    t5 = T5EncoderModel(t5_config()).eval()
    t5.save_pretrained(tmp_path / "t5")
    tokenizer = t5_tokenizer()
    tokenizer.save_pretrained(tmp_path / "t5")
    assert json.loads((tmp_path / "t5" / "config.json").read_text())["is_encoder_decoder"] is False
    encoder = TextEncoder(tmp_path / "t5", max_length=12)
    out = encoder.encode(["a cat"])
    ids = tokenizer(["a cat"], padding="max_length", max_length=12, return_tensors="pt")
    with torch.no_grad():
        want = t5(**ids).last_hidden_state * ids["attention_mask"][..., None]
    assert torch.allclose(out.tokens, want, atol=1e-6)
    assert out.mask.sum() == ids["attention_mask"].sum() < 12


def test_an_encoder_decoder_t5_checkpoint_contributes_its_encoder_and_builds_no_decoder(tmp_path):
    from transformers import T5ForConditionalGeneration

    from vidtool.text import TextEncoder

    torch.manual_seed(0)
    full = T5ForConditionalGeneration(t5_config()).eval()
    full.save_pretrained(tmp_path / "t5")
    t5_tokenizer().save_pretrained(tmp_path / "t5")
    encoder = TextEncoder(tmp_path / "t5", max_length=8)
    assert not any(name.startswith("decoder") for name, _ in encoder.model.named_parameters())
    ids = encoder.tokenizer(["abc"], padding="max_length", max_length=8, return_tensors="pt")
    with torch.no_grad():
        want = full.get_encoder()(**ids).last_hidden_state * ids["attention_mask"][..., None]
    assert torch.allclose(encoder.encode(["abc"]).tokens, want, atol=1e-6)


def test_a_full_clip_model_folder_gives_its_text_half(tmp_path):
    from transformers import CLIPConfig, CLIPModel

    from vidtool.text import TextEncoder

    tokenizer = clip_tokenizer(tmp_path / "clip")
    text = clip_text_config(len(tokenizer))
    torch.manual_seed(0)
    full = CLIPModel(CLIPConfig(text_config=text.to_dict(), projection_dim=16, vision_config=dict(
        hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=4, image_size=16,
        patch_size=8))).eval()
    full.save_pretrained(tmp_path / "clip")
    tokenizer.save_pretrained(tmp_path / "clip")
    encoder = TextEncoder(tmp_path / "clip", max_length=10)
    ids = tokenizer(["a cat"], padding="max_length", max_length=10, return_tensors="pt")
    with torch.no_grad():
        want = full.text_model(**ids).last_hidden_state * ids["attention_mask"][..., None]
    assert encoder.dim == TEXT_DIM
    assert torch.allclose(encoder.encode(["a cat"]).tokens, want, atol=1e-6)


def test_embed_text_reads_sd_text_encoder_with_its_sibling_tokenizer_and_a_t5_folder(sd_pipeline, tmp_path):
    from stage_runner import run_stage
    from transformers import T5EncoderModel

    from vidtool.tensorfile import load

    (tmp_path / "prompts.txt").write_text("a red circle\na blue square\n")
    torch.manual_seed(0)
    T5EncoderModel(t5_config()).save_pretrained(tmp_path / "t5")
    t5_tokenizer().save_pretrained(tmp_path / "t5")
    for encoder, name in ((sd_pipeline / "text_encoder", f"{sd_pipeline.name}/text_encoder"), (tmp_path / "t5", "t5")):
        out = tmp_path / f"{encoder.name}.safetensors"
        assert run_stage("embed-text", tmp_path / "prompts.txt", "--text-encoder", encoder, "-o", out) == 0
        cache = load(out, kinds=["embeddings"])
        assert cache["embeddings"].shape == (3, 32, TEXT_DIM)  # the empty prompt and the two given
        assert cache.params["text_encoder"] == name


def test_a_folder_of_the_wrong_kind_is_one_line_exit_2(vidtool, sd_pipeline, tmp_path):
    (tmp_path / "prompts.txt").write_text("a red circle\n")
    line = one_line_error(vidtool("embed-text", tmp_path / "prompts.txt", "--text-encoder", sd_pipeline / "vae",
                                  "-o", tmp_path / "e.safetensors"))
    assert "diffusers AutoencoderKL folder" in line and "not a transformers text encoder" in line


def test_train_denoiser_refuses_a_text_encoder_as_base_and_as_vae(sd_pipeline, tmp_path, capsys):
    from stage_runner import run_stage

    from vidtool.data.make import make_dataset

    make_dataset("shapes", tmp_path / "data", 2, seed=0)
    common = ["train-denoiser", "--data", tmp_path / "data" / "manifest.jsonl", "--steps", "1", "--size", "32"]
    assert run_stage(*common, "--family", "harivo", "--base", sd_pipeline / "text_encoder", "-o", tmp_path / "a") == 2
    assert "transformers clip_text_model folder" in capsys.readouterr().err
    assert run_stage(*common, "--family", "t2i", "--vae", sd_pipeline / "text_encoder", "-o", tmp_path / "b") == 2
    assert "not a vidtool model or a diffusers AutoencoderKL or VQModel folder" in capsys.readouterr().err


# --- text length: one number from training set to sampling ----------------------------------

def test_harivo_on_a_77_token_base_trains_on_77_token_captions_and_refuses_32():
    from vidtool.data.latents import LatentSetInfo
    from vidtool.generators import harivo
    from vidtool.generators.t2i import T2IConfig, T2IModel

    base = T2IModel(T2IConfig(block_out_channels=(16, 32), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                              up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), attention_head_dim=8,
                              cross_attention_dim=16, norm_num_groups=8, text_max_length=77, vae="v@1"))
    video = dict(frames=4, temporal_head_dim=8, mapping_hidden=8, mapping_head_dim=4, dc_queue_size=8)
    data = dict(vae="v@1", latent_std=1.0, text_encoder="t", frames=4, size=32)
    with pytest.raises(ValueError, match="rebuild the set with --text-length 77"):
        harivo.build("tiny", video, base, LatentSetInfo(**data, text_length=32))
    model = harivo.build("tiny", video, base, LatentSetInfo(**data, text_length=77))
    mask = torch.ones(2, 77, dtype=torch.bool)
    batch = {"latents": torch.randn(2, 4, 4, 8, 8), "text": torch.randn(2, 77, 16), "text_mask": mask,
             "null_text": torch.zeros(77, 16), "null_mask": mask[0] & False}
    assert torch.isfinite(model.training_losses(batch, step=0, total_steps=1)["loss"])


def test_a_text_cache_of_another_length_than_the_model_reads_is_refused(tmp_path):
    from stage_runner import run_stage

    from vidtool.errors import UserError
    from vidtool.text_cache import text_encoder_or_cache

    (tmp_path / "p.txt").write_text("a red circle\n")
    assert run_stage("embed-text", tmp_path / "p.txt", "--max-length", "16", "-o", tmp_path / "c.safetensors") == 0
    with pytest.raises(UserError, match="holds 16 tokens per prompt; this model reads 32"):
        text_encoder_or_cache(tmp_path / "c.safetensors", None, max_length=32)


# --- a Stable Diffusion pipeline folder as --base: train, generate, decode --------------------

@pytest.fixture(scope="module")
def sd_runs(sd_pipeline, tmp_path_factory):
    """train-denoiser --family harivo --base SD_PIPELINE_DIR: the latent set is made with the
    pipeline's own vae/ and text_encoder/ (no --vae, no --text-encoder)."""
    from stage_runner import run_stage

    from vidtool.data.make import make_dataset

    root = tmp_path_factory.mktemp("sd-runs")
    make_dataset("shapes", root / "data", 4, seed=0)
    args = ["--steps", "2", "--size", "32", "--batch-size", "2"]
    assert run_stage("train-denoiser", "--family", "harivo", "--base", sd_pipeline, "--data",
                     root / "data" / "manifest.jsonl", *args, "-o", root / "harivo") == 0
    return root


def test_a_video_family_on_an_sd_pipeline_records_its_vae_scale_and_text_encoder(sd_pipeline, sd_runs):
    config = json.loads((sd_runs / "harivo" / "config.json").read_text())["config"]["base"]
    assert config["vae"].startswith("sd-vae@") and Path(config["vae_path"]) == (sd_pipeline / "vae").resolve()
    assert config["latent_scale"] == 0.18215  # the VAE's scaling_factor, what the frozen U-Net was trained at
    assert Path(config["text_encoder_path"]) == (sd_pipeline / "text_encoder").resolve()
    assert config["cross_attention_dim"] == TEXT_DIM and config["unet"]["cross_attention_dim"] == TEXT_DIM


def decodes(root: Path, generated: Path) -> None:
    """`decode` with no --model finds the SD VAE the latents name and writes a video."""
    from stage_runner import run_stage

    from vidtool.tensorfile import load
    from vidtool.video import read_video

    tf = load(generated)
    assert tf.model.startswith("sd-vae@")
    assert run_stage("decode", generated, "-o", root / "out.mp4") == 0
    frames = read_video(root / "out.mp4").frames
    assert frames.shape[1:] == (32, 32, 3) and len(frames) == tf["latents"].shape[2]


@pytest.mark.slow
def test_harivo_on_an_sd_pipeline_generates_and_decodes_with_no_other_flags(sd_runs):
    from stage_runner import run_stage

    out = sd_runs / "harivo.safetensors"
    assert run_stage("generate", "--family", "harivo", "a red circle", "--model", sd_runs / "harivo", "-o", out) == 0
    decodes(sd_runs, out)


def test_keyframes_on_an_sd_unet_folder_generate_and_decode(sd_pipeline, sd_runs):
    """--base names the pipeline's unet/ (its vae/ and text_encoder/ are found beside it)."""
    from stage_runner import run_stage

    assert run_stage("train-denoiser", "--family", "keyframes", "--base", sd_pipeline / "unet", "--latent-set",
                     sd_runs / "harivo" / "latent-set.safetensors", "--steps", "1", "--batch-size", "2",
                     "-o", sd_runs / "keyframes") == 0
    out = sd_runs / "keyframes.safetensors"
    assert run_stage("generate", "--family", "fusionframes", "a red circle", "--model", sd_runs / "keyframes",
                     "--steps", "2", "-o", out) == 0
    decodes(sd_runs, out)
