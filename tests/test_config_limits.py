"""Model configs are bounded before anything is built (vidtool.config_limits): an absurd size in a
model folder's config.json or a training `--set` is one line and exit 2, at once, instead of a
hang or an exhausted machine; every preset of the project (the paper ones included) passes."""

from __future__ import annotations

import dataclasses
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch

from conftest import one_line_error, run_vidtool
from vidtool.config_limits import MAX_PARAMETERS, check_config, check_parameters, check_values, kind_of
from vidtool.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
DEFAULTS = ROOT / "vidtool" / "defaults"
FAST = 60  # seconds: a subprocess that imports torch and refuses; an unbounded build runs far past it


def preset_cases():
    """(model class, config) of every preset: the tiny ones and the paper ones memory_plan measures."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import memory_plan

    from vidtool.autoencoders import cm_vae, mbq_vae, mcd_vae, movq_temporal
    from vidtool.generators import (
        dmg,
        harivo,
        interpolation,
        keyframes,
        masked_interpolation,
        spectral_inpaint,
        spectral_transformer,
        t2i,
    )

    base = memory_plan.t2i_base
    cases = [(mbq_vae.MBQVAE, mbq_vae.preset(n)) for n in ("tiny", "paper")]
    cases += [(cm_vae.CMVAE, cm_vae.preset(n)) for n in ("tiny", "tiny-footage", "4ch", "16ch")]
    cases += [(cm_vae.CMVAE, cm_vae.preset("16ch", text_dim=2048))]  # the cross-modal variant, Flan-T5-XL
    cases += [(mcd_vae.MCDVAE, mcd_vae.preset(n)) for n in ["tiny", *mcd_vae.PAPER]]
    cases += [(movq_temporal.MoVQTemporal, movq_temporal.preset(n)) for n in ["tiny", *movq_temporal.PAPER_VARIANTS]]
    cases += [(t2i.T2IModel, t2i.preset("tiny")), (t2i.T2IModel, base(512))]
    cases += [(keyframes.KeyframeModel, keyframes.preset("tiny"))]
    cases += [(keyframes.KeyframeModel, dataclasses.replace(keyframes.preset("paper"), base=base(512), temporal=v))
              for v in keyframes.TEMPORAL_VARIANTS]
    cases += [(cls, interpolation.preset("tiny", base=base(256)))
              for cls in (interpolation.InterpolationModel, masked_interpolation.MaskedInterpolationModel)]
    cases += [(harivo.HarivoModel, harivo.preset("tiny", base=base(256), frames=24, clip_fps=6.0, sampling_cfg=None))]
    cases += [(spectral_transformer.SpectralTransformer, spectral_transformer.preset(n))
              for n in spectral_transformer.PRESETS]
    cases += [(spectral_inpaint.SpectralInpaintModel, spectral_inpaint.SpectralInpaintConfig())]
    cases += [(dmg.DMGModel, dmg.preset(n)) for n in ["tiny", *dmg.PAPER]]
    return cases


def test_every_preset_paper_ones_included_is_within_the_bounds():
    cases = preset_cases()
    assert len(cases) >= 35
    counted = []
    for cls, config in cases:
        check_config(cls, config, f"{cls.__name__} preset")  # raises on a violation
        counted.append(check_parameters(cls, config, "preset"))
    # The meta build counted the models that build from their config alone (the largest, MotionAura-L,
    # is under the bound); spectral-inpaint needs its base, so it is not counted.
    assert max(c for c in counted if c is not None) > 1e9
    assert all(c is None or c < MAX_PARAMETERS for c in counted)


def test_every_bundled_model_folder_is_within_the_bounds():
    from vidtool.checkpoint import config_from_dict, model_class, read_config

    folders = sorted(p for p in DEFAULTS.iterdir() if (p / "config.json").is_file())
    assert len(folders) >= 10
    for folder in folders:
        doc = read_config(folder)
        config_from_dict(model_class(doc["family"]), doc["config"])  # bounds checked on the way


def test_the_published_stable_diffusion_configs_are_within_the_bounds():
    """A Stable Diffusion checkout is read as it is (--base, --vae): its U-Net and VAE configs, SDXL's
    included, pass, inside a video family's config as its base too."""
    from diffusers import UNet2DConditionModel

    from test_bring_your_own_weights import SD15_UNET, SD21_UNET, SD_VAE, SDXL_UNET
    from vidtool.autoencoders.sd_vae import diffusers_config
    from vidtool.generators.keyframes import KeyframeConfig
    from vidtool.generators.t2i import config_from_unet

    for layout in (SD15_UNET, SD21_UNET, SDXL_UNET):
        with torch.device("meta"):
            unet_config = UNet2DConditionModel(**layout).config
        check_values(dict(unet_config), "unet/config.json")
        check_values(KeyframeConfig(base=config_from_unet(unet_config)), "keyframes on SD")
    check_values({"diffusers": diffusers_config(SD_VAE)}, "vae/config.json")


@pytest.mark.parametrize("values, field, bound", [
    ({"layers_per_block": 100_000}, "layers_per_block", "512"),
    ({"channels": 10**7}, "channels", "32,768"),
    ({"block_out_channels": [64] * 1000}, "block_out_channels", "64"),  # thousands of levels
    ({"codebook_size": 2**40}, "codebook_size", "16,777,216"),
    ({"frames": 10**6}, "frames", "16,384"),
    ({"heads": 5000}, "heads", "1,024"),
    ({"base": {"unet": {"transformer_layers_per_block": [1, 1, 10**6]}}}, "transformer_layers_per_block", "512"),
    ({"schedule": {"train_timesteps": 10**10}}, "train_timesteps", "100,000"),
])
def test_a_size_past_its_bound_names_the_field_the_value_and_the_bound(values, field, bound):
    with pytest.raises(UserError) as e:
        check_values(values, "config.json")
    message = str(e.value)
    assert field in message and bound in message and "\n" not in message, message


def test_field_kinds_read_from_names():
    assert kind_of("layers_per_block")[0] == "a count of layers or blocks"
    assert kind_of("temporal_block_out_channels")[0] == "a channel width"
    assert kind_of("codebook_size")[0] == "a codebook size"
    assert kind_of("token_frames")[0] == "a frame count"
    assert kind_of("gan_start_step")[0] == "a count of training steps"


def test_a_model_past_the_parameter_bound_is_refused_before_it_is_built():
    from vidtool.generators import spectral_transformer

    config = spectral_transformer.preset("tiny", dim=32_768, blocks=512, heads=1024)
    check_values(config, "ok")  # every size within its own bound ...
    with pytest.raises(UserError, match="parameters"):  # ... but together 6.6e12 parameters
        check_parameters(spectral_transformer.SpectralTransformer, config, "--set")


def _edited_model(tmp_path: Path, bundled: str, key: str, value, in_base: bool = False) -> Path:
    """A copy of a bundled model folder whose config.json (or its nested base config) sets KEY to VALUE."""
    folder = tmp_path / f"{bundled}-edited"
    shutil.copytree(DEFAULTS / bundled, folder)
    doc = json.loads((folder / "config.json").read_text())
    (doc["config"]["base"] if in_base else doc["config"])[key] = value
    (folder / "config.json").write_text(json.dumps(doc))
    return folder


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    import numpy as np

    from vidtool import tensorfile
    from vidtool.checkpoint import digest
    from vidtool.video import write_video

    w = tmp_path_factory.mktemp("limits")
    write_video(w / "clip.mp4", np.zeros((4, 32, 32, 3), dtype=np.uint8), 8.0)
    tensorfile.save(tensorfile.TensorFile(kind="latents", tensors={"latents": torch.zeros(1, 4, 2, 4, 4)},
                                          model=f"movq-temporal@{digest(DEFAULTS / 'movq-tiny')}", fps=8.0),
                    w / "z.safetensors")
    (w / "clips").mkdir()
    write_video(w / "clips" / "a.mp4", np.zeros((8, 32, 32, 3), dtype=np.uint8), 8.0)
    (w / "manifest.jsonl").write_text('{"path": "clips/a.mp4", "caption": "a black square"}\n')
    return w


# case -> (the stage's arguments, with MODEL for the edited folder; the edit; what the line must name)
CASES = {
    "encode --model (layers)": (["encode", "{w}/clip.mp4", "--model", "MODEL", "-o", "{t}/z.safetensors"],
                                ("movq-tiny", "layers_per_block", 100_000), "layers_per_block"),
    "encode --model (width)": (["encode", "{w}/clip.mp4", "--model", "MODEL", "-o", "{t}/z.safetensors"],
                               ("movq-tiny", "channels", 10**7), "channels"),
    "decode --model (levels)": (["decode", "{w}/z.safetensors", "--model", "MODEL", "-o", "{t}/out.mp4"],
                                ("movq-tiny", "channel_multipliers", [1] * 5000), "channel_multipliers"),
    "tokenize --model (codes)": (["tokenize", "{w}/clip.mp4", "--model", "MODEL", "-o", "{t}/t.safetensors"],
                                 ("mbq-vae-tiny", "codebook_size", 2**40), "codebook_size"),
    "generate --model (base layers)": (["generate", "a red circle", "--model", "MODEL", "-o", "{t}/g.safetensors"],
                                       ("keyframes-tiny", "layers_per_block", 100_000, True), "layers_per_block"),
    "train-vae --set": (["train-vae", "--family", "movq-temporal", "--data", "{w}/manifest.jsonl", "--set",
                         "layers_per_block=100000", "--steps", "1", "-o", "{t}/run"], None, "layers_per_block"),
    "train-vae --set (levels)": (["train-vae", "--family", "cm-vae", "--data", "{w}/manifest.jsonl", "--set",
                                  f"block_out_channels={[16] * 3000}", "--steps", "1", "-o", "{t}/run"], None,
                                 "block_out_channels"),
    "train-denoiser --set": (["train-denoiser", "--family", "spectral", "--data", "{w}/manifest.jsonl", "--set",
                              "blocks=100000", "--steps", "1", "-o", "{t}/run"], None, "blocks"),
    "train-denoiser --set (parameters)": (["train-denoiser", "--family", "spectral", "--data", "{w}/manifest.jsonl",
                                           "--set", "dim=32768", "--set", "blocks=512", "--set", "heads=1024",
                                           "--steps", "1", "-o", "{t}/run"], None, "parameters"),
    # A --set value of the wrong type is named with the field and the type it needs (as a config.json
    # one is), not left to the library or layer that trips on it.
    "train-denoiser --set (a word for a number)": (["train-denoiser", "--family", "spectral", "--data",
                                                    "{w}/manifest.jsonl", "--set", "text_dropout=lots", "--steps",
                                                    "1", "-o", "{t}/run"], None, "text_dropout is 'lots'; it must be a number"),
    "train-vae --set (a fraction for a count)": (["train-vae", "--family", "movq-temporal", "--data", "{w}/manifest.jsonl",
                                                  "--set", "layers_per_block=1.5", "--steps", "1", "-o", "{t}/run"], None,
                                                 "layers_per_block is '1.5'; it must be a whole number"),
}


@pytest.mark.parametrize("case", CASES)
def test_an_absurd_size_is_one_line_and_exit_2_at_once(case, inputs, tmp_path):
    template, edit, named = CASES[case]
    model = _edited_model(tmp_path, *edit) if edit else None
    args = [str(model) if a == "MODEL" else a.format(w=inputs, t=tmp_path) for a in template]
    # A hang or an allocation of the asked size would run past the timeout (and fail the test).
    result = run_vidtool(*args, timeout=FAST)
    line = one_line_error(result)
    assert named in line, line
    assert not (tmp_path / "run").exists()  # refused before a run folder or a training set is made


@pytest.mark.parametrize("edit, message", [
    (lambda doc: doc["config"].update(colour=3), "config.json has keys ['colour'] that MoVQTemporalConfig does not know"),
    (lambda doc: doc["config"].update(channels="64"), "config.json: MoVQTemporalConfig.channels is '64'; it must be a whole number"),
    (lambda doc: doc["config"].update(channels=-64), "config.json: MoVQTemporalConfig.channels is -64; it must not be negative"),
])
def test_a_bad_model_config_names_the_files_full_path(edit, message, tmp_path):
    from vidtool.checkpoint import from_pretrained
    from vidtool.errors import UserError

    folder = tmp_path / "model"
    shutil.copytree(DEFAULTS / "movq-tiny", folder)
    doc = json.loads((folder / "config.json").read_text())
    edit(doc)
    (folder / "config.json").write_text(json.dumps(doc))
    with pytest.raises(UserError) as error:
        from_pretrained(folder)
    assert str(error.value) == f"{folder}/{message}"


@pytest.mark.parametrize("content, message", [(b"[" * 100_000, "nests its JSON too deep"),
                                              (b"\xff\xfe\x00\x01", "is not UTF-8 text"),
                                              (b'{"family": ' + b"9" * 5000 + b"}", "Exceeds the limit")])
def test_an_unreadable_model_config_says_why_in_words(content, message, tmp_path):
    from vidtool.checkpoint import from_pretrained
    from vidtool.errors import UserError

    folder = tmp_path / "model"
    shutil.copytree(DEFAULTS / "movq-tiny", folder)
    (folder / "config.json").write_bytes(content)
    with pytest.raises(UserError, match=message):
        from_pretrained(folder)


def test_every_recipe_set_value_passes_the_set_type_check():
    """The `set:` entries of recipes/tiny/configs/*.yaml (ints given to float fields, lists to tuple
    fields, bare words to string fields) are all accepted by the --set type check."""
    import yaml

    from vidtool.autoencoders.build import parse_overrides
    from vidtool.checkpoint import model_class

    checked = 0
    for path in sorted((ROOT / "recipes" / "tiny" / "configs").glob("*.yaml")):
        doc = yaml.safe_load(path.read_text())
        if doc.get("set"):
            values = parse_overrides(doc["set"], model_class(doc["family"]).config_class)
            assert len(values) == len(doc["set"]), path
            checked += len(values)
    assert checked > 50
    floats = parse_overrides(["l2_weight=5", "patch_mask_ratio=[0,0]", "trainable=decoder"],
                             model_class("mbq-vae").config_class)
    assert floats == {"l2_weight": 5, "patch_mask_ratio": (0, 0), "trainable": "decoder"}
