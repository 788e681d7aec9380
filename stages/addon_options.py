"""`generate`'s options for the frozen text-to-image U-Net of --family fusionframes and harivo
(--lora, --lora-scale, --base; applied by vidtool.frozen_base): one declaration each, and their
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


def addon_options(lora: list[Path] | None, lora_scale: list[float] | None, base: Path | None, family: str) -> dict:
    """The options as entries of the pipeline options (JSON values, recorded in the output's params):
    `lora` (paths), `lora_scale` (one per file) and `base`; refused for a family with no frozen U-Net."""
    from vidtool.errors import UserError

    lora, scales = list(lora or []), list(lora_scale or [])
    if not lora and not scales and base is None:
        return {}
    if family not in FROZEN_BASE_FAMILIES:
        raise UserError(f"--lora, --lora-scale and --base change the frozen text-to-image U-Net of --family "
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
    return options
