"""LoRA for the frozen text-to-image U-Net of HARIVO and FusionFrames' keyframe model (HARIVO §1,
§4.3: off-the-shelf T2I add-ons work with no retraining, since the spatial layers are the base's).

A LoRA file is read as safetensors only and in either layout Stable Diffusion LoRAs are shared in:
- diffusers/peft (`pipe.save_lora_weights`, `unet.save_attn_procs`): `unet.<module>.lora_A.weight`
  / `lora_B.weight`, the older `<module>.lora.down.weight` / `lora.up.weight` and
  `<attn>.processor.to_q_lora.down.weight`; alpha from the file's `lora_adapter_metadata`
  (`unet.lora_alpha`, `unet.alpha_pattern`), else alpha = rank;
- kohya (`lora_unet_down_blocks_0_..._to_q.lora_down.weight`, `.lora_up.weight`, `.alpha`; for SDXL
  its sgm block names `lora_unet_input_blocks_4_1_...`, `middle_block_`, `output_blocks_`, `label_emb_`).
diffusers' own converters bring both to peft names (`StableDiffusionLoraLoaderMixin.lora_state_dict`
for kohya, which maps SDXL's sgm blocks by the base's `layers_per_block`; `convert_unet_state_dict_to_peft`
for the diffusers spellings); vidtool's bases are diffusers `UNet2DConditionModel`s (SD 1.x, 2.x,
SDXL) or `Kandinsky3UNet`s (vidtool.generators.t2i), so those names are the base's module names as
they are. The low-rank update is then merged into the frozen weights,

    W <- W + scale * (alpha / r) * B @ A      (rsLoRA: alpha / sqrt(r))

exact for inference and free at sampling time; the temporal layers are not touched. Every layer is
checked before any is changed, so a LoRA made for another base is refused with nothing merged.
Text-encoder parts of a file (SD's `text_encoder.`/`lora_te_`, SDXL's second `text_encoder_2.`/
`lora_te2_` too) are left out and counted in the console note: the prompts are embedded elsewhere
(embed-text, the latent set), by the encoders as they are.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from vidtool.errors import UserError

TEXT_ENCODER_PREFIXES = ("text_encoder.", "text_encoder_2.")


@dataclass
class LoraLayer:
    down: torch.Tensor  # A: [r, in] or [r, in, kh, kw]
    up: torch.Tensor  # B: [out, r] or [out, r, 1, 1]
    scale: float  # alpha / r

    def delta(self) -> torch.Tensor:
        """B @ A * alpha / r, in float32, shaped as the weight (a conv's A carries its kernel)."""
        up, down = self.up.float().flatten(1), self.down.float().flatten(1)
        return (up @ down) * self.scale


@dataclass
class Lora:
    path: Path
    layers: dict[str, LoraLayer]  # U-Net module name -> its update
    skipped: int = 0  # text-encoder layers left out


def read(path: str | Path, unet: nn.Module) -> Lora:
    """The LoRA file at `path` as updates of `unet`'s modules, every one checked against it."""
    path = Path(path)
    tensors, metadata = _read_safetensors(path)
    layers, skipped = _layers(path, tensors, metadata, unet.config)
    _check(path, layers, unet)
    return Lora(path, layers, skipped)


def merge(unet: nn.Module, lora: Lora, scale: float) -> None:
    """W += scale * delta for every layer of `lora` (in float32, stored back in the weight's dtype)."""
    with torch.no_grad():
        for name, layer in lora.layers.items():
            weight = unet.get_submodule(name).weight
            merged = weight.float() + scale * layer.delta().to(weight.device).reshape(weight.shape)
            weight.copy_(merged.to(weight.dtype))


def _read_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise UserError(f"--lora {path}: no such file")
    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, f.metadata() or {}
    except (SafetensorError, OSError, ValueError) as e:
        raise UserError(f"--lora {path} is not a safetensors file ({str(e).splitlines()[0]}); LoRAs are read from "
                        ".safetensors only (never from pickles)") from e


def _adapter_metadata(metadata: dict) -> dict:
    """diffusers' `lora_adapter_metadata` (peft LoraConfig fields, keyed `unet.<field>`) for the U-Net."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        packed = json.loads(raw)
    except json.JSONDecodeError:
        return {}
    return {k.removeprefix("unet."): v for k, v in packed.items() if k.startswith("unet.")}


def _module_of(key: str) -> str:
    """The U-Net module a LoRA key updates, from any diffusers spelling (`...to_q.lora_A.weight`,
    `...to_q.lora.down.weight`, `...processor.to_q_lora.down.weight`)."""
    from diffusers.utils.state_dict_utils import convert_unet_state_dict_to_peft

    peft_key = next(iter(convert_unet_state_dict_to_peft({key: None})))
    return re.split(r"\.lora_[AB]\.", peft_key)[0]


def _layers(path: Path, tensors: dict, metadata: dict, unet_config) -> tuple[dict[str, LoraLayer], int]:
    from diffusers.loaders import StableDiffusionLoraLoaderMixin

    if not tensors:
        raise UserError(f"--lora {path} holds no tensors")
    alphas: dict[str, float] = {}
    if all(k.startswith(("lora_unet_", "lora_te_", "lora_te1_", "lora_te2_")) for k in tensors):  # kohya
        try:
            tensors, network_alphas = StableDiffusionLoraLoaderMixin.lora_state_dict(dict(tensors),
                                                                                      unet_config=unet_config)
        except (ValueError, KeyError, IndexError) as e:
            raise UserError(f"--lora {path}: kohya keys diffusers cannot map to a U-Net "
                            f"({str(e).strip().splitlines()[-1][:200]})") from e
        for key, value in (network_alphas or {}).items():
            if key.startswith("unet."):
                name = key.removeprefix("unet.").removesuffix(".alpha")
                alphas[_module_of(name if name.endswith(".down.weight") else name + ".lora.down.weight")] = value
    elif not any(k.startswith(("unet.", *TEXT_ENCODER_PREFIXES)) for k in tensors):
        tensors = {f"unet.{k}": v for k, v in tensors.items()}  # unet.save_attn_procs: no prefix
    skipped = {k for k in tensors if k.startswith(TEXT_ENCODER_PREFIXES)}
    unet = {k.removeprefix("unet."): v for k, v in tensors.items() if k.startswith("unet.")}
    other = sorted(set(tensors) - skipped - {f"unet.{k}" for k in unet})
    if other:
        raise UserError(f"--lora {path} is not a LoRA of a U-Net: {len(other)} keys such as {other[0]!r} "
                        "match no part of a U-Net")
    downs, ups = {}, {}
    for key, value in unet.items():
        if key.endswith(".alpha"):  # diffusers files written with network alphas
            alphas[_module_of(key.removesuffix(".alpha") + ".lora.down.weight")] = float(value)
            continue
        part = "down" if re.search(r"(lora_A|lora\.down|_lora\.down)\.weight$", key) else \
            "up" if re.search(r"(lora_B|lora\.up|_lora\.up)\.weight$", key) else None
        if part is None:
            raise UserError(f"--lora {path}: {key!r} is neither a LoRA down (A) nor an up (B) weight (DoRA and other "
                            "LoRA variants are not supported)")
        (downs if part == "down" else ups)[_module_of(key)] = value
    if not unet:
        raise UserError(f"--lora {path} holds no U-Net layers (only {len(skipped)} text-encoder tensors)")
    if set(downs) != set(ups):
        missing = sorted(set(downs) ^ set(ups))
        raise UserError(f"--lora {path}: {missing[0]} has a down (A) or an up (B) weight but not both")
    config = _adapter_metadata(metadata)
    if config.get("use_dora"):
        raise UserError(f"--lora {path} is a DoRA adapter; only plain LoRA is supported")
    layers = {}
    for name in downs:
        rank = downs[name].shape[0]
        alpha = alphas.get(name, _pattern_value(config.get("alpha_pattern") or {}, name,
                                                config.get("lora_alpha", rank)))
        scale = alpha / (rank ** 0.5 if config.get("use_rslora") else rank)
        layers[name] = LoraLayer(downs[name], ups[name], float(scale))
    return layers, len(skipped) // 2


def _pattern_value(patterns: dict, name: str, default):
    """peft's `alpha_pattern` rule: a key applies to the modules whose name ends with it."""
    for pattern, value in patterns.items():
        if re.match(rf"(.*\.)?({pattern})$", name):
            return value
    return default


def _check(path: Path, layers: dict[str, LoraLayer], unet: nn.Module) -> None:
    modules = dict(unet.named_modules())
    problems = []
    for name, layer in layers.items():
        module = modules.get(name)
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            problems.append(f"{name} is not a linear or conv layer of this U-Net" if module is not None
                            else f"this U-Net has no {name}")
            continue
        weight = module.weight
        fits = (layer.up.shape[1] == layer.down.shape[0] and layer.up.shape[0] == weight.shape[0]
                and layer.up[0, 0].numel() == 1 and layer.down.dim() == weight.dim()
                and layer.down.shape[1:] == weight.shape[1:])
        if not fits:
            problems.append(f"{name}: B {tuple(layer.up.shape)} @ A {tuple(layer.down.shape)} does not make its "
                            f"weight {tuple(weight.shape)}")
    if problems:
        raise UserError(f"--lora {path} is for another base: {len(problems)} of its {len(layers)} layers do not fit "
                        f"this model's frozen U-Net ({problems[0]}); nothing was applied")
