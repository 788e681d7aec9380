"""`vidtool import-weights`: released checkpoints in their released key layouts, built here from tiny
models (the real diffusers/transformers classes for Stable Diffusion; for KandinskyVideo's MoVQ, a
vidtool movq-temporal written in the release's key layout by the inverse mapping below), converted and
checked to give back the same tensors and compute what they computed; pickles that would run code are
refused without running it."""

from __future__ import annotations

import pytest
import torch
from conftest import one_line_error
from stage_runner import run_stage

# --- Stable Diffusion: diffusers components -> the original single-file (ldm) layout -----------------
# diffusers converts ldm -> diffusers only; these are the inverse renames for the tiny SD 1.x
# layout of tests/test_bring_your_own_weights.tiny_sd_pipeline (the keys of a v1-5 .safetensors).

RESNET = {"norm1": "in_layers.0", "conv1": "in_layers.2", "norm2": "out_layers.0", "conv2": "out_layers.3",
          "time_emb_proj": "emb_layers.1", "conv_shortcut": "skip_connection"}


def ldm_unet_key(key: str, config) -> str:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["unet"]["layers"]
    if key in fixed:
        return fixed[key]
    p = key.split(".")
    per = config.layers_per_block + 1

    def resnet(rest):
        return ".".join([RESNET[rest[0]], *rest[1:]])

    if p[0] == "down_blocks":
        b = int(p[1])
        if p[2] == "downsamplers":
            return f"input_blocks.{1 + b * per + config.layers_per_block}.0.op.{p[-1]}"
        i = 1 + b * per + int(p[3])
        return f"input_blocks.{i}.0.{resnet(p[4:])}" if p[2] == "resnets" else f"input_blocks.{i}.1.{'.'.join(p[4:])}"
    if p[0] == "mid_block":
        return f"middle_block.{2 * int(p[2])}.{resnet(p[3:])}" if p[1] == "resnets" else f"middle_block.1.{'.'.join(p[3:])}"
    assert p[0] == "up_blocks", key
    b = int(p[1])
    if p[2] == "upsamplers":
        after = 2 if config.up_block_types[b].startswith("CrossAttn") else 1
        return f"output_blocks.{b * per + config.layers_per_block}.{after}.conv.{p[-1]}"
    i = b * per + int(p[3])
    return f"output_blocks.{i}.0.{resnet(p[4:])}" if p[2] == "resnets" else f"output_blocks.{i}.1.{'.'.join(p[4:])}"


def ldm_vae_key(key: str, value: torch.Tensor, levels: int) -> tuple[str, torch.Tensor]:
    from diffusers.loaders.single_file_utils import DIFFUSERS_TO_LDM_MAPPING

    fixed = DIFFUSERS_TO_LDM_MAPPING["vae"]
    if key in fixed:
        return fixed[key], value
    p = key.split(".")
    side, rest = p[0], p[1:]
    if rest[0] == "mid_block" and rest[1] == "attentions":
        names = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out": "proj_out"}
        leaf = [names[rest[3]], rest[-1]]
        return ".".join([side, "mid.attn_1", *leaf]), value[:, :, None, None] if value.ndim == 2 else value
    if rest[0] == "mid_block":
        rest = [f"mid.block_{int(rest[2]) + 1}", *rest[3:]]
    elif rest[0] in ("down_blocks", "up_blocks"):
        level = int(rest[1]) if side == "encoder" else levels - 1 - int(rest[1])
        where = "down" if side == "encoder" else "up"
        if rest[2] in ("downsamplers", "upsamplers"):
            rest = [f"{where}.{level}.{where}sample", *rest[4:]]
        else:
            rest = [f"{where}.{level}.block.{rest[3]}", *rest[4:]]
    return ".".join([side, *rest]).replace("conv_shortcut", "nin_shortcut"), value


def sd_single_file(unet, vae, text_encoder) -> dict[str, torch.Tensor]:
    """The tensors of an SD 1.x single-file checkpoint holding these three models."""
    tensors = {f"model.diffusion_model.{ldm_unet_key(k, unet.config)}": v for k, v in unet.state_dict().items()}
    levels = len(vae.config.down_block_types)
    for k, v in vae.state_dict().items():
        name, value = ldm_vae_key(k, v, levels)
        tensors[f"first_stage_model.{name}"] = value
    # As the published files name them (transformers 5 drops `text_model.` from CLIPTextModel's own keys).
    tensors.update({f"cond_stage_model.transformer.text_model.{k.removeprefix('text_model.')}": v
                    for k, v in text_encoder.state_dict().items()})
    return {k: v.contiguous() for k, v in tensors.items()}


@pytest.fixture(scope="module")
def sd_import(tmp_path_factory):
    """A tiny SD pipeline folder as --config (seed 0), and a single-file checkpoint of the same shapes
    but other weights (seed 1), imported."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from safetensors.torch import save_file
    from test_bring_your_own_weights import tiny_sd_pipeline
    from transformers import CLIPTextModel

    root = tmp_path_factory.mktemp("sd")
    config = tiny_sd_pipeline(root / "config")
    torch.manual_seed(1)
    models = {
        "unet": UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(config / "unet")),
        "vae": AutoencoderKL.from_config(AutoencoderKL.load_config(config / "vae")),
        "text_encoder": CLIPTextModel(CLIPTextModel.config_class.from_pretrained(config / "text_encoder")),
    }
    for model in models.values():
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.05 * torch.randn_like(p))  # norms and biases too, so a missed tensor shows
        model.eval()
    save_file(sd_single_file(models["unet"], models["vae"], models["text_encoder"]), root / "tiny-sd.safetensors")
    assert run_stage("import-weights", root / "tiny-sd.safetensors", "--family", "sd", "--config-dir", config,
                     "-o", root / "imported") == 0
    return root / "imported", config, models


def test_a_single_file_sd_checkpoint_becomes_a_pipeline_folder_that_computes_what_it_did(sd_import):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel

    out, config, models = sd_import
    assert {p.name for p in out.iterdir()} >= {"model_index.json", "unet", "vae", "text_encoder", "tokenizer"}
    from safetensors import safe_open

    with safe_open(out.parent / "tiny-sd.safetensors", "pt") as f:  # the published layout's names
        assert "cond_stage_model.transformer.text_model.final_layer_norm.weight" in f.keys()
    torch.manual_seed(2)
    latents, t, text = torch.randn(1, 4, 8, 8), torch.tensor([10]), torch.randn(1, 5, 32)
    ids = torch.tensor([[0, 3, 5, 7, 1]])
    images = torch.rand(1, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        unet = UNet2DConditionModel.from_pretrained(out / "unet").eval()
        vae = AutoencoderKL.from_pretrained(out / "vae").eval()
        text_encoder = CLIPTextModel.from_pretrained(out / "text_encoder").eval()
        expected = models["unet"](latents, t, text).sample
        torch.testing.assert_close(unet(latents, t, text).sample, expected)
        torch.testing.assert_close(vae.encode(images).latent_dist.mean, models["vae"].encode(images).latent_dist.mean)
        torch.testing.assert_close(vae.decode(latents).sample, models["vae"].decode(latents).sample)
        torch.testing.assert_close(text_encoder(ids).last_hidden_state, models["text_encoder"](ids).last_hidden_state)
        # The weights are the checkpoint's, not the --config folder's.
        theirs = UNet2DConditionModel.from_pretrained(config / "unet").eval()(latents, t, text).sample
        assert not torch.allclose(theirs, expected, atol=1e-3)


def test_the_imported_sd_folder_is_what_base_and_sd_vae_accept(sd_import):
    from vidtool import checkpoint
    from vidtool.generators.t2i import T2IModel
    from vidtool.standard_folders import component, is_diffusers_unet

    out, _, models = sd_import
    vae = checkpoint.from_pretrained(out)  # a pipeline root as --vae / decode --model: its vae/
    assert vae.family == "sd-vae"
    latents = torch.randn(1, 4, 2, 8, 8)
    with torch.no_grad():
        frames = vae.decode(latents)
        torch.testing.assert_close(frames[:, :, 1], models["vae"].decode(latents[:, :, 1]).sample)
    assert is_diffusers_unet(out)  # what train-denoiser --base checks first
    base = T2IModel.from_unet_folder(component(out, "unet", "--base"))
    torch.testing.assert_close(base.unet.conv_in.weight, models["unet"].conv_in.weight)


def test_sd_import_without_config_or_of_another_version_is_one_line(vidtool, sd_import, tmp_path):
    from safetensors.torch import load_file, save_file

    out, config, _ = sd_import
    source = out.parent / "tiny-sd.safetensors"
    line = one_line_error(vidtool("import-weights", source, "--family", "sd", "-o", tmp_path / "a"))
    assert "--config-dir" in line and "nothing is downloaded" in line
    line = one_line_error(vidtool("import-weights", source, "--family", "sd", "--config", config, "-o", tmp_path / "a"))
    assert "is a folder" in line and "--config-dir" in line  # --config is every stage's options file
    tensors = load_file(source)
    tensors["model.diffusion_model.out.2.weight"] = torch.zeros(4, 16, 3, 3)  # a U-Net of other widths
    save_file(tensors, tmp_path / "other.safetensors")
    line = one_line_error(vidtool("import-weights", tmp_path / "other.safetensors", "--family", "sd",
                                  "--config-dir", config, "-o", tmp_path / "b"))
    assert "conv_out.weight" in line and "wrongly shaped" in line
    assert not (tmp_path / "b").exists() and not list(tmp_path.glob(".b.*"))


def open_clip_text(text_encoder) -> dict[str, torch.Tensor]:
    """A CLIPTextModel's tensors in SD 2.x's OpenCLIP layout (`cond_stage_model.model.*`, q/k/v as one
    in_proj)."""
    prefix, out = "cond_stage_model.model.", {}
    names = {"layer_norm1": "ln_1", "layer_norm2": "ln_2", "mlp.fc1": "mlp.c_fc", "mlp.fc2": "mlp.c_proj",
             "self_attn.out_proj": "attn.out_proj"}
    state = text_encoder.state_dict()
    state = {k.removeprefix("text_model."): v for k, v in state.items() if not k.endswith("position_ids")}
    for key, value in state.items():
        if key.startswith("embeddings."):
            out[prefix + ("positional_embedding" if "position" in key else "token_embedding.weight")] = value
        elif key.startswith("final_layer_norm."):
            out[prefix + "ln_final." + key.split(".")[-1]] = value
        else:
            layer, rest = key.split(".")[2], ".".join(key.split(".")[3:])
            block = f"{prefix}transformer.resblocks.{layer}."
            if "_proj." in rest and "out_proj" not in rest:
                kind = rest.split(".")[-1]
                if rest.startswith("self_attn.q_proj"):
                    stem = key.rsplit(".", 2)[0]
                    out[f"{block}attn.in_proj_{kind}"] = torch.cat([state[f"{stem}.{x}_proj.{kind}"] for x in "qkv"])
                continue
            for old, new in names.items():
                rest = rest.replace(old, new)
            out[block + rest] = value
    return out


def test_an_sd2_checkpoint_with_an_open_clip_text_encoder_imports(sd_import, tmp_path):
    from safetensors.torch import save_file
    from transformers import CLIPTextModel

    out, config, models = sd_import
    tensors = {k: v for k, v in sd_single_file(models["unet"], models["vae"], torch.nn.Module()).items()}
    tensors.update(open_clip_text(models["text_encoder"]))
    save_file(tensors, tmp_path / "sd2.safetensors")
    assert run_stage("import-weights", tmp_path / "sd2.safetensors", "--family", "sd", "--config-dir", config,
                     "-o", tmp_path / "sd2") == 0
    ids = torch.tensor([[0, 4, 9, 1]])
    with torch.no_grad():
        ours = CLIPTextModel.from_pretrained(tmp_path / "sd2" / "text_encoder").eval()(ids).last_hidden_state
        torch.testing.assert_close(ours, models["text_encoder"](ids).last_hidden_state)


# Tensors of the published single files (v1-5-pruned-emaonly.safetensors, v2-1_768-ema-pruned.safetensors)
# with their shapes: the inverse map above must name them as those files do.
SD_FILE_TENSORS = {
    "model.diffusion_model.input_blocks.3.0.op.weight": (320, 320, 3, 3),
    "model.diffusion_model.output_blocks.2.1.conv.weight": (1280, 1280, 3, 3),
    "model.diffusion_model.output_blocks.5.2.conv.weight": (1280, 1280, 3, 3),
    "model.diffusion_model.middle_block.2.out_layers.3.weight": (1280, 1280, 3, 3),
    "model.diffusion_model.output_blocks.11.0.skip_connection.weight": (320, 640, 1, 1),
    "first_stage_model.encoder.mid.attn_1.q.weight": (512, 512, 1, 1),
    "first_stage_model.decoder.up.0.block.0.nin_shortcut.weight": (128, 256, 1, 1),
    "first_stage_model.decoder.up.3.upsample.conv.weight": (512, 512, 3, 3),
}


@pytest.mark.parametrize("version", ["sd1.5", "sd2.1"])
def test_full_size_sd_single_file_layouts_convert_to_every_tensor(version):
    """The real SD 1.5 / 2.1 U-Net and VAE on the meta device, written in the single-file layout:
    diffusers' converters, as import-weights runs them, give back every tensor in its shape."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.loaders import single_file_utils as sf
    from test_bring_your_own_weights import SD15_UNET, SD21_UNET, SD_VAE

    from vidtool.import_weights import _load_exactly

    with torch.device("meta"):
        unet = UNet2DConditionModel(**(SD15_UNET if version == "sd1.5" else SD21_UNET))
        vae = AutoencoderKL(**SD_VAE)
    tensors = sd_single_file(unet, vae, torch.nn.Module())
    assert {key: tuple(tensors[key].shape) for key in SD_FILE_TENSORS} == SD_FILE_TENSORS
    _load_exactly(unet, sf.convert_ldm_unet_checkpoint(tensors, unet.config), "U-Net", version)
    _load_exactly(vae, sf.convert_ldm_vae_checkpoint(tensors, vae.config), "VAE", version)


# --- pickles ---------------------------------------------------------------------------------------

class WritesAFile:
    """A pickle whose loading would create `path` (as a malicious checkpoint would run any code)."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.mark.parametrize("family", ["movq", "sd"])
def test_a_pickle_that_needs_code_execution_is_refused_and_nothing_runs(vidtool, tmp_path, family):
    marker = tmp_path / "ran.txt"
    torch.save({"encoder.conv_in.weight": torch.zeros(1), "payload": WritesAFile(marker)}, tmp_path / "evil.pt")
    result = vidtool("import-weights", tmp_path / "evil.pt", "--family", family, "--config-dir", tmp_path,
                     "-o", tmp_path / "out")
    line = one_line_error(result)
    assert result.returncode == 2 and "needs code execution" in line and "it calls io.open" in line
    assert not marker.exists() and not (tmp_path / "out").exists()


@pytest.mark.parametrize("family", ["keyframes", "interp"])
def test_kandinsky_video_unets_are_refused_naming_what_differs(vidtool, tmp_path, family):
    torch.save({"unet": {"in_layer.weight": torch.zeros(1)}, "null_embedding": torch.zeros(1)}, tmp_path / "k.pt")
    line = one_line_error(vidtool("import-weights", tmp_path / "k.pt", "--family", family, "-o", tmp_path / "o"))
    assert "Kandinsky 3 U-Net" in line and "no weight-for-weight mapping" in line
    assert f"train-denoiser --family {family} --base DIR" in line  # what to do instead


# --- KandinskyVideo MoVQ -> movq-temporal ---------------------------------------------------------
# A tiny vidtool movq-temporal with seeded weights, written in the released MoVQ's key layout (movq.pt
# and video_movq.pt): the inverse of vidtool.import_weights' _movq_path / _movq_tensor / _temporal_conv.

def movq_config(**video):
    from vidtool.autoencoders.movq_temporal import MoVQTemporalConfig
    from vidtool.import_weights import MOVQ_GROUPS

    return MoVQTemporalConfig(channels=32, channel_multipliers=(1, 2), layers_per_block=1, latent_channels=4,
                              codebook_size=64, norm_groups=MOVQ_GROUPS, **video)


def is_temporal_conv(key: str) -> bool:
    return ".temporal1.conv." in key or ".temporal2.conv." in key


def original_movq(*, mid_temporal: bool = True, **video):
    """A movq-temporal with random weights everywhere (the zero-initialised temporal convs too), in eval
    mode. The temporal attentions' norms are plain GroupNorms (conv_y = 1, conv_b = 0), as the release
    calls them; `mid_temporal=False` zeroes the mid blocks' temporal convs, which the release then lacks
    (temporal_mid_blocks=False)."""
    from vidtool.autoencoders.movq_temporal import MoVQTemporal

    torch.manual_seed(0)
    model = MoVQTemporal(movq_config(**video)).eval()
    with torch.no_grad():
        for key, value in model.state_dict().items():
            if ".temporal_attentions." in key and (".norm.conv_y." in key or ".norm.conv_b." in key):
                value.fill_(1.0 if key.endswith("conv_y.bias") else 0.0)
            elif is_temporal_conv(key) and key.startswith("decoder.mid.") and not mid_temporal:
                value.zero_()
            elif value.is_floating_point():
                value.add_(0.05 * torch.randn_like(value))  # norms and biases too, so a missed tensor shows
    return model


def released_path(key: str, levels: int) -> str:
    """vidtool's module path -> the release's (the inverse of import_weights._movq_path)."""
    side, *rest = key.split(".")
    if side not in ("encoder", "decoder"):
        return key
    lists = {"blocks": "block", "attentions": "attn", "temporal_attentions": "temporal_attn"}
    if rest[0] == "levels":
        level = int(rest[1]) if side == "encoder" else levels - 1 - int(rest[1])  # decoder levels reversed
        rest = ["down" if side == "encoder" else "up", str(level), lists.get(rest[2], rest[2]), *rest[3:]]
    elif side == "decoder" and rest[0] == "mid":
        mid = {("blocks", "0"): ["block_1"], ("blocks", "1"): ["block_2"],
               ("temporal_attentions", "0"): ["temporal_attn_1"]}
        if rest[1] == "attention":
            rest = ["mid", "attn_1", *rest[2:]]
        else:
            rest = ["mid", *mid[rest[1], rest[2]], *rest[3:]]
    elif rest[0] in ("mid_block_1", "mid_block_2", "mid_attention"):
        rest = ["mid", {"mid_block_1": "block_1", "mid_block_2": "block_2", "mid_attention": "attn_1"}[rest[0]],
                *rest[1:]]
    names = {"shortcut": "nin_shortcut", "to_out": "proj_out"}
    if len(rest) >= 2 and rest[-2] == "norm":  # the GroupNorm inside each (Spatial)Norm
        rest[-2] = "norm_layer"
    rest = [names.get(part, part) for part in rest]
    return ".".join([side, *rest])


def released_movq(model, merges: dict[str, float] | None = None) -> dict[str, torch.Tensor]:
    """`model`'s tensors as KandinskyVideo's MoVQ names them, without the codebook. A temporal conv
    x + conv'(x) is written as the release's blend (1 - a) x + a conv(x) with a = merges[stem] (drawn in
    (0.2, 0.8) when not given): conv = (conv' + a I_centre) / a, temporal_merge = a."""
    levels = len(model.config.channel_multipliers)
    generator = torch.Generator().manual_seed(5)
    out = {}
    for key, value in model.state_dict().items():
        if key == "quantizer.codebook":
            continue
        name = released_path(key, levels)
        if is_temporal_conv(key):
            if key.startswith("decoder.mid.") and not value.any():
                continue  # a release without temporal mid blocks
            index = "1" if ".temporal1." in key else "2"
            name = name.replace(f"temporal{index}.conv", f"temporal_projection{index}")
            stem = name[: name.index("temporal_projection")]
            if f"{stem}temporal_merge{index}" not in out:
                a = torch.empty(1).uniform_(0.2, 0.8, generator=generator)
                out[f"{stem}temporal_merge{index}"] = a
            a = out[f"{stem}temporal_merge{index}"].reshape(())
            if key.endswith("weight"):
                value = value.clone()
                centre = tuple(k // 2 for k in value.shape[2:])
                value[(slice(None), slice(None), *centre)] += a * torch.eye(value.shape[0])
            out[name] = value / a
        elif ".temporal_attentions." in key and (".norm.conv_y." in key or ".norm.conv_b." in key):
            # The release has these tensors but calls its TemporalAttnBlock's norm without zq; they are
            # unused there, so any values: the importer must ignore them.
            out[name] = torch.randn(value.shape, generator=generator)
        elif ".to_qkv." in key:
            for x, part in zip("qkv", value.chunk(3)):
                out[name.replace(".to_qkv.", f".{x}.")] = part.clone()
        else:
            out[name] = value
    return out


def import_movq(tmp_path, released: dict, codebook: torch.Tensor):
    torch.save(released, tmp_path / "movq.pt")
    torch.save({"quantize.embedding.weight": codebook}, tmp_path / "codebook.pt")
    from vidtool import checkpoint
    from vidtool.import_weights import import_weights, steps

    reported = []
    import_weights(tmp_path / "movq.pt", tmp_path / "imported", "movq", codebook=tmp_path / "codebook.pt",
                   done=reported.append)
    assert reported == list(range(1, steps("movq") + 1))  # the stage's progress bar ends full

    return checkpoint.from_pretrained(tmp_path / "imported").eval()


def assert_same_tensors(imported, original):
    ours, theirs = imported.state_dict(), original.state_dict()
    assert set(ours) == set(theirs)
    for key, value in theirs.items():
        if is_temporal_conv(key):  # through the blend fold and back
            torch.testing.assert_close(ours[key], value, atol=1e-6, rtol=0, msg=key)
        else:
            assert torch.equal(ours[key], value), key


def test_kandinsky_video_movq_imports_as_movq_temporal_and_codes_and_decodes_as_released(tmp_path):
    original = original_movq()
    released = released_movq(original)
    assert {"decoder.up.1.attn.0.q.weight", "decoder.up.0.block.0.nin_shortcut.weight", "decoder.mid.attn_1.proj_out.bias",
            "encoder.mid.block_2.norm1.norm_layer.weight", "decoder.norm_out.conv_y.weight"} <= set(released)
    model = import_movq(tmp_path, released, original.quantizer.codebook.detach().clone())
    assert model.family == "movq-temporal" and model.config.stage == "image"
    assert (model.config.channels, model.config.channel_multipliers, model.config.codebook_size) == (32, (1, 2), 64)
    assert_same_tensors(model, original)
    video = torch.rand(1, 3, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        ours, theirs = model.encode(video), original.encode(video)
        assert torch.equal(ours.tokens, theirs.tokens) and ours.tokens.unique().numel() > 1
        torch.testing.assert_close(model.decode(theirs.latents), original.decode(theirs.latents), atol=1e-6, rtol=0)


@pytest.mark.parametrize("kind,attention,mid", [("conv3x3x3", True, True), ("conv1x1x3", False, False)])
def test_kandinsky_video_video_movq_temporal_layers_compute_as_released(tmp_path, kind, attention, mid):
    original = original_movq(stage="video", temporal=kind, temporal_attention=attention, mid_temporal=mid)
    released = released_movq(original)
    kernel = (3, 3, 3) if kind == "conv3x3x3" else (3, 1, 1)
    assert released["decoder.up.1.block.0.temporal_projection1.weight"].shape[2:] == kernel
    assert ("decoder.mid.block_1.temporal_merge2" in released) == mid
    assert ("decoder.mid.temporal_attn_1.norm.conv_y.weight" in released) == attention
    merges = [v.item() for k, v in released.items() if "temporal_merge" in k]
    assert merges and all(0.2 < a < 0.8 for a in merges)
    model = import_movq(tmp_path, released, original.quantizer.codebook.detach().clone())
    assert (model.config.stage, model.config.temporal, model.config.temporal_attention) == ("video", kind, attention)
    assert_same_tensors(model, original)
    torch.manual_seed(3)
    video = torch.rand(1, 3, 4, 32, 32) * 2 - 1
    with torch.no_grad():
        ours, theirs = model.encode(video), original.encode(video)
        assert torch.equal(ours.tokens, theirs.tokens)
        expected = original.decode(theirs.latents)
        torch.testing.assert_close(model.decode(theirs.latents), expected, atol=1e-5, rtol=1e-5)
        # The temporal layers matter: the same frames decoded one at a time differ.
        alone = torch.cat([model.decode(theirs.latents[:, :, i:i + 1]) for i in range(4)], dim=2)
        assert not torch.allclose(alone, expected, atol=1e-3)


def test_a_movq_without_codebook_or_with_layers_vidtool_lacks_is_one_line(vidtool, tmp_path):
    released = released_movq(original_movq())
    torch.save(released, tmp_path / "movq.pt")
    line = one_line_error(vidtool("import-weights", tmp_path / "movq.pt", "--family", "movq", "-o", tmp_path / "a"))
    assert "no codebook" in line and "--codebook" in line
    # A release with temporal ResNet blocks after the mid block's attention (temporal_blocks=True).
    torch.save({**released, "decoder.mid.temporal_block_1.conv1.weight": torch.zeros(64, 64, 3, 3, 3)},
               tmp_path / "blocks.pt")
    torch.save({"quantize.embedding.weight": torch.randn(64, 4)}, tmp_path / "codebook.pt")
    line = one_line_error(vidtool("import-weights", tmp_path / "blocks.pt", "--family", "movq", "--codebook",
                                  tmp_path / "codebook.pt", "-o", tmp_path / "b"))
    assert "temporal ResNet blocks" in line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()
