"""LaMD's diffusion-based motion generator, DMG (LaMD §3.2, §4.3.3, Table 2).

A DDPM (Eq. 3-6: T = 1000 steps, linear β schedule, ε-prediction, L_simple) over the motion
latent z_m [B, d, h, w] of a frozen MCD-VAE. z_m has no time axis (r_t = L), so ε_θ is a 2D U-Net
(diffusers' `UNet2DConditionModel`, LDM-style) whatever the clip length. Conditions y, as
cross-attention tokens concatenated along the sequence (§4.3.3):

    content  f_x0 [B, d', h, w] from the MCD-VAE's image encoder -> h·w tokens (linear + learned
             positions): always given, the motion must fit the image
    text     token embeddings [B, L, D] of a text encoder -> linear to the conditioning width
    label    a class id -> one embedding token (id `num_classes` is "no class")

With `cond_transformer_layers` > 0 the concatenated tokens pass through a transformer encoder of the
conditioning width first (Table 2's "conditioning transformer dimension", used for class and text).
`concat_content` (not in the paper; on in `tiny`) also stacks f_x0 onto the U-Net's input channels,
which gives the small model the image's layout without having to learn it through attention.

Text and label are dropped together with probability `cond_dropout` in training, so sampling can
use classifier-free guidance (`guidance_scale`, 1 = none). Sampling runs DDPM's reverse process on a
K-step subsequence of the T steps (§3.2, Nichol & Dhariwal 2021; K = 200 in Table 2) through
diffusers' DDPMScheduler with respaced timesteps; DDIM is available too.

Batches (vidtool.data.motion_latents): "motion" [B, d, h, w] (z_m times `latent_scale`), "content"
[B, d', h, w], "text" [B, L, D], "text_mask" [B, L], "null_text", "null_mask", and "label" [B] when
the set has labels.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidtool.diffusion.schedulers import NoiseSchedule, diffusion_pair
from vidtool.errors import UserError
from vidtool.generators.t2i import schedule_from_dict
from vidtool.nn.params import parameter_count


def ddpm_linear() -> NoiseSchedule:
    """Table 2: 1000 diffusion steps, linear schedule (DDPM's β from 1e-4 to 0.02)."""
    return NoiseSchedule(train_timesteps=1000, beta_start=1e-4, beta_end=0.02, beta_schedule="linear")


@dataclass
class DMGConfig:
    # The motion latent and the content latent, as the MCD-VAE makes them.
    motion_channels: int = 3  # d
    sample_size: int = 16  # h = w
    content_channels: int = 4  # d'
    frames: int = 16  # L of the decoded clip (for the record: the U-Net has no time axis)
    image_size: int = 64
    fps: float = 8.0  # rate of the training clips: generated motion plays at it
    # The 2D U-Net (Table 2: base 192, multipliers 1,2,4, 2 blocks, attention at every resolution).
    block_out_channels: tuple[int, ...] = (192, 384, 768)
    layers_per_block: int = 2
    attention_head_dim: int = 8  # diffusers reads this as the number of heads
    norm_num_groups: int = 32
    dropout: float = 0.2
    # Conditioning (Table 2: embedding dimension 512, conditioning transformer 512).
    cross_attention_dim: int = 512
    cond_transformer_layers: int = 0
    cond_transformer_heads: int = 8
    text_dim: int | None = None  # width of the text encoder's tokens; None: no text
    text_encoder: str = "all-MiniLM-L6-v2"
    text_max_length: int = 32
    num_classes: int = 0  # 0: no class labels
    concat_content: bool = False
    cond_dropout: float = 0.1
    guidance_scale: float = 1.0
    # Diffusion.
    schedule: NoiseSchedule = field(default_factory=ddpm_linear)
    sampling_steps: int = 200  # K
    latent_scale: float = 1.0  # z_m is multiplied by this before diffusion (unit variance)
    vae: str = ""  # "mcd-vae@digest" whose motion space this is

    def __post_init__(self):
        self.schedule = schedule_from_dict(self.schedule)  # config.json holds it as a mapping
        if any(w % self.norm_num_groups for w in self.block_out_channels):
            raise ValueError(f"block_out_channels {self.block_out_channels} must be multiples of "
                             f"norm_num_groups={self.norm_num_groups}")
        if self.sample_size % 2 ** (len(self.block_out_channels) - 1):
            raise ValueError(f"sample_size {self.sample_size} must be divisible by "
                             f"{2 ** (len(self.block_out_channels) - 1)} ({len(self.block_out_channels)} levels)")

    def unet_kwargs(self) -> dict:
        levels = len(self.block_out_channels)
        in_channels = self.motion_channels + (self.content_channels if self.concat_content else 0)
        return dict(sample_size=self.sample_size, in_channels=in_channels, out_channels=self.motion_channels,
                    block_out_channels=tuple(self.block_out_channels),
                    down_block_types=("CrossAttnDownBlock2D",) * levels, up_block_types=("CrossAttnUpBlock2D",) * levels,
                    layers_per_block=self.layers_per_block, attention_head_dim=self.attention_head_dim,
                    cross_attention_dim=self.cross_attention_dim, norm_num_groups=self.norm_num_groups,
                    dropout=self.dropout)


PAPER = {
    # Table 2. BAIR and Landscape: image only (241M); NATOPS and MUG: class labels, CATER-GEN-v2: text,
    # both through the conditioning transformer (282M). Its depth is not given: 13 layers of width 512
    # (3.15M each) make the gap between the two counts (41M).
    "bair": dict(sample_size=16),
    "landscape": dict(sample_size=32),
    "natops": dict(sample_size=32, num_classes=24, cond_transformer_layers=13),
    "mug": dict(sample_size=32, num_classes=6, cond_transformer_layers=13),
    "cater": dict(sample_size=32, text_dim=768, cond_transformer_layers=13),
}


def preset(name: str, **overrides) -> DMGConfig:
    """`tiny`: 8x8x4 motion latents of the tiny MCD-VAE, widths 64/128, MiniLM text (384-d); 4.35M.
    Paper presets from Table 2: `bair` / `landscape` 224.3M / 224.7M here (241M there), `natops` /
    `mug` / `cater` 265.7M / 265.7M / 266.1M (282M there), by `count_parameters`."""
    if name == "tiny":
        config = DMGConfig(motion_channels=4, sample_size=8, content_channels=8, frames=8, image_size=64,
                           block_out_channels=(64, 128), layers_per_block=1, attention_head_dim=4, norm_num_groups=16,
                           dropout=0.0, cross_attention_dim=128, text_dim=384, concat_content=True,
                           guidance_scale=2.0)
    elif name in PAPER:
        config = DMGConfig(**PAPER[name])
    else:
        raise ValueError(f"unknown dmg preset {name!r}; known: tiny, {', '.join(PAPER)}")
    return dataclasses.replace(config, **overrides)


class DMGModel(nn.Module):
    family = "dmg"
    config_class = DMGConfig

    def __init__(self, config: DMGConfig):
        super().__init__()
        from diffusers import UNet2DConditionModel

        self.config = config
        width = config.cross_attention_dim
        self.unet = UNet2DConditionModel(**config.unet_kwargs())
        self.content_proj = nn.Linear(config.content_channels, width)
        self.content_pos = nn.Parameter(torch.randn(config.sample_size ** 2, width) * 0.02)
        self.text_proj = nn.Linear(config.text_dim, width) if config.text_dim else None
        self.label_embed = nn.Embedding(config.num_classes + 1, width) if config.num_classes else None
        self.cond_transformer = None
        if config.cond_transformer_layers:
            layer = nn.TransformerEncoderLayer(width, config.cond_transformer_heads, 4 * width, dropout=0.0,
                                               activation="gelu", batch_first=True, norm_first=True)
            self.cond_transformer = nn.TransformerEncoder(layer, config.cond_transformer_layers, enable_nested_tensor=False)

    def parameter_counts(self) -> dict[str, int]:
        conditioning = parameter_count(self.content_proj, self.text_proj, self.label_embed, self.cond_transformer)
        return {"unet": parameter_count(self.unet), "conditioning": conditioning + self.content_pos.numel(),
                "total": parameter_count(self)}

    # --- conditions -----------------------------------------------------------------------------

    def check_inputs(self, content: torch.Tensor, text: torch.Tensor | None, label: torch.Tensor | None) -> None:
        c = self.config
        if content.ndim != 4 or tuple(content.shape[1:]) != (c.content_channels, c.sample_size, c.sample_size):
            raise UserError(f"content latent must be [B, {c.content_channels}, {c.sample_size}, {c.sample_size}], got "
                            f"{tuple(content.shape)}; use the mcd-vae this dmg was trained with ({c.vae})")
        if text is not None and (self.text_proj is None or text.shape[-1] != c.text_dim):
            need = "no text (it was trained without)" if self.text_proj is None else f"{c.text_dim}-d text tokens"
            raise UserError(f"this dmg takes {need}, got text of shape {tuple(text.shape)}")
        if label is not None:
            if self.label_embed is None:
                raise UserError("this dmg was trained without class labels; drop --label")
            if int(label.min()) < 0 or int(label.max()) > c.num_classes:
                raise UserError(f"class labels must lie in [0, {c.num_classes - 1}], got {label.tolist()}")

    def condition(self, content: torch.Tensor, text: torch.Tensor | None = None, text_mask: torch.Tensor | None = None,
                  label: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """y as cross-attention tokens [B, S, width] and their mask [B, S] (§4.3.3: concatenated)."""
        b = content.shape[0]
        tokens = [self.content_proj(rearrange(content, "b c h w -> b (h w) c")) + self.content_pos]
        masks = [torch.ones(b, tokens[0].shape[1], dtype=torch.bool, device=content.device)]
        if self.text_proj is not None and text is not None:
            tokens.append(self.text_proj(text))
            masks.append(text_mask.bool() if text_mask is not None else
                         torch.ones(text.shape[:2], dtype=torch.bool, device=text.device))
        if self.label_embed is not None:
            if label is None:
                label = torch.full((b,), self.config.num_classes, dtype=torch.long, device=content.device)
            tokens.append(self.label_embed(label)[:, None])
            masks.append(torch.ones(b, 1, dtype=torch.bool, device=content.device))
        tokens, mask = torch.cat(tokens, dim=1), torch.cat(masks, dim=1)
        if self.cond_transformer is not None:
            tokens = self.cond_transformer(tokens, src_key_padding_mask=~mask)
        return tokens, mask

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, content: torch.Tensor, tokens: torch.Tensor,
                mask: torch.Tensor) -> torch.Tensor:
        """ε_θ(z_m^t, t, y) for noisy motion latents [B, d, h, w]."""
        x = torch.cat([noisy, content], dim=1) if self.config.concat_content else noisy
        return self.unet(x, timesteps, encoder_hidden_states=tokens, encoder_attention_mask=mask.to(noisy.dtype)).sample

    # --- training (Eq. 6) -----------------------------------------------------------------------

    def training_losses(self, batch: dict, *, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        """L_simple = ||ε − ε_θ(z_m^t, t, y)||² with text and label dropped together for CFG."""
        motion, content = batch["motion"], batch["content"]
        text = mask = label = None
        drop = torch.rand(motion.shape[0]) < self.config.cond_dropout
        if self.text_proj is not None:
            text, mask, d = batch["text"], batch["text_mask"], drop.to(motion.device)
            null_text = batch["null_text"][0] if batch["null_text"].dim() == 3 else batch["null_text"]
            null_mask = batch["null_mask"][0] if batch["null_mask"].dim() == 2 else batch["null_mask"]
            text = torch.where(d[:, None, None], null_text.to(text.dtype), text)
            mask = torch.where(d[:, None], null_mask, mask)
        if self.label_embed is not None and "label" in batch:
            label = torch.where(drop.to(motion.device), self.config.num_classes, batch["label"])
        tokens, token_mask = self.condition(content, text, mask, label)
        noisy, timesteps, target = diffusion_pair(self.config.schedule, motion)
        loss = F.mse_loss(self.predict(noisy, timesteps, content, tokens, token_mask), target)
        return {"loss": loss}

def build(preset_name: str, overrides: dict, base, data) -> DMGModel:
    """The trainer's entry (vidtool.generators.build): geometry, scale and the VAE tag come from the
    motion-latent set (vidtool.data.motion_latents.MotionSetInfo)."""
    if base is not None:
        raise ValueError("dmg is trained from scratch on an mcd-vae's motion latents; it takes no --base")
    config = preset(preset_name, **overrides)
    config = dataclasses.replace(
        config, motion_channels=data.motion_channels, sample_size=data.sample_size,
        content_channels=data.content_channels, frames=data.frames, image_size=data.size, fps=data.fps or config.fps,
        latent_scale=1.0 / data.latent_std, vae=data.vae, text_encoder=data.text_encoder,
        text_dim=data.text_dim if config.text_dim is not None else None, num_classes=data.num_classes or config.num_classes)
    return DMGModel(config)


def count_parameters(config: DMGConfig) -> dict[str, int]:
    with torch.device("meta"):
        return DMGModel(config).parameter_counts()


__all__ = ["DMGConfig", "DMGModel", "build", "count_parameters", "ddpm_linear", "preset"]
