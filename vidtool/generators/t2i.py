"""The text-to-image base every video family builds on: a diffusers `UNet2DConditionModel` over the
latents of an image/video autoencoder, conditioned on text-encoder token embeddings.

The `tiny` preset is trained here (`vidtool train-denoiser --family t2i`) on single frames of the
`shapes` and `photos` clips in the latent space of the bundled movq-temporal model; a Stable
Diffusion U-Net (1.x, 2.x or SDXL layout) or a Kandinsky 3 U-Net (`Kandinsky3UNet`, the base
FusionFrames was published on) can be taken from a local diffusers folder instead
(`T2IModel.from_unet_folder`, what `train-denoiser --base` does with a diffusers folder): its class
(`unet_class`) and whole diffusers config (`unet`) are kept and the U-Net is rebuilt from them, so
every layout diffusers knows loads as it is.

Kandinsky 3 differs from Stable Diffusion where the wrapper sees it: its text tokens (T5 width,
`encoder_hid_dim`) are projected inside the U-Net, so `cross_attention_dim` here is that input width;
`attention_head_dim` is its head *size* (64); it always takes an attention mask (its attention
pooling of the text into the time embedding reads one), and it has no ControlNet or IP-Adapter slot.
The video families (FusionFrames keyframes and interpolation, HARIVO) load a trained T2I folder and
freeze it.

An SDXL-layout U-Net (diffusers' addition_embed_type "text_time") takes two conditions besides the
text tokens, as StableDiffusionXLPipeline passes them in `added_cond_kwargs`: "text_embeds", the
pooled projection of the pipeline's second text encoder (vidtool.text), and "time_ids", the size
micro-conditioning (`size_condition`).

Batches are the latent-dataset dicts (vidtool.data.latents): "latents" [B, C, T, h, w] (already
multiplied by `latent_scale`), "text" [B, L, D], "text_mask" [B, L] bool, "null_text" [L, D] and
"null_mask" [L], and of an SDXL pipeline's captions "text_embeds" [B, P] and "null_text_embeds" [P].
The T2I model trains on `frames_per_clip` random frames of each clip, as images.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from vidtool.diffusion.schedulers import NoiseSchedule, diffusion_pair
from vidtool.errors import UserError


TIME_IDS = 6  # SDXL's size conditioning: original (h, w), crop (top, left), target (h, w)


def size_condition(noisy: torch.Tensor, pixels_per_latent: int) -> torch.Tensor:
    """SDXL's "time_ids" [N, 6] for latents [N, C, h, w]: (original h, w, crop top, left, target h, w)
    in pixels, the latent grid's size uncropped, which is what StableDiffusionXLPipeline passes
    unless told otherwise (original_size = target_size = (height, width), crops (0, 0)). Training
    conditions on the same: clips are encoded at the size they are trained at."""
    h, w = (side * pixels_per_latent for side in noisy.shape[-2:])
    return torch.tensor([h, w, 0, 0, h, w], dtype=torch.float32, device=noisy.device).expand(noisy.shape[0], TIME_IDS)


@dataclass
class T2IConfig:
    # diffusers UNet2DConditionModel arguments. Defaults are the `tiny` preset: 8x8x4 latents (the
    # tiny movq-temporal's), three levels 8/4/2, cross-attention to 384-d MiniLM tokens.
    latent_channels: int = 4
    sample_size: int = 8
    block_out_channels: tuple[int, ...] = (64, 128, 128)
    down_block_types: tuple[str, ...] = ("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D")
    up_block_types: tuple[str, ...] = ("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D")
    layers_per_block: int = 1
    # diffusers' UNet2DConditionModel reads `attention_head_dim` as the number of heads (a known
    # misnomer it keeps for compatibility): 4 heads of 16/32 channels at widths 64/128.
    attention_head_dim: int = 4
    cross_attention_dim: int = 384
    norm_num_groups: int = 16

    schedule: NoiseSchedule = field(default_factory=NoiseSchedule)
    # Latents are multiplied by this before diffusion so they have unit variance (the SD "scaling
    # factor"); measured on the training data when the model is created (vidtool.data.latents).
    latent_scale: float = 1.0
    vae: str = ""  # "family@digest" of the autoencoder whose latent space this is
    vae_path: str = ""  # where that autoencoder was when this was built: decode's first guess
    text_encoder: str = "all-MiniLM-L6-v2"
    text_encoder_path: str = ""  # the encoder's folder when it is not the default: generate's default
    # A pretrained diffusers U-Net's own config (from_unet_folder); when set, the U-Net is built from it
    # and the architecture fields above only describe it to the video families.
    unet: dict | None = None
    unet_class: str = "UNet2DConditionModel"  # or "Kandinsky3UNet" (vidtool.standard_folders.UNET_CLASSES)
    text_max_length: int = 32
    cond_dropout: float = 0.1  # prompts replaced by the empty prompt in training, for CFG
    frames_per_clip: int = 4  # frames of each training clip used as images
    # The autoencoder's pixels per latent cell: an SDXL U-Net's size conditioning is in pixels.
    pixels_per_latent: int = 8

    def __post_init__(self):
        import math

        if not isinstance(self.schedule, (dict, NoiseSchedule)):
            raise ValueError(f"schedule must be a mapping of the noise schedule's values, got {self.schedule!r}")
        self.schedule = schedule_from_dict(self.schedule)  # config.json holds it as a mapping
        # A config.json edited by hand reaches here: sizes that are not positive whole numbers would fail
        # deep inside the U-Net or the sampler.
        for name in ("latent_channels", "sample_size", "layers_per_block", "attention_head_dim", "cross_attention_dim",
                     "norm_num_groups", "text_max_length", "frames_per_clip", "pixels_per_latent"):
            value = getattr(self, name)
            if name == "sample_size" and value is None:  # a diffusers U-Net that declares none
                continue
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive whole number, got {value!r}")
        scale = self.latent_scale
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale) or scale <= 0:
            raise ValueError(f"latent_scale must be a positive number, got {scale!r}")

    @property
    def text_embeds_dim(self) -> int | None:
        """Width of the pooled text embedding an SDXL-layout U-Net adds to its time embedding (its
        add_embedding reads P + 6 x addition_time_embed_dim features: the pooled vector and the six
        size values' sinusoidal features); None for a U-Net that takes none."""
        if not self.unet or self.unet.get("addition_embed_type") != "text_time":
            return None
        total, per_id = (self.unet.get(k) for k in ("projection_class_embeddings_input_dim", "addition_time_embed_dim"))
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (total, per_id)) \
                or total <= TIME_IDS * per_id:
            raise UserError(f"the U-Net config's projection_class_embeddings_input_dim ({total!r}) and "
                            f"addition_time_embed_dim ({per_id!r}) do not leave a pooled text embedding (the first must "
                            f"be a whole number above {TIME_IDS} x the second); restore the values diffusers wrote")
        return total - TIME_IDS * per_id

    def unet_kwargs(self) -> dict:
        if self.unet is not None:
            return dict(self.unet)
        return dict(sample_size=self.sample_size, in_channels=self.latent_channels, out_channels=self.latent_channels,
                    block_out_channels=tuple(self.block_out_channels), down_block_types=tuple(self.down_block_types),
                    up_block_types=tuple(self.up_block_types), layers_per_block=self.layers_per_block,
                    attention_head_dim=self.attention_head_dim, cross_attention_dim=self.cross_attention_dim,
                    norm_num_groups=self.norm_num_groups)


def unet_class(name: str) -> type:
    """The diffusers class called `name`, one of the U-Nets vidtool wraps."""
    import diffusers

    from vidtool.standard_folders import UNET_CLASSES

    if name not in UNET_CLASSES:
        raise ValueError(f"unet_class must be one of {', '.join(UNET_CLASSES)}, got {name!r}")
    return getattr(diffusers, name)


def config_from_unet(unet_config, unet_class_name: str = "UNet2DConditionModel", **overrides) -> T2IConfig:
    """The T2I config of a diffusers UNet2DConditionModel (or Kandinsky3UNet) config: the whole of it
    in `unet`, and the fields the video families read (widths, levels, heads, cross-attention width)
    taken from it. SD 2.x lists heads per level (the first is taken for the temporal layers' head count)."""
    from vidtool.autoencoders.sd_vae import diffusers_config

    c = diffusers_config(unet_config)
    if unet_class_name == "Kandinsky3UNet":
        layers = c["layers_per_block"]
        return dataclasses.replace(
            T2IConfig(), latent_channels=c["in_channels"], block_out_channels=tuple(c["block_out_channels"]),
            down_block_types=(), up_block_types=(), layers_per_block=layers if isinstance(layers, int) else layers[0],
            attention_head_dim=c["attention_head_dim"], cross_attention_dim=c["encoder_hid_dim"],
            norm_num_groups=c["groups"], unet=c, unet_class=unet_class_name, **overrides)
    head_dim = c["attention_head_dim"]
    cross = c["cross_attention_dim"]
    return dataclasses.replace(
        T2IConfig(), latent_channels=c["in_channels"], sample_size=c["sample_size"],
        block_out_channels=tuple(c["block_out_channels"]), down_block_types=tuple(c["down_block_types"]),
        up_block_types=tuple(c["up_block_types"]),
        layers_per_block=c["layers_per_block"] if isinstance(c["layers_per_block"], int) else c["layers_per_block"][0],
        attention_head_dim=head_dim if isinstance(head_dim, int) else head_dim[0],
        cross_attention_dim=cross if isinstance(cross, int) else cross[0], norm_num_groups=c["norm_num_groups"],
        unet=c, **overrides)


def _check_unet_config(folder: Path) -> None:
    """The sizes in a diffusers U-Net's config.json within bounds (vidtool.config_limits) before
    diffusers builds it."""
    import json

    from vidtool.config_limits import check_values

    try:
        values = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise UserError(f"{folder}/config.json is not readable JSON ({type(e).__name__})") from e
    check_values(values, f"{folder}/config.json")


def preset(name: str, **overrides) -> T2IConfig:
    """`tiny`: 8x8x4 latents, 64/128/128 channels (about 5M parameters), trains on CPU."""
    if name != "tiny":
        raise ValueError(f"unknown t2i preset {name!r}; known: tiny (or load a diffusers U-Net folder)")
    return dataclasses.replace(T2IConfig(), **overrides)


def schedule_from_dict(values: dict | NoiseSchedule) -> NoiseSchedule:
    return values if isinstance(values, NoiseSchedule) else NoiseSchedule(**values)


def base_config(values: dict | T2IConfig) -> T2IConfig:
    """The T2I config nested in a video family's config: itself, or rebuilt from its config.json mapping."""
    if isinstance(values, T2IConfig):
        return values
    return T2IConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


class T2IModel(nn.Module):
    family = "t2i"
    config_class = T2IConfig

    def __init__(self, config: T2IConfig):
        super().__init__()
        self.config = config
        self.unet = unet_class(config.unet_class)(**config.unet_kwargs())

    @classmethod
    def from_unet_folder(cls, folder: str | Path, **overrides) -> "T2IModel":
        """Wrap a local diffusers UNet2DConditionModel folder (e.g. a Stable Diffusion `unet/`) or
        Kandinsky3UNet folder (a Kandinsky 3 `unet/`); diffusers reads (and, for old checkpoints,
        converts) its weights."""
        from vidtool.standard_folders import UNET_CLASSES, describe, diffusers_class, quiet_diffusers

        folder = Path(folder)
        name = diffusers_class(folder)
        if name not in UNET_CLASSES:
            raise UserError(f"{folder} is {describe(folder)}, not a diffusers {' or '.join(UNET_CLASSES)} folder")
        _check_unet_config(folder)
        quiet_diffusers()
        from vidtool.standard_folders import first_line, load_errors

        try:
            unet = unet_class(name).from_pretrained(folder, local_files_only=True)
        except load_errors() as e:
            raise UserError(f"cannot load the diffusers {name} in {folder}: {first_line(e)}; is it the folder "
                            "diffusers wrote, with its config.json unchanged?") from e
        model = cls.__new__(cls)
        nn.Module.__init__(model)
        model.config = config_from_unet(unet.config, name, **overrides)
        model.unet = unet
        return model

    # --- prediction ---------------------------------------------------------------------------

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor | None = None, *, frames: int | None = None,
                text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Images [N, C, h, w] at `timesteps` [N] -> the model output (epsilon or v). `frames`: the
        images are clips of that many frames, (B F) in order, which a `control` attached at generate
        time (vidtool.controlnet.FrameControl) steers on its chosen frames. An `image_prompt`
        attached at generate time (vidtool.ip_adapter) takes the batch as a guided one, its
        conditional half first (vidtool.pipelines.conditioning.with_null). `text_embeds` [N, P]:
        the prompts' pooled embeddings, which an SDXL-layout U-Net needs (and no other takes); with
        the size conditioning they go to its ControlNet too, and together with the image prompt's
        `image_embeds` to the U-Net."""
        control, image_prompt = getattr(self, "control", None), getattr(self, "image_prompt", None)
        added = {}
        if self.config.text_embeds_dim is not None:
            if text_embeds is None:
                raise UserError("this model's U-Net has the SDXL layout: it needs the prompts' pooled text embeddings "
                                "(text_embeds), which its text encoder is the SDXL pipeline's pair")
            added.update(text_embeds=text_embeds.to(noisy.dtype),
                         time_ids=size_condition(noisy, self.config.pixels_per_latent))
        # An SDXL ControlNet takes the U-Net's pooled text and size conditions (not the image prompt's,
        # as in StableDiffusionXLControlNetPipeline); the U-Net takes all of them in one dict.
        extra = control.residuals(noisy, timesteps, text, frames, added) if control is not None and frames else {}
        if image_prompt is not None:
            added.update(image_prompt.added_cond_kwargs(noisy.shape[0]))
        if added:
            extra["added_cond_kwargs"] = added
        if text_mask is None and self.config.unet_class == "Kandinsky3UNet":  # its text pooling needs a mask
            text_mask = torch.ones(text.shape[:2], dtype=torch.bool, device=text.device)
        return self.unet(noisy, timesteps, encoder_hidden_states=text,
                         encoder_attention_mask=None if text_mask is None else text_mask.to(noisy.dtype),
                         **extra).sample

    # --- training -----------------------------------------------------------------------------

    def training_losses(self, batch: dict, *, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        """L_simple (MSE to the epsilon/v target) on `frames_per_clip` random frames of each clip."""
        latents = batch["latents"]
        b, _, t = latents.shape[:3]
        k = min(self.config.frames_per_clip, t)
        pick = torch.stack([torch.randperm(t)[:k] for _ in range(b)]).to(latents.device)
        images = torch.stack([latents[i, :, pick[i]] for i in range(b)])  # [B, C, k, h, w]
        images = rearrange(images, "b c k h w -> (b k) c h w")
        text, mask, pooled = drop_conditions(batch, self.config.cond_dropout)
        text, mask = (repeat(x, "b ... -> (b k) ...", k=k) for x in (text, mask))
        pooled = None if pooled is None else repeat(pooled, "b p -> (b k) p", k=k)
        noisy, timesteps, target = diffusion_pair(self.config.schedule, images)
        loss = F.mse_loss(self.predict(noisy, timesteps, text, mask, text_embeds=pooled), target)
        return {"loss": loss}

def drop_prompts(batch: dict, probability: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Text tokens and mask with each item's prompt replaced by the empty prompt with `probability`
    (the classifier-free guidance training rule)."""
    text, mask, _ = drop_conditions(batch, probability)
    return text, mask


def drop_conditions(batch: dict, probability: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`drop_prompts` with the pooled text embeddings too (None when the batch has none: all but an
    SDXL pipeline's captions), dropped with the same draw as their tokens."""
    text, mask, pooled = batch["text"], batch["text_mask"], batch.get("text_embeds")
    drop = torch.rand(text.shape[0]) < probability
    if not drop.any():
        return text, mask, pooled
    drop = drop.to(text.device)
    null_text = batch["null_text"][0] if batch["null_text"].dim() == 3 else batch["null_text"]
    null_mask = batch["null_mask"][0] if batch["null_mask"].dim() == 2 else batch["null_mask"]
    text = torch.where(drop[:, None, None], null_text.to(text.dtype), text)
    mask = torch.where(drop[:, None], null_mask, mask)
    if pooled is not None:
        null_pooled = batch["null_text_embeds"]
        null_pooled = null_pooled[0] if null_pooled.dim() == 2 else null_pooled
        pooled = torch.where(drop[:, None], null_pooled.to(pooled.dtype), pooled)
    return text, mask, pooled


def from_diffusers_base(folder: str | Path, data) -> T2IModel:
    """A Stable Diffusion (1.x, 2.x, SDXL) or Kandinsky 3 pipeline root or `unet/` folder as the frozen
    t2i base of a video family, in the latent space and with the text encoder of the latent set `data`
    (built by default with the pipeline's own vae/ or movq/ and text_encoder/, both of SDXL's): the
    latents are scaled by the autoencoder's declared scale, the scale the U-Net was trained at (an SD
    VAE's scaling_factor; 1 for Kandinsky's MoVQ). The pipeline's `scheduler/` config, when there is
    one, gives the noise schedule the U-Net was trained with. A Kandinsky3UNet declares no sample
    size: the latent set's (its frame size over the autoencoder's factor) is the default sampling
    size. An SDXL-layout U-Net needs the set's captions to carry the pooled embeddings it takes, and
    its size conditioning the VAE's spatial factor."""
    from vidtool.standard_folders import component, is_pipeline_root, pipeline_index

    if is_pipeline_root(folder):
        pipeline_index(folder)  # a model_index.json that is not JSON: one line, not a guess
    unet_folder = component(folder, "unet", "--base")
    root = Path(unet_folder).resolve().parent
    scheduler = root / "scheduler" / "scheduler_config.json"
    overrides = {}
    if is_pipeline_root(root):
        pipeline_index(root)
        if scheduler.is_file():
            overrides["schedule"] = pipeline_schedule(scheduler)
    model = T2IModel.from_unet_folder(
        unet_folder, latent_scale=data.latent_scale, vae=data.vae, vae_path=getattr(data, "vae_path", ""),
        text_encoder=data.text_encoder, text_encoder_path=getattr(data, "text_encoder_path", ""),
        text_max_length=getattr(data, "text_length", None) or T2IConfig.text_max_length, **overrides)
    if model.config.unet_class == "Kandinsky3UNet":
        model.config.sample_size = max(1, data.size // _spatial_factor(data))
        return model
    kind = model.unet.config.addition_embed_type
    if kind not in (None, "text_time"):
        raise UserError(f"{unet_folder} is a U-Net with addition_embed_type {kind!r} (image or hint conditioning), "
                        "which vidtool's video families do not provide; use an SD 1.x/2.x or SDXL U-Net")
    want = model.config.text_embeds_dim
    if want is not None:
        have = getattr(data, "text_embeds_dim", None)
        if have != want:
            raise UserError(f"{unet_folder} is an SDXL-layout U-Net that takes {want}-d pooled text embeddings; the "
                            f"latent set's captions carry {f'{have}-d ones' if have else 'none'}: build it with the "
                            "SDXL pipeline's two text encoders (--text-encoder SDXL_PIPELINE_DIR, the default for "
                            "an SDXL --base)")
        model.config.pixels_per_latent = _spatial_factor(data)
    return model


def pipeline_schedule(path: Path) -> NoiseSchedule:
    """The noise schedule of a diffusers scheduler config (betas, steps, prediction type), every value
    checked: a schedule with other betas than the U-Net was trained with would train and sample wrongly
    without a word."""
    import json
    import math

    from vidtool.diffusion.schedulers import BETA_SCHEDULES, MAX_TIMESTEPS, PREDICTIONS

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise UserError(f"{path} is not valid JSON ({e.msg} at line {e.lineno})") from e
    except (OSError, UnicodeDecodeError, RecursionError) as e:
        raise UserError(f"cannot read {path} ({type(e).__name__}); it should be the scheduler config diffusers wrote") from e
    if not isinstance(doc, dict):
        raise UserError(f"{path} holds a JSON {type(doc).__name__}, not a scheduler config object")
    fix = "; it should be the config of the scheduler the U-Net was trained with, as diffusers wrote it"
    if doc.get("trained_betas") is not None:
        raise UserError(f"{path} lists trained_betas, which vidtool's schedules do not take{fix}")
    steps = doc.get("num_train_timesteps", NoiseSchedule.train_timesteps)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 < steps <= MAX_TIMESTEPS:
        raise UserError(f"{path}: num_train_timesteps is {steps!r}, not a whole number from 2 to {MAX_TIMESTEPS}{fix}")
    betas = []
    for key, default in (("beta_start", NoiseSchedule.beta_start), ("beta_end", NoiseSchedule.beta_end)):
        value = doc.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
                or not 0 < value < 1:
            raise UserError(f"{path}: {key} is {value!r}, not a number between 0 and 1{fix}")
        betas.append(float(value))
    if betas[0] > betas[1]:
        raise UserError(f"{path}: beta_start {betas[0]} is above beta_end {betas[1]}{fix}")
    schedule = doc.get("beta_schedule", NoiseSchedule.beta_schedule)
    if schedule not in BETA_SCHEDULES:
        raise UserError(f"{path}: beta_schedule {schedule!r} is not one vidtool samples with "
                        f"({', '.join(BETA_SCHEDULES)}){fix}")
    prediction = doc.get("prediction_type", NoiseSchedule.prediction_type)
    if prediction not in PREDICTIONS:
        raise UserError(f"{path}: prediction_type {prediction!r} is not one vidtool trains "
                        f"({', '.join(PREDICTIONS)}){fix}")
    return NoiseSchedule(train_timesteps=steps, beta_start=betas[0], beta_end=betas[1], beta_schedule=schedule,
                         prediction_type=prediction)


def _spatial_factor(data) -> int:
    """Pixels per latent cell of the autoencoder the latent set `data` was made with."""
    from vidtool import checkpoint, model_store

    return checkpoint.spatial_factor(model_store.find_by_tag(data.vae, hint=getattr(data, "vae_path", "") or None))


def text_length(data, want: int | None, what: str) -> int | None:
    """The number of text tokens a model built on `data` reads: the latent set's, which its captions
    were encoded at (None for sets from before it was recorded: then `want`). `what` (a base, a
    --set) asking for another number is refused, never silently padded or cut (HARIVO's frame-token
    generator, for one, is built for exactly that many)."""
    have = getattr(data, "text_length", None)
    if have is None:
        return want
    if want is not None and want != have:
        raise ValueError(f"{what} reads {want} text tokens but the latent set's captions have {have}; rebuild the set "
                         f"with --text-length {want} (or use {have})")
    return have


def build(preset_name: str, overrides: dict, base: "T2IModel | None", data) -> T2IModel:
    """The trainer's entry (vidtool.generators.build): latent geometry, scale and text length come from the data."""
    config = preset(preset_name, **overrides)
    config.text_max_length = text_length(data, overrides.get("text_max_length"), "--set text_max_length") \
        or config.text_max_length
    config.latent_scale = data.latent_scale
    config.vae, config.vae_path = data.vae, getattr(data, "vae_path", "")
    config.text_encoder = data.text_encoder
    config.text_encoder_path = getattr(data, "text_encoder_path", "")
    return T2IModel(config)
