"""The model family registry: adding a family is one entry here.

An entry says which class a model folder of that family rebuilds (`config.json` "family"), which
bundled folder a stage uses when the user names none, what its generator trains on and extends,
and which stage option selects it. Everything else (checkpoint loading, `train-denoiser`'s data
and `--base` checks, `generate --family`, `interpolate --method`, `decode`'s tag lookup) reads it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    name: str
    model: str  # "module:Class"; the module also holds build() when `trains_on` is set
    default: str | None = None  # the bundled folder (vidtool/defaults/NAME) used when no --model is given
    trains_on: str | None = None  # train-denoiser's data: "latents", "tokens" or "motion"; None: train-vae
    data_model: str | None = None  # the bundled autoencoder that makes that training data by default
    base: str | None = None  # the family of the frozen trained model it extends (train-denoiser --base)
    generate: str | None = None  # its `generate --family` name
    interpolate: str | None = None  # its `interpolate --method` name
    writes: str | None = None  # the tensor-file kind its samples are written as
    pipeline: str | None = None  # "module:function" of vidtool.pipelines that samples it from prompts

    @property
    def module(self) -> str:
        return self.model.split(":")[0]


_AE = "vidtool.autoencoders"
_GEN = "vidtool.generators"
REGISTRY: dict[str, Family] = {f.name: f for f in (
    # Autoencoders (train-vae). cm-vae-tiny is the default `encode` model (natural footage at any
    # size); the bundled FusionFrames/HARIVO generators work in movq-tiny's latent space (their
    # data_model); mbq-vae-tiny is the default tokenizer.
    Family("mbq-vae", f"{_AE}.mbq_vae:MBQVAE", default="mbq-vae-tiny"),
    Family("cm-vae", f"{_AE}.cm_vae:CMVAE", default="cm-vae-tiny"),
    Family("mcd-vae", f"{_AE}.mcd_vae:MCDVAE", default="mcd-vae-tiny"),
    Family("movq-temporal", f"{_AE}.movq_temporal:MoVQTemporal", default="movq-tiny"),
    # A pretrained diffusers AutoencoderKL (Stable Diffusion's VAE), read from its own folder.
    Family("sd-vae", f"{_AE}.sd_vae:SDVAE"),
    # A pretrained diffusers VQModel (Kandinsky's MoVQ, a Kandinsky 3 pipeline's movq/), read likewise.
    Family("vq-model", f"{_AE}.vq_model:VQModelAE"),
    # Generators (train-denoiser).
    Family("t2i", f"{_GEN}.t2i:T2IModel", default="t2i-tiny", trains_on="latents", data_model="movq-tiny"),
    Family("keyframes", f"{_GEN}.keyframes:KeyframeModel", default="keyframes-tiny", trains_on="latents",
           data_model="movq-tiny", base="t2i", generate="fusionframes", writes="keyframes",
           pipeline="vidtool.pipelines.fusionframes:sample_keyframes"),
    Family("interp", f"{_GEN}.interpolation:InterpolationModel", default="interp-tiny", trains_on="latents",
           data_model="movq-tiny", base="t2i", interpolate="fusionframes", writes="latents"),
    Family("interp-mfi", f"{_GEN}.masked_interpolation:MaskedInterpolationModel", trains_on="latents",
           data_model="movq-tiny", base="t2i", interpolate="mfi", writes="latents"),
    Family("harivo", f"{_GEN}.harivo:HarivoModel", default="harivo-tiny", trains_on="latents",
           data_model="movq-tiny", base="t2i", generate="harivo", writes="latents",
           pipeline="vidtool.pipelines.harivo:generate"),
    # The bundled MotionAura generators were trained on mbq-vae-tiny-v1's 2**10 codes (a generator's
    # output layer is as wide as the codebook), so their token sets are made with it.
    Family("spectral", f"{_GEN}.spectral_transformer:SpectralTransformer", default="motionaura-tiny",
           trains_on="tokens", data_model="mbq-vae-tiny-v1", generate="motionaura", writes="tokens",
           pipeline="vidtool.pipelines.motionaura:generate"),
    Family("spectral-inpaint", f"{_GEN}.spectral_inpaint:SpectralInpaintModel", default="motionaura-inpaint-tiny",
           trains_on="tokens", data_model="mbq-vae-tiny-v1", base="spectral"),
    Family("dmg", f"{_GEN}.dmg:DMGModel", default="dmg-tiny", trains_on="motion", data_model="mcd-vae-tiny",
           generate="lamd", writes="motion"),
)}

# Stage roles → the family whose bundled default a stage uses when no --model is given.
ROLES = {"encode": "cm-vae", "tokenize": "mbq-vae", "generate": "keyframes", "interpolate": "interp",
         "interpolate-mfi": "interp-mfi", "motionaura": "spectral", "inpaint": "spectral-inpaint", "lamd": "dmg"}


def pipeline(entry: Family):
    """The pipeline function that samples `entry` from prompts (its registered "module:function")."""
    import importlib

    module, name = entry.pipeline.split(":")
    return getattr(importlib.import_module(module), name)


def family(name: str) -> Family:
    from vidtool.errors import UserError

    if name not in REGISTRY:
        raise UserError(f"unknown model family {name!r}; known: {', '.join(sorted(REGISTRY))}")
    return REGISTRY[name]


def by_option(option: str, value: str) -> Family:
    """The family selected by `generate --family VALUE` (option "generate") or `interpolate --method`."""
    from vidtool.errors import UserError

    # The family's own name works too (`generate --family keyframes` = `--family fusionframes`).
    found = [f for f in REGISTRY.values() if getattr(f, option) == value or (f.name == value and getattr(f, option))]
    if not found:
        known = ", ".join(getattr(f, option) for f in REGISTRY.values() if getattr(f, option))
        raise UserError(f"unknown --{'family' if option == 'generate' else 'method'} {value!r}; known: {known}")
    return found[0]


def trainable() -> list[str]:
    """The families `train-denoiser` trains."""
    return [f.name for f in REGISTRY.values() if f.trains_on]
