"""Released checkpoints -> folders vidtool loads (`vidtool import-weights`).

- `sd`: a single-file Stable Diffusion checkpoint in the original CompVis/ldm key layout
  (`model.diffusion_model.*`, `first_stage_model.*`, `cond_stage_model.*`) -> a diffusers pipeline
  folder (model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/), converted by diffusers'
  own functions (diffusers.loaders.single_file_utils). The shapes come from a local pipeline folder
  (`--config-dir`; `--config` is every stage's options file): nothing is downloaded, and the
  checkpoint's weights must fill those shapes exactly.
- `movq`: KandinskyVideo's MoVQ (`movq.pt`, and `video_movq.pt` with its temporal decoder layers) ->
  a vidtool `movq-temporal` folder, tensor for tensor (`movq_state_dict`).
- `keyframes`, `interp`: KandinskyVideo's `t2v.pt` / `interpolation.pt` are refused (KANDINSKY_UNET).

Pickled checkpoints (.pt, .pth, .ckpt, .bin) are read only with `torch.load(weights_only=True)`: a
pickle that would need to run code (a custom class, a __reduce__) is refused before anything of it
runs.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable

import torch

from vidtool.errors import UserError

FAMILIES = ("sd", "movq", "keyframes", "interp")
PICKLE_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin")

KANDINSKY_UNET = (
    "KandinskyVideo's {name} holds its own Kandinsky 3 U-Net (ConditionalGroupNorm blocks, AttentionPolling, "
    "in_layer/down_samples/up_samples) with temporal ResNet and attention blocks built into its levels{extra}; "
    "vidtool's {family} family {ours}, so there is no weight-for-weight mapping: it cannot be imported; train one "
    "on a diffusers Kandinsky 3 pipeline folder instead (train-denoiser --family {family} --base DIR)")
OURS = {
    "keyframes": "is a frozen diffusers Kandinsky3UNet (or UNet2DConditionModel) with its own temporal blocks "
                 "hooked after the U-Net's ResNet and attention blocks",
    "interp": "is a copy of a diffusers Kandinsky3UNet (or UNet2DConditionModel) with its own 3x1x1 temporal convs "
              "around the ResNet blocks' 3x3 convs and its own (s, tp) embeddings",
}


def read_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a .safetensors file or of a pickle that `torch.load(weights_only=True)` accepts.
    A wrapper dict (`{"state_dict": ...}`) is unwrapped; anything that is not a mapping of tensors
    is refused."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} is not a file")
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise UserError(f"{path} is not a readable safetensors file ({str(e).splitlines()[0]})") from e
    if path.suffix.lower() not in PICKLE_SUFFIXES:
        raise UserError(f"{path}: expected a .safetensors or a torch pickle ({', '.join(PICKLE_SUFFIXES)})")
    try:
        doc = torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL (\S+)", str(e))
        reason = f"it calls {found[1]}" if found else "not plain tensors"
        raise UserError(f"{path} is a pickle that needs code execution to load ({reason}); "
                        "refused: only plain tensor checkpoints are read (torch.load weights_only=True); "
                        "use a .safetensors release of it") from None
    except (RuntimeError, EOFError, ValueError, OSError) as e:
        raise UserError(f"{path} is not a readable torch checkpoint ({str(e).splitlines()[0] if str(e) else e!r})") from None
    return _tensors(doc, path)


def _tensors(doc, path: Path) -> dict[str, torch.Tensor]:
    if isinstance(doc, dict) and isinstance(doc.get("state_dict"), dict):
        doc = doc["state_dict"]
    if not isinstance(doc, dict) or not doc:
        raise UserError(f"{path} holds no mapping of tensors (got {type(doc).__name__})")
    tensors = {k: v for k, v in doc.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise UserError(f"{path} holds no tensors at its top level (keys: {', '.join(map(str, list(doc)[:5]))})")
    return tensors


def steps(family: str) -> int:
    """How many times `import_weights` calls its `done` (for a progress bar): reading, each part, writing."""
    return 5 if family == "sd" else 3


def import_weights(source: str | Path, out: str | Path, family: str, *, config: str | Path | None = None,
                   codebook: str | Path | None = None, say: Callable[[str], None] = lambda message: None,
                   done: Callable[[int], None] = lambda count: None) -> Path:
    """Convert `source` into the folder `out` (written beside it under a temporary name, then renamed,
    so a failed import leaves nothing). `done(n)` reports the n-th of `steps(family)` steps."""
    source, out = Path(source), Path(out)
    if family not in FAMILIES:
        raise UserError(f"--family {family!r}: expected one of {', '.join(FAMILIES)}")
    if family in ("keyframes", "interp"):
        name = "t2v.pt" if family == "keyframes" else "interpolation.pt"
        extra = "" if family == "keyframes" else " and an input layer taking the two end frames' latents"
        raise UserError(KANDINSKY_UNET.format(name=name, family=family, extra=extra, ours=OURS[family]))
    if family == "sd" and config is None:
        raise UserError("--family sd needs --config-dir DIR: a local diffusers Stable Diffusion pipeline folder "
                        "(model_index.json, unet/, vae/, text_encoder/, tokenizer/, scheduler/) with this "
                        "checkpoint's configs; nothing is downloaded")
    if out.exists():
        raise UserError(f"-o {out} exists; choose a new folder name (an import never overwrites)")
    count = iter(range(1, steps(family) + 1))

    def step() -> None:
        done(next(count))

    checkpoint = read_checkpoint(source)
    step()
    with _temp_folder(out) as tmp:
        if family == "sd":
            write_sd_pipeline(checkpoint, Path(config), tmp, say, step)
        else:
            write_movq(checkpoint, tmp, source.name, read_checkpoint(codebook) if codebook else None, step)
        os.replace(tmp, out)
        step()
    return out


class _temp_folder:
    """A new folder beside `out`, named as vidtool.atomic sweeps leftovers; removed unless renamed."""

    def __init__(self, out: Path):
        from vidtool.atomic import temp_prefix

        try:
            out.parent.mkdir(parents=True, exist_ok=True)
            self.path = Path(tempfile.mkdtemp(prefix=temp_prefix(out.name), dir=out.parent))
        except OSError as e:
            raise UserError(f"cannot write {out}: {e.strerror or e}; choose another output path") from e

    def __enter__(self) -> Path:
        return self.path

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


# --- Stable Diffusion single file -> diffusers pipeline folder -----------------------------------

SD_PREFIXES = {"unet": "model.diffusion_model.", "vae": "first_stage_model.", "text_encoder": "cond_stage_model."}


def write_sd_pipeline(checkpoint: dict, config: Path, out: Path, say: Callable[[str], None],
                      step: Callable[[], None] = lambda: None) -> None:
    from vidtool.standard_folders import is_pipeline_root, quiet_diffusers

    if not is_pipeline_root(config):
        raise UserError(f"--config-dir {config} is not a diffusers pipeline folder (no model_index.json); pass the "
                        "folder a StableDiffusionPipeline's save_pretrained writes")
    if not any(k.startswith(SD_PREFIXES["unet"]) for k in checkpoint):
        raise UserError("the checkpoint has no model.diffusion_model.* tensors: not a single-file Stable Diffusion "
                        "checkpoint in the original (CompVis/ldm) layout")
    quiet_diffusers()
    written = []
    for name in ("unet", "vae", "text_encoder"):
        part = config / name
        if not (part / "config.json").is_file():
            raise UserError(f"--config-dir {config} has no {name}/config.json")
        if any(k.startswith(SD_PREFIXES[name]) for k in checkpoint):
            model = _sd_component(name, part, checkpoint)
            model.save_pretrained(out / name)
        elif any(part.glob("*.safetensors")) or any(part.glob("*.bin")):
            say(f"the checkpoint has no {SD_PREFIXES[name]}* tensors: {name}/ is copied from {part}")
            shutil.copytree(part, out / name)
        else:
            raise UserError(f"the checkpoint has no {SD_PREFIXES[name]}* tensors and {part} has no weights to use instead")
        written.append(name)
        step()
    for name in ("tokenizer", "scheduler"):
        if (config / name).is_dir():
            shutil.copytree(config / name, out / name)
            written.append(name)
    index = json.loads((config / "model_index.json").read_text())
    index = {k: (v if k.startswith("_") or k in written else [None, None]) for k, v in index.items()}
    (out / "model_index.json").write_text(json.dumps(index, indent=2) + "\n")


def _sd_component(name: str, folder: Path, checkpoint: dict) -> torch.nn.Module:
    """The component of the pipeline folder's config `folder`, holding the checkpoint's weights."""
    from diffusers.loaders import single_file_utils as sf

    if name == "unet":
        from diffusers import UNet2DConditionModel

        model = UNet2DConditionModel.from_config(UNet2DConditionModel.load_config(folder))
        state = sf.convert_ldm_unet_checkpoint(checkpoint, model.config)
    elif name == "vae":
        from diffusers import AutoencoderKL

        model = AutoencoderKL.from_config(AutoencoderKL.load_config(folder))
        state = sf.convert_ldm_vae_checkpoint(checkpoint, model.config)
    else:
        import transformers

        doc = json.loads((folder / "config.json").read_text())
        cls_name = (doc.get("architectures") or ["CLIPTextModel"])[0]
        if cls_name not in ("CLIPTextModel", "CLIPTextModelWithProjection"):
            raise UserError(f"{folder} holds a {cls_name}; a Stable Diffusion checkpoint's text encoder is a CLIP text model")
        cls = getattr(transformers, cls_name)
        model = cls(cls.config_class.from_pretrained(folder))
        if any(k.startswith("cond_stage_model.model.") for k in checkpoint):  # SD 2.x: OpenCLIP layout
            state = sf.convert_open_clip_checkpoint(model, checkpoint)
        else:
            state = sf.convert_ldm_clip_checkpoint(checkpoint)
        # The converters name CLIP's tensors `text_model.*`; transformers 5's CLIPTextModel has them
        # without that prefix.
        own = model.state_dict()
        state = {k.removeprefix("text_model.") if k not in own and k.removeprefix("text_model.") in own else k: v
                 for k, v in state.items()}
    _load_exactly(model, state, f"checkpoint's {name} ({SD_PREFIXES[name]}*)",
                  f"the config in {folder}; pass the --config-dir of this model's version (SD 1.x, 2.x, ...)")
    return model


def _load_exactly(model: torch.nn.Module, state: dict, what: str, fix: str) -> None:
    """Load `state` into `model` only if it fills every tensor with the right shape (one line naming
    the first misfit otherwise). A position_ids buffer is the one thing either side may lack."""
    own = model.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.endswith("position_ids")}
    missing = [k for k in own if k not in state and not k.endswith("position_ids")]
    unexpected = [k for k in state if k not in own]
    wrong = [k for k in state if k in own and tuple(state[k].shape) != tuple(own[k].shape)]
    for keys, said in ((missing, "lacks"), (unexpected, "has extra"), (wrong, "has wrongly shaped")):
        if keys:
            shape = f" ({tuple(state[keys[0]].shape)} vs {tuple(own[keys[0]].shape)})" if said == "has wrongly shaped" else ""
            raise UserError(f"the {what} {said} tensors for {fix}: {keys[0]}{shape}"
                            f"{f' and {len(keys) - 1} more' if len(keys) > 1 else ''}")
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()}, strict=False)


# --- KandinskyVideo MoVQ -> movq-temporal --------------------------------------------------------

MOVQ_GROUPS = 32  # KandinskyVideo's Normalize: GroupNorm(num_groups=32, eps=1e-6)


def write_movq(checkpoint: dict, out: Path, name: str, codebook_file: dict | None,
               step: Callable[[], None] = lambda: None) -> None:
    from vidtool.autoencoders.movq_temporal import MoVQTemporal
    from vidtool.checkpoint import save_pretrained

    config, state = movq_state_dict(checkpoint, codebook_file)
    model = MoVQTemporal(config)
    for key, value in model.state_dict().items():
        if key not in state and (".temporal1.conv." in key or ".temporal2.conv." in key):
            # Blocks the release left without temporal convs (temporal_mid_blocks=False): a zero conv
            # is vidtool's identity.
            state[key] = torch.zeros_like(value)
    _load_exactly(model, state, f"MoVQ of {name}", "vidtool's movq-temporal of the same shape")
    step()
    save_pretrained(model, out, extra={"imported_from": name, "release": "ai-forever/KandinskyVideo MoVQ"})


def movq_state_dict(released: dict, codebook_file: dict | None = None):
    """(MoVQTemporalConfig, state dict) holding the released MoVQ's weights, or a one-line refusal that
    names the part of the release vidtool's movq-temporal cannot hold."""
    from vidtool.autoencoders.movq_temporal import MoVQTemporalConfig

    keys = set(released)
    if "encoder.conv_in.weight" not in keys or "decoder.conv_out.weight" not in keys:
        raise UserError("not a MoVQ checkpoint: it has no encoder.conv_in / decoder.conv_out tensors "
                        "(KandinskyVideo's movq.pt or video_movq.pt)")
    for marker, what in ((".norm1.conv.weight", "add_conv SpatialNorms (a 3x3 conv on zq)"),
                         ("temporal_flicker_proj", "flicker-augmentation projections"),
                         ("temporal_block", "temporal ResNet blocks (the release runs them after the mid "
                                            "block's attention, vidtool's resblock_attn before it)")):
        if any(marker in k for k in keys):
            raise UserError(f"this MoVQ has {what}; vidtool's movq-temporal has no such layers")
    if released["decoder.mid.block_1.conv1.weight"].ndim == 5:
        raise UserError("this MoVQ's decoder has 3D ResNet convs (build_3D_decoder), whose released forward "
                        "applies Conv3d to single frames; there is no reference to reproduce")
    codebook = (codebook_file or released).get("quantize.embedding.weight")
    if codebook is None:
        raise UserError("this MoVQ has no codebook (quantize.embedding.weight): KandinskyVideo decodes continuous "
                        "latents, vidtool's movq-temporal encodes to codebook tokens; pass --codebook FILE (a "
                        "Kandinsky MoVQ checkpoint that holds quantize.embedding.weight of this MoVQ)")

    levels = len({k.split(".")[2] for k in keys if k.startswith("encoder.down.")})
    channels = released["encoder.conv_in.weight"].shape[0]
    widths = [released[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] for i in range(levels)]
    if any(w % channels for w in widths):
        raise UserError(f"encoder widths {widths} are not multiples of conv_in's {channels} channels")
    layers = len({k.split(".")[4] for k in keys if k.startswith("encoder.down.0.block.")})
    latent = released["quant_conv.weight"].shape[0]
    if released["encoder.conv_out.weight"].shape[0] != latent:
        raise UserError("the encoder's conv_out doubles its channels (double_z, a KL posterior); vidtool's "
                        "movq-temporal encodes to the code width only")
    for side, name in (("encoder", "down"), ("decoder", "up")):
        with_attn = {int(k.split(".")[2]) for k in keys if k.startswith(f"{side}.{name}.") and ".attn." in k}
        if with_attn - {levels - 1}:
            raise UserError(f"this MoVQ's {side} has spatial attention at resolution levels {sorted(with_attn)}; "
                            f"vidtool's has it at the lowest level ({levels - 1}) only")
    temporal = "none"
    convs = [v for k, v in released.items() if k.endswith("temporal_projection1.weight")]
    if convs:
        kernel = tuple(convs[0].shape[2:])
        temporal = {(3, 1, 1): "conv1x1x3", (3, 3, 3): "conv3x3x3"}.get(kernel)
        if temporal is None:
            raise UserError(f"temporal convs of kernel {kernel}; vidtool's movq-temporal has (3, 1, 1) or (3, 3, 3)")
    attention = any(".temporal_attn" in k for k in keys)
    if attention and temporal == "none":
        raise UserError("temporal attention without temporal convs; vidtool's movq-temporal adds it to a temporal conv")
    config = MoVQTemporalConfig(
        channels=channels, channel_multipliers=tuple(w // channels for w in widths), layers_per_block=layers,
        norm_groups=MOVQ_GROUPS, latent_channels=latent, codebook_size=codebook.shape[0],
        stage="video" if temporal != "none" else "image", temporal=temporal, temporal_attention=attention)
    state = {"quantizer.codebook": codebook}
    for key, value in released.items():
        if key.startswith("quantize."):
            continue
        for new_key, new_value in _movq_tensor(key, value, released, levels):
            state[new_key] = new_value
    return config, state


def _movq_tensor(key: str, value: torch.Tensor, released: dict, levels: int):
    """(vidtool key, tensor) pairs for one released tensor; q/k/v are emitted once, with `q`, as to_qkv."""
    parts = key.split(".")
    if parts[0] in ("encoder", "decoder"):
        parts = _movq_path(parts, levels)
    name = ".".join(parts)
    name = name.replace(".norm_layer.", ".norm.").replace(".nin_shortcut.", ".shortcut.")
    leaf = parts[-2] if len(parts) > 1 else ""
    if leaf in ("q", "k", "v"):
        if leaf == "q":
            stem = key[: -len("q.weight")] if key.endswith("weight") else key[: -len("q.bias")]
            kind = parts[-1]
            yield name.replace(f".q.{kind}", f".to_qkv.{kind}"), torch.cat([released[f"{stem}{x}.{kind}"] for x in "qkv"])
        return
    if leaf == "proj_out":
        yield name.replace(".proj_out.", ".to_out."), value
        return
    if "temporal_merge" in key:
        return
    if "temporal_projection" in key:
        yield from _temporal_conv(key, name, value, released)
        return
    if ".temporal_attentions." in name and ".norm.conv_" in name:
        # The release calls its TemporalAttnBlock's norm without zq (a plain GroupNorm); vidtool's
        # conditions it on zq, so conv_y = 1 and conv_b = 0 give the same function.
        if name.endswith("weight"):
            yield name, torch.zeros_like(value)
        else:
            yield name, torch.ones_like(value) if ".conv_y." in name else torch.zeros_like(value)
        return
    yield name, value


def _temporal_conv(key: str, name: str, weight: torch.Tensor, released: dict):
    """The release blends h <- (1 - a) h + a conv(h) with a learnt scalar a; vidtool's TemporalConv is
    h + conv'(h). conv' = a conv - a * identity (on the kernel's centre tap) is the same function."""
    index = "1" if "temporal_projection1" in key else "2"
    stem = key[: key.index("temporal_projection")]
    merge = released[f"{stem}temporal_merge{index}"].reshape(())
    target = name.replace(f"temporal_projection{index}", f"temporal{index}.conv")
    if key.endswith("bias"):
        yield target, merge * weight
        return
    folded = merge * weight
    centre = tuple(k // 2 for k in weight.shape[2:])
    folded[(slice(None), slice(None), *centre)] -= merge * torch.eye(weight.shape[0], dtype=weight.dtype)
    yield target, folded


def _movq_path(parts: list[str], levels: int) -> list[str]:
    """Released module path -> vidtool's: encoder.down.i.block.j -> encoder.levels.i.blocks.j,
    decoder.up.i -> decoder.levels.(levels-1-i) (vidtool runs its decoder levels from the lowest
    resolution up), mid.block_1/attn_1/block_2 -> vidtool's names."""
    side, rest = parts[0], parts[1:]
    lists = {"block": "blocks", "attn": "attentions", "temporal_attn": "temporal_attentions"}
    if rest[0] in ("down", "up"):
        level = int(rest[1]) if rest[0] == "down" else levels - 1 - int(rest[1])
        rest = ["levels", str(level), lists.get(rest[2], rest[2]), *rest[3:]]
    elif rest[0] == "mid":
        mid = {"block_1": ["blocks", "0"], "block_2": ["blocks", "1"], "attn_1": ["attention"],
               "temporal_attn_1": ["temporal_attentions", "0"]}[rest[1]]
        rest = ["mid", *mid, *rest[2:]] if side == "decoder" else {
            "block_1": ["mid_block_1"], "block_2": ["mid_block_2"], "attn_1": ["mid_attention"]}[rest[1]] + rest[2:]
    return [side, *rest]
