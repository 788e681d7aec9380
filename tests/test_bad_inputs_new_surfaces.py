"""Bad input to the newer surfaces (issue 33): pipeline folders as `train-denoiser --base` (their
model_index.json, scheduler/scheduler_config.json, SDXL's second encoder), a diffusers VQModel (MoVQ)
as `encode --model`, and `restore` / `score` with their model folders. Each case is a file or option
a user can hand over, and must end in exit status 2 with one line on stderr naming the problem, never
a traceback or a wrong success, and nothing written. The models are the tiny real ones the feature
tests build, made once for the module."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch


CLIP = '{"path": "text.mp4"}\n'


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny SDXL and Kandinsky 3 pipelines, a Kandinsky 3 latent set (so a --base case reaches the
    base's own files without encoding), OWL-ViT and Swin2SR folders, a clip and its manifest."""
    import curation_footage as footage
    from stage_runner import run_stage
    from test_kandinsky3_base import tiny_kandinsky3_pipeline
    from test_restore import save_tiny_owl
    from test_sdxl_base import tiny_sdxl_pipeline
    from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution, Swin2SRImageProcessor

    from vidtool.data.make import make_dataset
    from vidtool.video import write_video

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("new-surfaces")
    tiny_sdxl_pipeline(root / "sdxl")
    tiny_kandinsky3_pipeline(root / "k3")
    (root / "owl").mkdir()
    save_tiny_owl(root / "owl", shift=3.0)
    torch.manual_seed(0)
    Swin2SRForImageSuperResolution(Swin2SRConfig(image_size=32, embed_dim=8, depths=[1], num_heads=[1], window_size=4,
                                                 upscale=2)).save_pretrained(root / "swin")
    Swin2SRImageProcessor().save_pretrained(root / "swin")
    (root / "clips").mkdir()
    write_video(root / "clips" / "text.mp4", footage.caption(footage.pan(footage.PHOTOS[7], 6)), footage.FPS)
    (root / "clips" / "m.jsonl").write_text(CLIP)
    write_video(root / "v.mp4", (np.random.default_rng(0).random((2, 32, 32, 3)) * 255).astype(np.uint8), 4)
    make_dataset("shapes", root / "data", 4, seed=0)
    assert run_stage("train-denoiser", "--family", "keyframes", "--base", root / "k3", "--data",
                     root / "data" / "manifest.jsonl", "--steps", "1", "--size", "32", "--batch-size", "2",
                     "-o", root / "k3-run") == 0
    return root


def _copy(models: Path, name: str, dest: Path) -> Path:
    shutil.copytree(models / name, dest)
    return dest


def _edit_json(path: Path, **values) -> None:
    doc = json.loads(path.read_text())
    doc.update(values)
    path.write_text(json.dumps(doc))


def _truncate(path: Path, keep: int) -> None:
    path.write_bytes(path.read_bytes()[:keep])


# --- train-denoiser --base PIPELINE: scheduler/scheduler_config.json -----------------------------

SCHEDULES = {
    "beta_start is a string": ({"beta_start": "x"}, "beta_start is 'x'"),
    "beta_end is NaN": ({"beta_end": float("nan")}, "beta_end is nan"),
    "negative beta_start": ({"beta_start": -0.1}, "beta_start is -0.1"),
    "beta_end above 1": ({"beta_end": 1.5}, "beta_end is 1.5"),
    "beta_start above beta_end": ({"beta_start": 0.02, "beta_end": 0.0001}, "is above beta_end"),
    "unknown beta_schedule": ({"beta_schedule": "wavy"}, "beta_schedule 'wavy'"),
    "prediction_type vidtool does not train": ({"prediction_type": "sample"}, "prediction_type 'sample'"),
    "unknown prediction_type": ({"prediction_type": "noise2"}, "prediction_type 'noise2'"),
    "zero timesteps": ({"num_train_timesteps": 0}, "num_train_timesteps is 0"),
    "timesteps as a string": ({"num_train_timesteps": "1000"}, "num_train_timesteps is '1000'"),
    "10^12 timesteps": ({"num_train_timesteps": 10**12}, "num_train_timesteps is 1000000000000"),
    "trained_betas": ({"trained_betas": [0.1, 0.2]}, "trained_betas"),
}


def _train_on(base: Path, models: Path, out: Path, family: str = "keyframes", latents: bool = True) -> list:
    data = ["--latent-set", models / "k3-run" / "latent-set.safetensors"] if latents else \
        ["--data", models / "data" / "manifest.jsonl"]
    return ["train-denoiser", "--family", family, "--base", base, *data, "--steps", "1", "--size", "32",
            "--batch-size", "2", "-o", out]


def _refused(stage, capsys, args: list, expect: str, out: Path | None = None) -> None:
    """Exit 2, one line on stderr naming the problem, and no output written."""
    capsys.readouterr()
    assert stage(*args) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("vidtool: error: "), lines
    assert expect in lines[0], lines[0]
    if out is not None:
        assert not out.exists()


@pytest.mark.parametrize("case", list(SCHEDULES))
def test_a_pipeline_scheduler_config_with_bad_values_is_one_line(case, models, tmp_path, stage, capsys):
    values, expect = SCHEDULES[case]
    base = _copy(models, "k3", tmp_path / "k3")
    _edit_json(base / "scheduler" / "scheduler_config.json", **values)
    _refused(stage, capsys, _train_on(base, models, tmp_path / "out"), expect, tmp_path / "out")


def test_a_scheduler_config_that_is_a_json_list_is_refused_not_ignored(models, tmp_path, stage, capsys):
    base = _copy(models, "k3", tmp_path / "k3")
    (base / "scheduler" / "scheduler_config.json").write_text("[1, 2]")
    _refused(stage, capsys, _train_on(base, models, tmp_path / "out"), "not a scheduler config object", tmp_path / "out")


# --- train-denoiser --base PIPELINE: model_index.json and its components --------------------------

def test_a_model_index_that_is_not_json_is_one_line(models, tmp_path, stage, capsys):
    base = _copy(models, "sdxl", tmp_path / "sdxl")
    (base / "model_index.json").write_text("{")
    _refused(stage, capsys, _train_on(base, models, tmp_path / "out", "harivo", latents=False),
             "model_index.json is not valid JSON", tmp_path / "out")


def test_a_model_index_that_is_a_list_is_one_line(models, tmp_path, stage, capsys):
    base = _copy(models, "k3", tmp_path / "k3")
    (base / "model_index.json").write_text("[1]")
    _refused(stage, capsys, _train_on(base, models, tmp_path / "out"), "holds a JSON list", tmp_path / "out")


@pytest.mark.parametrize("pipeline,part,family", [("k3", "movq", "keyframes"), ("k3", "text_encoder", "keyframes"),
                                                  ("sdxl", "text_encoder_2", "harivo")])
def test_a_component_the_model_index_lists_but_the_folder_lacks_is_refused(pipeline, part, family, models, tmp_path,
                                                                           stage, capsys):
    """Without the check a Kandinsky 3 root lacking movq/ trained its U-Net on the default VAE's latents."""
    base = _copy(models, pipeline, tmp_path / pipeline)
    shutil.rmtree(base / part)
    _refused(stage, capsys, _train_on(base, models, tmp_path / "out", family, latents=False),
             f"lists {part}/ but", tmp_path / "out")


def test_an_sdxl_root_without_tokenizer_2_is_one_line(models, tmp_path, stage, capsys):
    base = _copy(models, "sdxl", tmp_path / "sdxl")
    shutil.rmtree(base / "tokenizer_2")
    _refused(stage, capsys, _train_on(base, models, tmp_path / "out", "harivo", latents=False),
             "no tokenizer in", tmp_path / "out")


def test_a_non_boolean_force_zeros_for_empty_prompt_is_refused(models, tmp_path, stage, capsys):
    """bool("no") is True: the string was read as the opposite of what it says."""
    base = _copy(models, "sdxl", tmp_path / "sdxl")
    _edit_json(base / "model_index.json", force_zeros_for_empty_prompt="no")
    _refused(stage, capsys, _train_on(base, models, tmp_path / "out", "harivo", latents=False),
             "force_zeros_for_empty_prompt is 'no'", tmp_path / "out")


def test_a_truncated_second_text_encoder_is_one_line(models, tmp_path, stage, capsys):
    base = _copy(models, "sdxl", tmp_path / "sdxl")
    _truncate(base / "text_encoder_2" / "model.safetensors", 500)
    _refused(stage, capsys, _train_on(base, models, tmp_path / "out", "harivo", latents=False),
             "cannot load the text encoder in", tmp_path / "out")


def test_a_kandinsky3_latent_set_with_an_sdxl_base_is_one_line(models, tmp_path, stage, capsys):
    _refused(stage, capsys, _train_on(models / "sdxl", models, tmp_path / "out", "harivo"), "was encoded by vq-model@")


# --- encode --model VQMODEL_DIR -----------------------------------------------------------------------

VQ_CASES = {
    "truncated weights": (lambda d: _truncate(d / "diffusion_pytorch_model.safetensors", 1000), "cannot load the diffusers VQModel"),
    "empty weights": (lambda d: _truncate(d / "diffusion_pytorch_model.safetensors", 0), "cannot load the diffusers VQModel"),
    "latent_channels a string": (lambda d: _edit_json(d / "config.json", latent_channels="x"), "cannot load the diffusers VQModel"),
    "negative latent_channels": (lambda d: _edit_json(d / "config.json", latent_channels=-4), "negative dimension"),
    "latent_channels the weights do not have": (lambda d: _edit_json(d / "config.json", latent_channels=8), "cannot load"),
    "no levels": (lambda d: _edit_json(d / "config.json", block_out_channels=[]), "cannot load the diffusers VQModel"),
    "zero norm groups": (lambda d: _edit_json(d / "config.json", norm_num_groups=0), "cannot load the diffusers VQModel"),
    "zero codebook": (lambda d: _edit_json(d / "config.json", num_vq_embeddings=0), "cannot load the diffusers VQModel"),
    # Another norm type builds a decoder whose weights the file does not hold: they were left random.
    "norm_type its weights do not fit": (lambda d: _edit_json(d / "config.json", norm_type="group"), "of the VQModel's weights"),
}


@pytest.mark.parametrize("case", list(VQ_CASES))
def test_a_broken_vq_model_folder_is_one_line(case, models, tmp_path, stage, capsys):
    mutate, expect = VQ_CASES[case]
    folder = _copy(models, "k3/movq", tmp_path / "movq")
    mutate(folder)
    out = tmp_path / "z.safetensors"
    _refused(stage, capsys, ["encode", models / "v.mp4", "--model", folder, "-o", out], expect, out)


# --- restore and score ------------------------------------------------------------------------------------

@pytest.mark.parametrize("options,expect", [
    (["--upscale-model", "{swin}", "--scale", "0"], "Invalid value for '--scale'"),
    (["--upscale-model", "{swin}", "--scale", "3"], "--scale 3, but"),
    (["--remove-text", "--dilate", "-1"], "Invalid value for '--dilate'"),
    (["--remove-text", "--text-detector", "{owl}", "--text-threshold", "nan"], "Invalid value for '--text-threshold'"),
    (["--remove-text", "--text-detector", "{owl}", "--text-threshold", "2"], "Invalid value for '--text-threshold'"),
])
def test_restore_options_out_of_range_are_one_line(options, expect, models, tmp_path, stage, capsys):
    options = [o.format(swin=models / "swin", owl=models / "owl") for o in options]
    _refused(stage, capsys, ["restore", models / "clips" / "m.jsonl", "-o", tmp_path / "out", *options], expect,
             tmp_path / "out")


def test_score_text_threshold_nan_is_one_line(models, tmp_path, stage, capsys):
    _refused(stage, capsys, ["score", models / "clips" / "m.jsonl", "-o", tmp_path / "s.jsonl", "--text-detector",
                             models / "owl", "--text-threshold", "nan"], "Invalid value for '--text-threshold'",
             tmp_path / "s.jsonl")


def _owl_without_vocabulary(d: Path) -> None:
    for name in ("vocab.json", "merges.txt", "tokenizer.json", "tokenizer_config.json"):
        (d / name).unlink(missing_ok=True)


MODEL_FOLDERS = {
    # transformers builds a CLIP tokenizer of 2 tokens without the vocabulary: every query was unknown.
    "OWL-ViT without its vocabulary": ("owl", _owl_without_vocabulary, "--text-detector", "does not know the query"),
    "OWL-ViT with truncated weights": ("owl", lambda d: _truncate(d / "model.safetensors", 800), "--text-detector",
                                       "cannot load the text detector"),
    "OWL-ViT with a string for a size": (
        "owl", lambda d: _edit_json(d / "config.json", text_config={
            **json.loads((d / "config.json").read_text())["text_config"], "max_position_embeddings": "x"}),
        "--text-detector", "cannot load the text detector"),
    "Swin2SR with a string upscale": ("swin", lambda d: _edit_json(d / "config.json", upscale="x"), "--upscale-model",
                                      "cannot load Swin2SR"),
    "Swin2SR with a negative width": ("swin", lambda d: _edit_json(d / "config.json", embed_dim=-8), "--upscale-model",
                                      "cannot load Swin2SR"),
    "Swin2SR with truncated weights": ("swin", lambda d: _truncate(d / "model.safetensors", 300), "--upscale-model",
                                       "cannot load Swin2SR"),
}


@pytest.mark.parametrize("case", list(MODEL_FOLDERS))
def test_a_broken_restore_model_folder_is_one_line(case, models, tmp_path, stage, capsys):
    name, mutate, option, expect = MODEL_FOLDERS[case]
    folder = _copy(models, name, tmp_path / name)
    mutate(folder)
    flags = ["--remove-text", option, folder] if option == "--text-detector" else [option, folder]
    _refused(stage, capsys, ["restore", models / "clips" / "m.jsonl", "-o", tmp_path / "out", *flags], expect,
             tmp_path / "out")


@pytest.mark.parametrize("index,expect", [("{", "is not valid JSON"), ("[]", "holds a JSON list"),
                                          (json.dumps({"_class_name": "StableDiffusionInpaintPipeline"}), "has no unet/")])
def test_a_broken_inpainting_pipeline_is_one_line(index, expect, models, tmp_path, stage, capsys):
    (tmp_path / "inpaint").mkdir()
    (tmp_path / "inpaint" / "model_index.json").write_text(index)
    _refused(stage, capsys, ["restore", models / "clips" / "m.jsonl", "-o", tmp_path / "out", "--remove-text",
                             "--inpaint-model", tmp_path / "inpaint"], expect, tmp_path / "out")


def test_restore_into_the_input_manifests_folder_is_refused(models, tmp_path, stage, capsys):
    """The restored manifest.jsonl and clips/ would land among the clips they repair."""
    clips = _copy(models, "clips", tmp_path / "clips")
    _refused(stage, capsys, ["restore", clips / "m.jsonl", "-o", clips, "--remove-text"], "is the input manifest's folder")
    assert sorted(p.name for p in clips.iterdir()) == ["m.jsonl", "text.mp4"]


def test_restore_to_an_existing_file_is_one_line(models, tmp_path, stage, capsys):
    clip = models / "clips" / "text.mp4"
    before = clip.read_bytes()
    _refused(stage, capsys, ["restore", models / "clips" / "m.jsonl", "-o", clip, "--remove-text"], "is a file")
    assert clip.read_bytes() == before


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs /proc: a folder nobody, root included, can write")
def test_restore_into_a_folder_that_cannot_be_written_is_one_line(models, stage, capsys):
    _refused(stage, capsys, ["restore", models / "clips" / "m.jsonl", "-o", "/proc/self/vidtool-out", "--remove-text"],
             "cannot write /proc/self/vidtool-out")


def test_a_clip_that_will_not_decode_is_an_error_row_not_a_crash(tmp_path, stage):
    """A data stage goes on past one bad clip: the clip's error goes to manifest.errors.jsonl, nothing is written for it."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "c.mp4").write_bytes(b"garbage" * 100)
    (tmp_path / "in" / "m.jsonl").write_text('{"path": "c.mp4"}\n')
    assert stage("restore", tmp_path / "in" / "m.jsonl", "-o", tmp_path / "out", "--remove-text") == 0
    rows = [json.loads(line) for line in (tmp_path / "out" / "manifest.errors.jsonl").read_text().splitlines()]
    assert len(rows) == 1 and "cannot decode video" in rows[0]["error"]
    assert (tmp_path / "out" / "manifest.jsonl").read_text() == ""
    assert not (tmp_path / "out" / "clips").exists() or not any((tmp_path / "out" / "clips").iterdir())


# --- a trained model whose config.json carries the pipeline's schedule, edited by hand -----------------

CONFIG_EDITS = {
    "NaN beta_end": (lambda c: c["base"]["schedule"].update(beta_end=float("nan")), "beta_end must be a number"),
    "string beta_start": (lambda c: c["base"]["schedule"].update(beta_start="x"), "beta_start must be a number"),
    "zero timesteps": (lambda c: c["base"]["schedule"].update(train_timesteps=0), "train_timesteps must be"),
    "unknown beta_schedule": (lambda c: c["base"]["schedule"].update(beta_schedule="wavy"), "beta_schedule must be"),
    "schedule not a mapping": (lambda c: c["base"].update(schedule="x"), "schedule must be a mapping"),
    "string sample_size": (lambda c: c["base"].update(sample_size="x"), "sample_size must be a positive whole number"),
    "zero latent_scale": (lambda c: c["base"].update(latent_scale=0), "latent_scale must be a positive number"),
}


@pytest.mark.parametrize("case", list(CONFIG_EDITS))
def test_generate_with_a_hand_edited_schedule_or_size_is_one_line(case, models, tmp_path, stage, capsys):
    mutate, expect = CONFIG_EDITS[case]
    folder = tmp_path / "model"
    shutil.copytree(models / "k3-run", folder, ignore=shutil.ignore_patterns("train_state", "latent-set.safetensors"))
    doc = json.loads((folder / "config.json").read_text())
    mutate(doc["config"])
    (folder / "config.json").write_text(json.dumps(doc))
    out = tmp_path / "z.safetensors"
    _refused(stage, capsys, ["generate", "a red circle", "--model", folder, "--steps", "2", "-o", out], expect, out)


# --- the U-Net and VAE of a pipeline root, edited or cut short -------------------------------------------

BASE_EDITS = {
    "Kandinsky3UNet with zero groups": ("k3", "keyframes", lambda d: _edit_json(d / "unet" / "config.json", groups=0),
                                        "cannot load the diffusers Kandinsky3UNet"),
    "Kandinsky3UNet with truncated weights": (
        "k3", "keyframes", lambda d: _truncate(d / "unet" / "diffusion_pytorch_model.safetensors", 1000),
        "cannot load the diffusers Kandinsky3UNet"),
    "SDXL VAE with a string scaling_factor": ("sdxl", "harivo", lambda d: _edit_json(d / "vae" / "config.json",
                                                                                  scaling_factor="x"), "scaling_factor is 'x'"),
    "SDXL VAE with a NaN scaling_factor": ("sdxl", "harivo", lambda d: _edit_json(d / "vae" / "config.json",
                                                                               scaling_factor=float("nan")), "scaling_factor is nan"),
    "SDXL VAE with truncated weights": (
        "sdxl", "harivo", lambda d: _truncate(d / "vae" / "diffusion_pytorch_model.safetensors", 100),
        "cannot load the diffusers AutoencoderKL"),
    "SDXL U-Net with a string addition_time_embed_dim": (
        "sdxl", "harivo", lambda d: _edit_json(d / "unet" / "config.json", addition_time_embed_dim="x"),
        "addition_time_embed_dim ('x')"),
}


@pytest.mark.parametrize("case", list(BASE_EDITS))
def test_a_pipeline_whose_unet_or_vae_is_broken_is_one_line(case, models, tmp_path, stage, capsys):
    pipeline, family, mutate, expect = BASE_EDITS[case]
    base = _copy(models, pipeline, tmp_path / pipeline)
    mutate(base)
    _refused(stage, capsys, _train_on(base, models, tmp_path / "out", family, latents=pipeline == "k3"), expect)


def _drop_a_weight(path: Path) -> None:
    """The weights file without its last tensor, saved as safetensors saves it (a partial export)."""
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    tensors.pop(sorted(tensors)[-1])
    save_file(tensors, path, metadata={"format": "pt"})


@pytest.mark.parametrize("name,option", [("owl", "--text-detector"), ("swin", "--upscale-model")])
def test_a_model_folder_missing_a_weight_is_refused_not_run_with_random_weights(name, option, models, tmp_path, stage,
                                                                                capsys):
    folder = _copy(models, name, tmp_path / name)
    _drop_a_weight(folder / "model.safetensors")
    flags = ["--remove-text", option, folder] if option == "--text-detector" else [option, folder]
    _refused(stage, capsys, ["restore", models / "clips" / "m.jsonl", "-o", tmp_path / "out", *flags], "lacks 1 of the",
             tmp_path / "out")
