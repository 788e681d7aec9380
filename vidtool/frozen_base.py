"""Generate-time changes to the frozen text-to-image U-Net of HARIVO and FusionFrames' keyframe
model, with the trained temporal parts kept as they are (HARIVO §1, §4.3: "seamless integration
with off-the-shelf models like ... DreamBooth", LoRA, no retraining):

- `--base DIR`: a DreamBooth-fine-tuned U-Net of the same architecture (a diffusers pipeline root,
  its `unet/`, or a vidtool t2i folder) takes the frozen base's place, weight for weight;
- `--lora FILE --lora-scale S`: LoRA updates merged into the base (vidtool.lora), after the swap;
- `--controlnet DIR --control-image FRAME=IMG --control-scale S`: a diffusers ControlNetModel of the
  base steering the chosen frames (vidtool.controlnet), attached to the base as `control`;
- `--ip-adapter DIR --image IMG --ip-adapter-scale S`: an IP-Adapter's decoupled cross-attention
  installed in the base, prompted by the image (vidtool.ip_adapter), attached as `image_prompt`.

FusionFrames' interpolation model has no frozen base (App. 9: the whole copied U-Net is trained),
so these belong to `generate` only. All four work on an SD 1.x, 2.x or SDXL base; on a Kandinsky 3
base (Kandinsky3UNet) --base and --lora do, and ControlNet and IP-Adapter are refused. The options (stages.addon_options) travel in the pipeline's
options dict, JSON values that the output's params record, and are applied here to the loaded
generator before it moves to the device."""

from __future__ import annotations

import json
from pathlib import Path

from torch import nn

from vidtool.errors import UserError

ADDONS = ("lora", "lora_scale", "base", "controlnet", "control_images", "control_scale", "ip_adapter", "ip_image",
          "ip_adapter_scale")


def adapt(generator, options: dict) -> list[str]:
    """Apply the add-ons named in `options` to `generator`'s frozen U-Net; returns what was done, for
    the console. Every file is read and checked before the base is changed at all."""
    if not any(k in options for k in ADDONS):
        return []
    unet = frozen_unet(generator)
    if generator.base.config.unet_class != "UNet2DConditionModel" and ("controlnet" in options or "ip_adapter" in options):
        raise UserError(f"--controlnet and --ip-adapter are made for a diffusers UNet2DConditionModel (Stable Diffusion 1.x, 2.x, XL); "
                        f"this model's frozen base is a {generator.base.config.unet_class}, which has no slot for them")
    from vidtool import lora as lora_files

    replacement = _replacement(generator, Path(options["base"])) if "base" in options else None
    loras = [lora_files.read(p, unet) for p in options.get("lora", [])]
    control = _control(generator, options) if "controlnet" in options else None
    image_prompt = _image_prompt(generator, options) if "ip_adapter" in options else None
    notes = []
    if replacement is not None:
        unet.load_state_dict(replacement)
        notes.append(f"frozen base ← {options['base']}")
    for lora, scale in zip(loras, options.get("lora_scale", [])):
        lora_files.merge(unet, lora, scale)
        left_out = f" ({lora.skipped} text-encoder layers left out)" if lora.skipped else ""
        notes.append(f"LoRA {lora.path.name}: {len(lora.layers)} layers merged at scale {scale:g}{left_out}")
    if control is not None:
        generator.base.control = control
        frames = ", ".join(str(f) for f, _ in options["control_images"])
        notes.append(f"ControlNet {options['controlnet']} on frames {frames} at scale {control.scale:g}")
    if image_prompt is not None:
        from vidtool import ip_adapter

        prompt, state = image_prompt
        ip_adapter.attach(unet, state, prompt.scale)
        generator.base.image_prompt = prompt
        notes.append(f"IP-Adapter {options['ip_adapter']}: image prompt {options['ip_image']} at scale {prompt.scale:g}")
    return notes


def _image_prompt(generator, options: dict):
    """The IP-Adapter's state and the --image's embedding (in the model's dtype), read and checked."""
    from vidtool import ip_adapter
    from vidtool.precision import model_dtype

    prompt, state = ip_adapter.load(options["ip_adapter"], options["ip_image"], options.get("ip_adapter_scale", 1.0),
                                    frozen_unet(generator))
    return prompt.to(model_dtype(generator)), state


def _control(generator, options: dict):
    """The ControlNet and its images, checked against the base and the number of frames to make."""
    from vidtool.controlnet import load
    from vidtool.precision import model_dtype

    config = generator.config
    frames = options.get("frames") or getattr(config, "frames", None) or config.keyframes
    control = load(options["controlnet"], [tuple(pair) for pair in options["control_images"]],
                   options.get("control_scale", 1.0), frozen_unet(generator), model_dtype(generator))
    control.frames_of(frames)  # a frame out of range: refused before sampling starts
    return control


def frozen_unet(generator) -> nn.Module:
    from vidtool.generators.t2i import T2IModel

    base = getattr(generator, "base", None)
    if not isinstance(base, T2IModel):
        raise UserError(f"--lora, --base and --controlnet work on a frozen text-to-image U-Net (--family fusionframes or harivo); "
                        f"a {generator.family} model has none")
    return base.unet


def _architecture(unet: nn.Module) -> dict:
    """A diffusers U-Net config without its bookkeeping (`_name_or_path`, ...) and sample_size (a hint)."""
    config = {k: v for k, v in dict(unet.config).items() if not k.startswith("_") and k != "sample_size"}
    return json.loads(json.dumps(config, default=str))  # tuples and lists alike


def _replacement(generator, folder: Path) -> dict:
    """The state dict of the U-Net in `folder`, checked to be the frozen base's architecture."""
    from vidtool import checkpoint
    from vidtool.generators.t2i import T2IModel
    from vidtool.standard_folders import UNET_CLASSES, component, describe, diffusers_class

    ours = frozen_unet(generator)
    unet_folder = component(folder, "unet", "--base")
    if diffusers_class(unet_folder) in UNET_CLASSES:
        theirs = T2IModel.from_unet_folder(unet_folder).unet
    elif describe(unet_folder) == "a vidtool t2i model":
        model = checkpoint.from_pretrained(unet_folder)
        if model.config.vae != generator.base.config.vae:
            raise UserError(f"--base {folder} works in the latent space of {model.config.vae}, the model's base in "
                            f"{generator.base.config.vae}; pass a fine-tune of the model's own base")
        theirs = model.unet
    else:
        raise UserError(f"--base {folder} is {describe(unet_folder)}; pass a diffusers U-Net folder "
                        "(or pipeline root) or a vidtool t2i folder fine-tuned from the model's base")
    if type(theirs) is not type(ours):
        raise UserError(f"--base {folder} is a {type(theirs).__name__}, the model's frozen base a {type(ours).__name__}; "
                        "pass a fine-tune of the same base")
    want, have = _architecture(ours), _architecture(theirs)
    differ = [k for k in sorted(want.keys() | have.keys()) if want.get(k) != have.get(k)]
    if differ:
        k = differ[0]
        raise UserError(f"--base {folder} is another architecture than the model's frozen base ({k}: "
                        f"{have.get(k)!r}, the model's {want.get(k)!r}); pass a fine-tune of the same base")
    state = theirs.state_dict()
    ours_shapes = {k: v.shape for k, v in ours.state_dict().items()}
    if {k: v.shape for k, v in state.items()} != ours_shapes:
        raise UserError(f"--base {folder}: its U-Net weights do not match the model's frozen base key for key")
    return state
