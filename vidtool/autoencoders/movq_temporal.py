"""FusionFrames' video decoder (§4.3, Table 3): a MoVQ image autoencoder whose decoder gains
zero-initialised temporal layers.

    video [B, 3, T, H, W] in [-1, 1]
      -> 2D encoder on every frame (VQGAN: ResNet blocks, x2 down per level, attention at the
         lowest level) -> quant_conv                                   (frozen in the video stage)
      -> VQ (vidtool.nn.quantizers.VectorQuantizer) -> tokens [B, T, h, w], codes zq [B, C, T, h, w]
      -> post_quant_conv -> MoVQ decoder, every norm a SpatialNorm on zq (Zheng et al. 2022),
         with one of Table 3's temporal extensions (see vidtool.nn.movq_blocks for placement):
            "none"           the image decoder, frame by frame
            "conv1x1x3"      a 3x1x1 temporal conv after each decoder conv   (Table 3 "3x1x1 Conv")
            "conv3x3x3"      a 3x3x3 temporal conv after each decoder conv   (Table 3 "3x3x3 Conv")
            "resblock_attn"  a temporal ResNet block after each ResNet block, with temporal attention
            "conv2d_to_3d"   the decoder's 3x3 convs inflated to 3x3x3      (Table 3 "2D -> 3D Conv")
         `temporal_attention` adds temporal attention after each spatial attention ("+ Attn").

No temporal compression (temporal_factor 1): any clip length decodes. x8 spatial at the paper shape.

Training goes in two stages, each a config of this one class:
- stage "image": the whole 2D MoVQ trains on frames (clips folded into images; `image_frames` per
  clip): L1 + codebook + commitment_weight * commitment. MoVQ's perceptual and GAN terms need
  pretrained / extra networks and are left out. `codebook_init` and `dead_code_steps` turn on the
  quantizer's remedies for codebook collapse (k-means initialisation, dead-code restarts); they keep
  one codebook on every rank under DDP (not under FSDP, whose sharded master copy they would miss).
- stage "video" (`MoVQTemporal.from_image_model(image_model, temporal=...)`): the encoder, quant_conv
  and codebook are frozen — §4.3 "a pretrained MoVQ-GAN model with a frozen encoder" — and the loss
  is L1 on the decoded clip. finetune "decoder" trains the whole decoder with the new layers (the
  paper's production choice, §6.4); "temporal" trains only the temporal layers.
Freezing is part of the config (requires_grad is set in the constructor), so a trainer that builds
one AdamW over the parameters requiring grad does the right thing, and a reloaded model keeps it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidtool.autoencoders.outputs import EncoderOutput
from vidtool.errors import UserError
from vidtool.nn.movq_blocks import TEMPORAL_KINDS, Decoder, Encoder, is_temporal
from vidtool.nn.params import parameter_count
from vidtool.nn.quantizers import CODEBOOK_INITS, QuantizerOutput, VectorQuantizer


@dataclass
class MoVQTemporalConfig:
    # The 2D MoVQ. The defaults are the shape whose decoder has Table 3's 161M "Image" parameters
    # (and whose encoder + decoder, 270M, is Sber-MoVQGAN-270M's size): FusionFrames gives no shape.
    channels: int = 256
    channel_multipliers: tuple[int, ...] = (1, 2, 2, 4)  # one level each, x2 down between levels: x8
    layers_per_block: int = 2  # encoder ResNet blocks per level; the decoder has one more (VQGAN)
    norm_groups: int = 32
    latent_channels: int = 4  # = the code vector width
    codebook_size: int = 16384
    # Stage and video extension (§4.3, Table 3).
    stage: str = "image"  # "image" (train the 2D MoVQ) or "video" (frozen encoder, temporal decoder)
    temporal: str = "none"  # one of TEMPORAL_KINDS
    temporal_attention: bool = False  # always on for "resblock_attn" (Table 3 "ResNet Block + Attn")
    finetune: str = "decoder"  # video stage: "decoder" (all of it, §6.4) or "temporal" (new layers only)
    # Losses.
    commitment_weight: float = 0.25  # beta of VQ-VAE, VQGAN's value
    codebook_weight: float = 1.0
    image_frames: int = 0  # image stage: frames drawn at random from each clip per step; 0 = all
    # Against codebook collapse (VectorQuantizer): where the codes start ("normal", or "data" /
    # "kmeans" on the first training batch's encoder outputs) and after how many training batches
    # unused a code is restarted on an encoder output (0 = never). The defaults are what the bundled
    # movq-tiny was trained with; `codebook_init="kmeans", dead_code_steps=20` is the fixed recipe.
    codebook_init: str = "normal"
    dead_code_steps: int = 0

    def __post_init__(self):
        if self.stage not in ("image", "video"):
            raise ValueError(f"stage must be 'image' or 'video', got {self.stage!r}")
        if self.temporal not in TEMPORAL_KINDS:
            raise ValueError(f"temporal must be one of {TEMPORAL_KINDS}, got {self.temporal!r}")
        if self.finetune not in ("decoder", "temporal"):
            raise ValueError(f"finetune must be 'decoder' or 'temporal', got {self.finetune!r}")
        if self.temporal == "resblock_attn":
            self.temporal_attention = True
        if self.stage == "image" and (self.temporal != "none" or self.temporal_attention):
            raise ValueError("the image stage trains the 2D MoVQ without temporal layers; add them afterwards with "
                             "MoVQTemporal.from_image_model(image_model, temporal=...)")
        if self.temporal == "none" and self.temporal_attention:
            raise ValueError("temporal attention joins a temporal conv or block (Table 3); "
                             "pick temporal='conv1x1x3', 'conv3x3x3' or 'resblock_attn'")
        if self.temporal == "conv2d_to_3d" and self.finetune == "temporal":
            raise ValueError("conv2d_to_3d has no separate temporal layers (its 3D convs hold the 2D kernels); "
                             "use finetune='decoder', as Table 3 does")
        if any(w % self.norm_groups for w in self.widths):
            raise ValueError(f"every width must be a multiple of norm_groups={self.norm_groups}; got {self.widths}")
        if self.image_frames < 0:
            raise ValueError(f"image_frames is a count of frames per clip (0 = all), got {self.image_frames}")
        if self.codebook_init not in CODEBOOK_INITS:
            raise ValueError(f"codebook_init must be one of {CODEBOOK_INITS}, got {self.codebook_init!r}")
        if self.dead_code_steps < 0:
            raise ValueError(f"dead_code_steps counts training batches (0 = no restarts), got {self.dead_code_steps}")

    @property
    def widths(self) -> tuple[int, ...]:
        return tuple(self.channels * m for m in self.channel_multipliers)


# Table 3 rows by architecture (finetune "decoder" unless overridden; "3x1x1 Conv" and "3x3x3 Conv"
# also appear with finetune "temporal").
PAPER_VARIANTS: dict[str, dict] = {
    "paper": {},
    "paper-conv1x1x3": dict(stage="video", temporal="conv1x1x3"),
    "paper-conv3x3x3": dict(stage="video", temporal="conv3x3x3"),
    "paper-conv1x1x3-attn": dict(stage="video", temporal="conv1x1x3", temporal_attention=True),
    "paper-conv3x3x3-attn": dict(stage="video", temporal="conv3x3x3", temporal_attention=True),
    "paper-resblock-attn": dict(stage="video", temporal="resblock_attn"),
    "paper-conv2d-to-3d": dict(stage="video", temporal="conv2d_to_3d"),
}


def preset(name: str, **overrides) -> MoVQTemporalConfig:
    """`tiny`: the image-stage 2D MoVQ for CPU training on 64x64 frames: x8 to 8x8 latents of 4
    channels, 1024 codes, 2.9M parameters; its video stage is `from_image_model(model, temporal=...)`.
    `paper`: the 2D MoVQ of Table 3's "Image" row; `paper-<variant>`: the video rows of Table 3
    (pass finetune="temporal" for the rows that train only the temporal layers)."""
    if name == "tiny":
        # Widths 16/32/64/128: the 64x64 and 32x32 levels dominate the cost on CPU, the 8x8 level
        # the parameter count.
        config = MoVQTemporalConfig(channels=16, channel_multipliers=(1, 2, 4, 8), layers_per_block=1,
                                    norm_groups=8, codebook_size=1024, image_frames=4)
    elif name in PAPER_VARIANTS:
        config = MoVQTemporalConfig(**PAPER_VARIANTS[name])
    else:
        raise ValueError(f"unknown movq-temporal preset {name!r}; known: tiny, {', '.join(PAPER_VARIANTS)}")
    return replace(config, **overrides)


class MoVQTemporal(nn.Module):
    family = "movq-temporal"
    config_class = MoVQTemporalConfig

    def __init__(self, config: MoVQTemporalConfig):
        super().__init__()
        self.config = config
        c = config.latent_channels
        shape = dict(widths=config.widths, layers_per_block=config.layers_per_block, groups=config.norm_groups,
                     latent_channels=c)
        self.encoder = Encoder(**shape)
        self.quant_conv = nn.Conv2d(c, c, 1)
        self.quantizer = VectorQuantizer(config.codebook_size, c, init=config.codebook_init,
                                         dead_code_steps=config.dead_code_steps)
        self.post_quant_conv = nn.Conv2d(c, c, 1)
        self.decoder = Decoder(**shape, temporal=config.temporal, temporal_attention=config.temporal_attention)
        self._set_trainable()

    def _set_trainable(self) -> None:
        if self.config.stage == "image":
            return
        for name, p in self.named_parameters():
            if self.config.finetune == "temporal":
                p.requires_grad_(is_temporal(name))
            else:
                p.requires_grad_(name.startswith(("decoder.", "post_quant_conv.")))

    @property
    def frozen_codes(self) -> bool:
        """The video stage keeps the image stage's encoder, quant_conv and codebook (§4.3)."""
        return self.config.stage == "video"

    @property
    def temporal_factor(self) -> int:
        return 1

    @property
    def encodes_frames_alone(self) -> bool:
        """The 2D encoder sees one frame at a time, so chunked encoding needs no temporal context."""
        return True

    @property
    def decodes_frames_alone(self) -> bool:
        """The image decoder ("none", no temporal attention) has no layer that mixes frames."""
        return self.config.temporal == "none" and not self.config.temporal_attention

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.config.channel_multipliers) - 1)

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def parameter_counts(self) -> dict[str, int]:
        return {
            "encoder": parameter_count(self.encoder, self.quant_conv),
            "codebook": parameter_count(self.quantizer),
            "decoder": parameter_count(self.post_quant_conv, self.decoder),  # what Table 3's "# Params" counts
            "temporal_layers": sum(p.numel() for name, p in self.decoder.named_parameters() if is_temporal(name)),
        }

    # --- checks -------------------------------------------------------------------------------

    def _check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise UserError(f"video must be [B, 3, T, H, W], got shape {tuple(video.shape)}")
        h, w = video.shape[3:]
        if h % self.spatial_factor or w % self.spatial_factor:
            raise UserError(f"frame size {h}x{w} must be a multiple of {self.spatial_factor} on both sides; "
                            "resize or crop")

    def _check_latents(self, latents: torch.Tensor) -> None:
        if latents.ndim != 5 or latents.shape[1] != self.latent_channels:
            raise UserError(f"latents must be [B, {self.latent_channels}, t, h, w], got {tuple(latents.shape)}")

    # --- the two halves, on frames ------------------------------------------------------------

    def _quantize_frames(self, images: torch.Tensor) -> QuantizerOutput:
        """[N, 3, H, W] -> VQ of the encoder's latent, [N, C, h, w] codes and [N, h, w] indices."""
        return self.quantizer(self.quant_conv(self.encoder(images)))

    def _decode_frames(self, zq: torch.Tensor, frames: int) -> torch.Tensor:
        """Codes [(b t), C, h, w] -> frames [(b t), 3, H, W] (not clamped); frames = t."""
        return self.decoder(self.post_quant_conv(zq), zq, frames)

    def _decode(self, latents: torch.Tensor) -> torch.Tensor:
        b, _, t = latents.shape[:3]
        frames = self._decode_frames(rearrange(latents, "b c t h w -> (b t) c h w"), t)
        return rearrange(frames, "(b t) c h w -> b c t h w", b=b)

    # --- public interface (vidtool.autoencoders) ----------------------------------------------

    def encode(self, video: torch.Tensor) -> EncoderOutput:
        """Video [B, 3, T, H, W] -> codes [B, C, T, H/f, W/f] and tokens [B, T, H/f, W/f], each frame
        encoded on its own. The latents are the codebook vectors of the tokens, exactly."""
        self._check_video(video)
        quantized = self._quantize_frames(rearrange(video, "b c t h w -> (b t) c h w"))
        tokens = rearrange(quantized.indices, "(b t) h w -> b t h w", b=video.shape[0])
        return EncoderOutput(latents=self.indices_to_latents(tokens), tokens=tokens)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Latents [B, C, T, h, w] (codes, or a generator's continuous latents) -> video [B, 3, T, fh, fw]
        in [-1, 1]. The temporal layers see the T frames of each clip together."""
        self._check_latents(latents)
        return self._decode(latents).clamp(-1, 1)

    def tokenize(self, video: torch.Tensor) -> torch.Tensor:
        return self.encode(video).tokens

    def indices_to_latents(self, tokens: torch.Tensor) -> torch.Tensor:
        """Tokens int64 [B, t, h, w] -> the code vectors the decoder takes, [B, C, t, h, w]."""
        return self.quantizer.indices_to_codes(tokens)

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.decode(self.indices_to_latents(tokens))

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        """Reconstruction of `video` through the codes (not clamped, as the loss sees it)."""
        return self._decode(self.encode(video).latents)

    # --- losses -------------------------------------------------------------------------------

    def training_losses(self, batch: dict, *, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        """Image stage: L1 + VQ terms on frames; video stage: L1 on the decoded clip (§4.3). "loss" is
        optimised; the other entries are detached."""
        video = batch["video"]
        self._check_video(video)
        if self.config.stage == "video":
            with torch.no_grad():  # frozen encoder and codebook
                latents = self.encode(video).latents
            rec = F.l1_loss(self._decode(latents), video)
            return {"loss": rec, "rec": rec.detach()}

        self._refuse_sharded_codebook_upkeep()
        images = self._sample_frames(video)
        quantized = self._quantize_frames(images)
        rec = F.l1_loss(self._decode_frames(quantized.quantized, 1), images)
        codebook, commit = quantized.losses["codebook"], quantized.losses["commit"]
        loss = rec + self.config.codebook_weight * codebook + self.config.commitment_weight * commit
        usage = torch.tensor(quantized.indices.unique().numel() / self.codebook_size, device=video.device)
        return {"loss": loss, "rec": rec.detach(), "codebook": codebook.detach(), "commit": commit.detach(),
                "codebook_usage": usage}

    def _refuse_sharded_codebook_upkeep(self) -> None:
        from torch.distributed.fsdp import FSDPModule

        upkeep = self.config.codebook_init != "normal" or self.config.dead_code_steps
        if upkeep and any(isinstance(module, FSDPModule) for module in self.modules()):
            # The quantizer rewrites the codebook in place during forward, where FSDP holds a gathered
            # copy of it: the sharded master weights would never see the new codes.
            raise UserError("codebook_init and dead_code_steps need the whole codebook on every rank; "
                            "train movq-temporal with --strategy ddp")

    def _sample_frames(self, video: torch.Tensor) -> torch.Tensor:
        """Clips [B, 3, T, H, W] -> images [B*k, 3, H, W]: k = image_frames distinct random frames per
        clip (all T when 0), since neighbouring frames teach a 2D autoencoder little that is new."""
        b, _, t = video.shape[:3]
        k = self.config.image_frames
        frames = rearrange(video, "b c t h w -> b t c h w")
        if 0 < k < t:
            chosen = torch.rand(b, t, device=video.device).argsort(dim=1)[:, :k]
            frames = frames[torch.arange(b, device=video.device)[:, None], chosen]
        return rearrange(frames, "b t c h w -> (b t) c h w")

    # --- image stage -> video stage -----------------------------------------------------------

    @classmethod
    def from_image_model(cls, image_model: "MoVQTemporal", **video_options) -> "MoVQTemporal":
        """The video-stage model (e.g. `temporal="conv3x3x3", temporal_attention=True`) built from a
        trained image-stage model: every 2D tensor is copied (a 2D kernel into the centre time tap of an
        inflated conv), every temporal layer starts at zero, so it decodes exactly as the image model."""
        if image_model.config.stage != "image":
            raise UserError("from_image_model takes an image-stage movq-temporal model; this one is already a video model")
        return cls.from_init(image_model, replace(image_model.config, stage="video", **video_options))

    @classmethod
    def from_init(cls, source: "MoVQTemporal", config: MoVQTemporalConfig) -> "MoVQTemporal":
        """A model of `config` starting from `source`'s weights (`vidtool train-vae --init`): image
        stage -> video stage, or a video model trained further (e.g. finetune "temporal" -> "decoder").
        Tensors `source` lacks must be temporal layers, which keep their zero initialisation."""
        model = cls(config)
        own, theirs = model.state_dict(), source.state_dict()
        for key, value in theirs.items():
            inflated = key in own and own[key].ndim == 5 and value.ndim == 4 and own[key].shape[-2:] == value.shape[-2:]
            if key in own and (own[key].shape == value.shape or inflated):
                continue
            if is_temporal(key) or key not in own:
                raise UserError(f"the initial model's temporal layers do not fit this config (at {key}); "
                                "start from the image-stage model instead")
            raise UserError(f"{key} is {tuple(value.shape)} in the initial model but {tuple(own[key].shape)} here; "
                            "keep its channels, channel_multipliers, layers_per_block, latent_channels and codebook_size")
        untrained = [key for key in own if key not in theirs and not is_temporal(key)]
        if untrained:
            raise UserError(f"the initial model lacks {untrained[0]} and {len(untrained) - 1} more 2D tensors; "
                            "is it a movq-temporal model?")
        with torch.no_grad():
            for key, value in theirs.items():
                if own[key].ndim == 5 and value.ndim == 4:  # conv2d_to_3d: the 2D kernel -> centre time tap
                    own[key].zero_()
                    own[key][:, :, 1] = value
                else:
                    own[key].copy_(value)
        return model


def count_parameters(config: MoVQTemporalConfig) -> dict[str, int]:
    """Parameter counts without allocating (meta device). `added_by_video` is the decoder's growth
    over the image decoder of the same shape: the temporal layers, or the extra taps of conv2d_to_3d."""
    image_config = replace(config, stage="image", temporal="none", temporal_attention=False)
    with torch.device("meta"):
        counts = MoVQTemporal(config).parameter_counts()
        image_decoder = MoVQTemporal(image_config).parameter_counts()["decoder"]
    return {**counts, "added_by_video": counts["decoder"] - image_decoder}


__all__ = ["MoVQTemporal", "MoVQTemporalConfig", "PAPER_VARIANTS", "count_parameters", "preset"]
