"""The text-to-image base, the text encoder, latent sets and `train-denoiser`."""

from __future__ import annotations

import pytest
import torch

from conftest import one_line_error
from vidtool import checkpoint
from vidtool.autoencoders import movq_temporal
from vidtool.data.latents import LatentDataset, build_latent_set
from vidtool.data.make import make_dataset
from vidtool.diffusion.guidance import cfg_weight, guide
from vidtool.diffusion.schedulers import NoiseSchedule, diffusion_pair
from vidtool.generators.t2i import T2IModel, drop_prompts, preset
from vidtool.text import TextEncoder
from vidtool.pipelines import fusionframes

SMALL = dict(block_out_channels=(32, 32, 32), norm_num_groups=8, attention_head_dim=16)


@pytest.fixture(scope="module")
def text_encoder():
    return TextEncoder()


@pytest.fixture(scope="module")
def latent_set(tmp_path_factory, text_encoder):
    """12 real shapes clips through a tiny random movq-temporal, with MiniLM captions."""
    root = tmp_path_factory.mktemp("latents")
    make_dataset("shapes", root / "shapes", 12, seed=0)
    torch.manual_seed(0)
    vae = movq_temporal.MoVQTemporal(movq_temporal.preset("tiny", channels=8, norm_groups=4))
    vae_folder = checkpoint.save_pretrained(vae, root / "movq")
    out = build_latent_set([root / "shapes" / "manifest.jsonl"], vae_folder, root / "set.safetensors", frames=8)
    return {"root": root, "file": out, "vae": vae_folder}


def batch_of(dataset, n):
    return torch.utils.data.default_collate([dataset[i] for i in range(n)])


def test_text_encoder_masks_padding_and_tells_prompts_apart(text_encoder):
    a = text_encoder.encode(["a red circle moving left", "a red circle moving left"])
    assert torch.equal(a.tokens[0], a.tokens[1])  # deterministic
    assert a.tokens.shape == (2, 32, 384) and a.mask[0].sum() < 32
    assert torch.all(a.tokens[0][~a.mask[0]] == 0)
    assert torch.allclose(a.pooled.norm(dim=-1), torch.ones(2), atol=1e-5)
    b = text_encoder.encode(["a red circle moving right", "the stock market fell sharply today"])
    # A real sentence encoder: a caption differing by one word is nearer than an unrelated sentence.
    assert a.pooled[0] @ b.pooled[0] > a.pooled[0] @ b.pooled[1] + 0.2


def test_latent_set_records_its_autoencoder_and_prompts(latent_set):
    data = LatentDataset(latent_set["file"])
    assert len(data) == 12 and data.latents.shape == (12, 4, 8, 8, 8)
    assert data.info.vae == checkpoint.model_tag(latent_set["vae"])
    assert data.prompts[0].startswith("a ") and " moving " in data.prompts[0]
    scaled = torch.stack([data[i]["latents"] for i in range(12)])
    assert abs(float(scaled.std()) - 1.0) < 0.05  # latent_scale = 1 / std of the set


def test_training_lowers_the_loss_on_real_batches(latent_set):
    data = LatentDataset(latent_set["file"])
    torch.manual_seed(0)
    model = T2IModel(preset("tiny", **SMALL, latent_scale=data.latent_scale, cond_dropout=0.0))
    batch = batch_of(data, 8)

    def loss():
        torch.manual_seed(1)  # same noise and timesteps each time
        return model.training_losses(batch, step=0, total_steps=1)["loss"]

    before = loss().item()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(25):
        torch.manual_seed(100 + step)
        optimizer.zero_grad()
        model.training_losses(batch, step=step, total_steps=25)["loss"].backward()
        optimizer.step()
    assert loss().item() < 0.8 * before


def test_save_load_reproduces_samples_bit_for_bit(tmp_path, latent_set):
    data = LatentDataset(latent_set["file"])
    torch.manual_seed(0)
    model = T2IModel(preset("tiny", **SMALL))
    folder = checkpoint.save_pretrained(model, tmp_path / "t2i")
    again = checkpoint.from_pretrained(folder)
    item = batch_of(data, 2)
    noise = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    args = (item["text"], item["text_mask"], data.null_text, data.null_mask)
    first = fusionframes.sample_images(model.eval(), *args, noise=noise, steps=3)
    assert torch.equal(first, fusionframes.sample_images(again, *args, noise=noise, steps=3))
    assert first.shape == (2, 4, 8, 8) and torch.isfinite(first).all()


def test_prompt_dropout_uses_the_empty_prompt_at_its_rate():
    b = 4000
    batch = {"text": torch.ones(b, 3, 2), "text_mask": torch.ones(b, 3, dtype=torch.bool),
             "null_text": torch.zeros(3, 2), "null_mask": torch.tensor([True, True, False])}
    torch.manual_seed(0)
    text, mask = drop_prompts(batch, 0.1)
    dropped = text.abs().sum((1, 2)) == 0
    assert abs(dropped.float().mean().item() - 0.1) < 4 * (0.1 * 0.9 / b) ** 0.5
    assert torch.equal(mask[dropped][0], batch["null_mask"])


def test_guidance_forms_agree():
    cond, uncond = torch.randn(5), torch.randn(5)
    # CFG: uncond + s (cond - uncond); context guidance Eq. 5: (1 + w) cond - w uncond.
    assert torch.allclose(guide(cond, uncond, cfg_weight(7.5)), uncond + 7.5 * (cond - uncond), atol=1e-6)
    assert torch.allclose(guide(cond, uncond, 0.25), 1.25 * cond - 0.25 * uncond, atol=1e-6)
    assert torch.equal(guide(cond, uncond, cfg_weight(1.0)), cond)


def test_v_prediction_target_is_alpha_noise_minus_sigma_x0():
    schedule = NoiseSchedule(prediction_type="v_prediction")
    x0 = torch.randn(3, 4, 2, 2)
    t = torch.tensor([0, 500, 999])
    g = torch.Generator().manual_seed(0)
    noisy, _, v = diffusion_pair(schedule, x0, generator=g, timesteps=t)
    alphas = schedule.training_scheduler().alphas_cumprod[t].view(-1, 1, 1, 1)
    noise = (noisy - alphas.sqrt() * x0) / (1 - alphas).sqrt()
    assert torch.allclose(v, alphas.sqrt() * noise - (1 - alphas).sqrt() * x0, atol=1e-4)


def test_train_denoiser_builds_the_set_trains_and_resumes(vidtool, latent_set, tmp_path):
    manifest = latent_set["root"] / "shapes" / "manifest.jsonl"
    args = ["train-denoiser", "--family", "t2i", "--data", manifest, "--vae", latent_set["vae"], "-o", tmp_path / "t2i",
            "--set", "block_out_channels=[32,32,32]", "--set", "norm_num_groups=8", "--frames", "8",
            "--batch-size", "2", "--warmup", "0"]
    first = vidtool(*args, "--steps", "2")
    assert first.returncode == 0, first.stderr
    model = checkpoint.from_pretrained(tmp_path / "t2i")
    assert model.config.vae == checkpoint.model_tag(latent_set["vae"])
    assert (tmp_path / "t2i" / "latent-set.safetensors").is_file()
    more = vidtool(*args, "--steps", "3", "--resume")
    assert more.returncode == 0, more.stderr


def test_train_denoiser_without_data_or_base_exits_2(vidtool, latent_set, tmp_path):
    line = one_line_error(vidtool("train-denoiser", "--family", "t2i", "-o", tmp_path / "x"))
    assert "--data" in line
    line = one_line_error(vidtool("train-denoiser", "--family", "keyframes", "--latent-set", latent_set["file"],
                                  "-o", tmp_path / "k"))
    assert "--base" in line
