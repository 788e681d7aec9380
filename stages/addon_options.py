"""`generate`'s options for the frozen text-to-image U-Net of --family fusionframes and harivo
(--lora, --lora-scale, --base, --controlnet, --control-image, --control-scale; applied by
vidtool.frozen_base): one declaration each, and their
check, so that generate.py stays a thin stage."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

FROZEN_BASE_FAMILIES = ("fusionframes", "harivo")  # generate --family values

Lora = Annotated[list[Path], typer.Option(
    "--lora", metavar="FILE", help="fusionframes, harivo: a LoRA of the frozen text-to-image U-Net, a .safetensors file in the "
                   "diffusers/peft or the kohya layout, merged into the base before sampling; repeatable.")]
LoraScale = Annotated[list[float], typer.Option(
    "--lora-scale", metavar="S", min=-100, max=100, help="Strength of the --lora files: one for all or one per file (default 1; "
                                            "0 samples exactly as without the LoRA).")]
Base = Annotated[Path, typer.Option(
    "--base", metavar="DIR", help="fusionframes, harivo: a DreamBooth fine-tune of the model's frozen text-to-image U-Net (a "
                   "diffusers pipeline or unet/ folder, or a t2i folder) sampled in its place, with the trained "
                   "temporal layers.")]

ControlNet = Annotated[Path, typer.Option(
    "--controlnet", metavar="DIR", help="fusionframes, harivo: a diffusers ControlNetModel folder made for the frozen "
                   "base U-Net, run on the --control-image frames at every step.")]
ControlImage = Annotated[list[str], typer.Option(
    "--control-image", metavar="FRAME=IMG", help="With --controlnet: the control image (edges, depth, pose... as "
                   "the ControlNet expects) of frame FRAME (0 = first, -1 = last); repeatable.")]
ControlScale = Annotated[float, typer.Option(
    "--control-scale", metavar="S", min=0, max=10, help="Strength of the --controlnet residuals (default 1; 0 "
                   "samples exactly as without it).")]

IpAdapter = Annotated[Path, typer.Option(
    "--ip-adapter", metavar="DIR", help="fusionframes, harivo: an IP-Adapter of the frozen base (a folder with one "
                   ".safetensors and image_encoder/, or the file) prompted by --image.")]
IpAdapterScale = Annotated[float, typer.Option(
    "--ip-adapter-scale", metavar="S", min=0, max=10, help="Weight of the --ip-adapter image tokens (default 1; 0 "
                   "samples as without it).")]


def addon_options(lora: list[Path] | None, lora_scale: list[float] | None, base: Path | None, family: str,
                  controlnet: Path | None = None, control_image: list[str] | None = None,
                  control_scale: float | None = None, ip_adapter: Path | None = None, image: Path | None = None,
                  ip_adapter_scale: float | None = None) -> dict:
    """The options as entries of the pipeline options (JSON values, recorded in the output's params):
    `lora` (paths), `lora_scale` (one per file), `base`, `controlnet`, `control_images` ([frame,
    path] pairs), `control_scale`, `ip_adapter`, `ip_image` (--image) and `ip_adapter_scale`; refused
    for a family with no frozen U-Net."""
    from vidtool.errors import UserError

    lora, scales, images = list(lora or []), list(lora_scale or []), list(control_image or [])
    if not lora and not scales and base is None and controlnet is None and not images and control_scale is None \
            and ip_adapter is None and ip_adapter_scale is None:
        return {}
    if family not in FROZEN_BASE_FAMILIES:
        raise UserError(f"--lora, --base and --controlnet change the frozen text-to-image U-Net of --family "
                        f"{' or '.join(FROZEN_BASE_FAMILIES)}; a {family} model has none")
    if scales and not lora:
        raise UserError("--lora-scale scales a --lora FILE; pass --lora too")
    if len(scales) > 1 and len(scales) != len(lora):
        raise UserError(f"give one --lora-scale for all {len(lora)} --lora files or one for each, not {len(scales)}")
    options = {}
    if lora:
        options["lora"] = [str(p) for p in lora]
        options["lora_scale"] = scales * len(lora) if len(scales) == 1 else scales or [1.0] * len(lora)
    if base is not None:
        options["base"] = str(base)
    if (images or control_scale is not None) and controlnet is None:
        raise UserError("--control-image and --control-scale go with a --controlnet DIR; pass it too")
    if controlnet is not None:
        from vidtool.controlnet import parse_control_images

        if not images:
            raise UserError("--controlnet needs at least one --control-image FRAME=IMG (e.g. 0=edges.png)")
        options["controlnet"] = str(controlnet)
        options["control_images"] = [[f, p] for f, p in parse_control_images(images)]
        options["control_scale"] = 1.0 if control_scale is None else control_scale
    if ip_adapter_scale is not None and ip_adapter is None:
        raise UserError("--ip-adapter-scale weighs an --ip-adapter DIR; pass it too")
    if ip_adapter is not None:
        if image is None:
            raise UserError("--ip-adapter needs the image prompt: pass --image IMG")
        options["ip_adapter"], options["ip_image"] = str(ip_adapter), str(image)
        options["ip_adapter_scale"] = 1.0 if ip_adapter_scale is None else ip_adapter_scale
    return options


def addon_inputs(lora: list[Path] | None, control_image: list[str] | None) -> list[Path]:
    """The add-ons' input files, which the output must not overwrite."""
    return [*(lora or []), *(Path(v.partition("=")[2]) for v in control_image or [] if "=" in v)]
