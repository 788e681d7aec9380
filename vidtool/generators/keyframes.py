"""FusionFrames keyframe generation (§4.1, Fig. 3): a frozen text-to-image U-Net plus trainable
temporal components that make it denoise the T keyframes of a clip jointly.

    noisy keyframes [B, C, T, h, w] -> frames as images [(B T), C, h, w] -> the T2I U-Net, where
        "conv1d_attn1d_blocks"  a Temporal Conv1D Block after each spatial ResNet block and a
                                Temporal Attn1D Block after each spatial attention block (default)
        "conv1d_attn3d_blocks"  the same with Attn3D blocks: attention over 2x2 positions x T frames
        "conv3d_attn1d_blocks"  Temporal Conv3D Blocks (with down/up Linear projections) instead
        "conv1d_attn1d_layers"  the mixed baseline: a temporal conv after each spatial conv inside
                                the ResNet blocks and temporal attention after each spatial
                                self-attention inside the transformer blocks (Fig. 3 left)
    -> epsilon [B, C, T, h, w]

The U-Net stays a plain diffusers module with unchanged weights: the temporal modules live in
`self.temporal` and are attached with forward hooks that regroup a spatial module's output
[(B T), ...] into clips, apply the temporal module and hand the result on. The hooks act only
inside `KeyframeModel.predict`; the same U-Net called on its own is the T2I model. Each temporal
module's output projection starts at zero, so at initialisation the keyframe model predicts
exactly what the T2I model predicts for each frame.

Frame positions. Keyframes are taken from a clip every `frame_skip` frames (§5: 2 fps keyframes
from 8 fps clips here, skip 4; the paper: skip 12 from ~24 fps video), and "positions of sampled
frames were encoded by a table of positional embeddings" (§5). A keyframe's position is its
distance in source frames from the first keyframe (0, s, 2s, ...), so a table row means the same
time offset whichever frame the clip starts at. The embeddings are added to the temporal attention
blocks' input (each block projects the shared table row to its width), not to the U-Net's time
embedding: the time embedding feeds the frozen spatial ResNets, which would then see inputs they
were never trained on and mix position into every frame's appearance; and attention is the one
temporal operation that cannot tell frame order by itself (a convolution's kernel can).

Training (§5): clips keep the frozen base's noise schedule; one timestep per clip, epsilon loss on
all keyframes jointly, prompts dropped for classifier-free guidance, only temporal parts trained.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from vidtool.diffusion.noise import frame_noise_like
from vidtool.diffusion.schedulers import diffusion_pair
from vidtool.errors import UserError
from vidtool.generators.t2i import T2IConfig, T2IModel, base_config, drop_conditions, text_length
from vidtool.nn.temporal_blocks import (TemporalAttention, TemporalConv3dBlock, TemporalConvBlock, TemporalConvLayer,
                                        sinusoidal_table)


@dataclass(frozen=True)
class Variant:
    conv: str  # "conv1d" (3x1x1) or "conv3d" (3x3x3 with Linear projections)
    attention_window: int  # 1: Attn1D; 2: Attn3D over 2x2 x T windows
    inside_blocks: bool  # the mixed-layers baseline instead of separate blocks


TEMPORAL_VARIANTS: dict[str, Variant] = {
    "conv1d_attn1d_blocks": Variant("conv1d", 1, False),
    "conv1d_attn3d_blocks": Variant("conv1d", 2, False),
    "conv3d_attn1d_blocks": Variant("conv3d", 1, False),
    "conv1d_attn1d_layers": Variant("conv1d", 1, True),
}


@dataclass
class KeyframeConfig:
    base: T2IConfig = field(default_factory=T2IConfig)  # the frozen T2I model's config (from its folder)
    temporal: str = "conv1d_attn1d_blocks"  # one of TEMPORAL_VARIANTS
    keyframes: int = 4  # keyframes per training clip (T)
    frame_skip: int = 4  # source frames between keyframes
    clip_fps: float = 8.0  # frame rate of the training clips; keyframes come at clip_fps / frame_skip
    position_dim: int = 64  # width of the frame-position table
    max_position: int = 64  # rows of the table: keyframe positions (in source frames) must stay below
    conv3d_reduction: int = 3  # Conv3D blocks run at about channels / reduction (see reduced_width)
    cond_dropout: float = 0.1  # prompts replaced by the empty prompt in training, for CFG
    # Also train the base's text cross-attention (attn2). FusionFrames freezes the whole T2I U-Net (the
    # paper preset keeps it so); the tiny base, trained on still frames, learned to read nothing of a
    # direction word, and its temporal blocks take no text, so the tiny recipe lets the video model
    # re-learn what the prompt's tokens say (issue 31; benchmarks/direction_diagnostics.py overfit).
    train_cross_attention: bool = False
    # PYoCo's mixed noise prior (vidtool.diffusion.noise.correlate_frames): the keyframes' noise shares
    # this fraction of its variance, in training and in sampling. FusionFrames draws frames
    # independently (0, the paper presets). Sampling applies it to the starting noise; the per-step noise
    # of a stochastic sampler (ddpm) is drawn per frame. The tiny model card has what it measured.
    noise_correlation: float = 0.0

    def __post_init__(self):
        self.base = base_config(self.base)  # config.json holds the nested dataclass as a mapping
        if self.temporal not in TEMPORAL_VARIANTS:
            raise ValueError(f"temporal must be one of {', '.join(TEMPORAL_VARIANTS)}, got {self.temporal!r}")
        if self.keyframes < 1 or self.frame_skip < 1:
            raise ValueError(f"keyframes and frame_skip must be >= 1, got {self.keyframes} and {self.frame_skip}")
        if not 0.0 <= self.noise_correlation < 1.0:
            raise ValueError(f"noise_correlation must be in [0, 1), got {self.noise_correlation}")
        if (self.keyframes - 1) * self.frame_skip >= self.max_position:
            raise ValueError(f"{self.keyframes} keyframes {self.frame_skip} frames apart reach position "
                             f"{(self.keyframes - 1) * self.frame_skip}; raise max_position above it")

    @property
    def span(self) -> int:
        """Source frames a training clip must hold: first to last keyframe."""
        return (self.keyframes - 1) * self.frame_skip + 1


def preset(name: str, **overrides) -> KeyframeConfig:
    """`tiny`: 4 keyframes at 2 fps from the 16-frame 8 fps tiny latent clips (skip 4).
    `paper`: §5's sampling, 16 keyframes at 2 fps from ~24 fps video (skip 12)."""
    presets = {
        "tiny": KeyframeConfig(),
        "paper": KeyframeConfig(keyframes=16, frame_skip=12, clip_fps=24.0, position_dim=320, max_position=192),
    }
    if name not in presets:
        raise ValueError(f"unknown keyframes preset {name!r}; known: {', '.join(presets)}")
    return dataclasses.replace(presets[name], **overrides)


@dataclass
class _Clip:
    frames: int  # T: the U-Net's batch is (B T) frames
    positions: torch.Tensor  # [B, T, position_dim] frame-position embeddings


class KeyframeModel(nn.Module):
    family = "keyframes"
    config_class = KeyframeConfig

    def __init__(self, config: KeyframeConfig):
        super().__init__()
        self.config = config
        self.base = T2IModel(config.base).requires_grad_(False)
        if config.train_cross_attention:
            for name, parameter in self.base.unet.named_parameters():
                parameter.requires_grad_(".attn2." in name)
        self.frame_positions = nn.Embedding(config.max_position, config.position_dim)
        with torch.no_grad():
            self.frame_positions.weight.copy_(sinusoidal_table(config.max_position, config.position_dim))
        self.temporal = nn.ModuleDict()
        self._clip: _Clip | None = None
        self._attach(TEMPORAL_VARIANTS[config.temporal])

    # --- wiring -------------------------------------------------------------------------------

    def _attach(self, variant: Variant) -> None:
        """Create a temporal module for every spatial site of the U-Net and hook it in after it."""
        from diffusers.models.attention import BasicTransformerBlock
        from diffusers.models.resnet import ResnetBlock2D
        from diffusers.models.transformers.transformer_2d import Transformer2DModel

        base = self.config.base
        groups, head_dim = base.norm_num_groups, base.attention_head_dim

        def attention(channels: int, window: int) -> TemporalAttention:
            return TemporalAttention(channels, heads=max(1, channels // head_dim),
                                     position_dim=self.config.position_dim, window=window)

        if base.unet_class == "Kandinsky3UNet":
            self._attach_kandinsky3(variant, attention)
            return
        for name, module in list(self.base.unet.named_modules()):
            if variant.inside_blocks and isinstance(module, ResnetBlock2D):
                for conv in ("conv1", "conv2"):
                    layer = getattr(module, conv)
                    self._hook(f"{name}.{conv}", layer, TemporalConvLayer(layer.out_channels, groups=groups), "images")
            elif variant.inside_blocks and isinstance(module, BasicTransformerBlock):
                width = module.attn1.to_out[0].out_features
                self._hook(f"{name}.attn1", module.attn1, attention(width, 1), "tokens")
            elif isinstance(module, ResnetBlock2D):
                channels = module.out_channels
                block = (TemporalConvBlock(channels, groups=groups) if variant.conv == "conv1d" else
                         TemporalConv3dBlock(channels, groups=groups, reduction=self.config.conv3d_reduction))
                self._hook(name, module, block, "images")
            elif not variant.inside_blocks and isinstance(module, Transformer2DModel):
                self._hook(name, module, attention(module.out_channels, variant.attention_window), "images")

    def _attach_kandinsky3(self, variant: Variant, attention) -> None:
        """The same sites in a Kandinsky3UNet (FusionFrames' own base, §4.1): a temporal conv block after
        each Kandinsky3ResNetBlock, a temporal attention block after each Kandinsky3AttentionBlock
        (the self-attention block of a level and the text cross-attention block after each of its
        ResNet blocks' first half; attention pooling of the text is no spatial site). The mixed-layers
        baseline puts a temporal conv after each 3x3 spatial conv inside the ResNet blocks
        (Kandinsky3Block.projection; the 1x1 ones only mix channels) and temporal attention after the
        self-attention of each self-attention block."""
        from diffusers.models.unets.unet_kandinsky3 import (Kandinsky3AttentionBlock, Kandinsky3Block,
                                                            Kandinsky3ResNetBlock)

        groups = self.config.base.norm_num_groups
        for name, module in list(self.base.unet.named_modules()):
            if variant.inside_blocks and isinstance(module, Kandinsky3Block):
                conv = module.projection
                if conv.kernel_size != (1, 1):
                    self._hook(f"{name}.projection", conv, TemporalConvLayer(conv.out_channels, groups=groups), "images")
            elif variant.inside_blocks and isinstance(module, Kandinsky3AttentionBlock):
                if name.endswith("attentions.0"):  # a level's self-attention block (the others read text)
                    width = module.attention.to_out[0].out_features
                    self._hook(f"{name}.attention", module.attention, attention(width, 1), "tokens")
            elif variant.inside_blocks:
                continue
            elif isinstance(module, Kandinsky3ResNetBlock):
                channels = module.resnet_blocks[-1].projection.out_channels
                block = (TemporalConvBlock(channels, groups=groups) if variant.conv == "conv1d" else
                         TemporalConv3dBlock(channels, groups=groups, reduction=self.config.conv3d_reduction))
                self._hook(name, module, block, "images")
            elif isinstance(module, Kandinsky3AttentionBlock):
                channels = module.attention.to_out[0].out_features
                self._hook(name, module, attention(channels, variant.attention_window), "images")

    def _hook(self, site: str, spatial: nn.Module, temporal: nn.Module, layout: str) -> None:
        key = site.replace(".", "-")  # ModuleDict keys may not contain dots
        self.temporal[key] = temporal
        spatial.register_forward_hook(functools.partial(self._after_spatial, key, layout))

    def _after_spatial(self, key: str, layout: str, module: nn.Module, args: tuple, output):
        """Forward hook: the spatial module's output, regrouped per clip, through its temporal module.

        `layout` "images": [(B T), C, h, w] (ResNet blocks, convs, Transformer2DModel, which returns
        a tuple); "tokens": [(B T), h*w, C] (a transformer block's self-attention)."""
        clip = self._clip
        if clip is None:  # the U-Net used on its own: the T2I model
            return output
        frames = output[0] if isinstance(output, tuple) else output
        temporal = self.temporal[key]
        if layout == "tokens":  # position order is irrelevant to Attn1D, so n stands in for (h w)
            x = rearrange(frames, "(b t) n c -> b c t n 1", t=clip.frames)
        else:
            x = rearrange(frames, "(b t) c h w -> b c t h w", t=clip.frames)
        x = temporal(x, clip.positions) if isinstance(temporal, TemporalAttention) else temporal(x)
        if layout == "tokens":
            x = rearrange(x, "b c t n 1 -> (b t) n c")
        else:
            x = rearrange(x, "b c t h w -> (b t) c h w")
        # The regrouping can leave a permuted memory layout, and the next spatial layers pick their
        # kernels (and so their rounding) by layout: hand on the layout the U-Net alone would see.
        x = x.contiguous()
        return (x, *output[1:]) if isinstance(output, tuple) else x

    @contextlib.contextmanager
    def _clips_of(self, clip: "_Clip | None") -> Iterator[None]:
        """The clip the temporal hooks work on, for the duration (the previous one after)."""
        saved, self._clip = self._clip, clip
        try:
            yield
        finally:
            self._clip = saved

    def checkpoint_state(self):
        """The clip of the current call, for activation checkpointing's recomputation of the frozen
        U-Net's blocks (vidtool.train.parallel), which runs after `predict` has returned."""
        return self._clips_of(self._clip)

    # --- prediction ---------------------------------------------------------------------------

    def positions(self, frames: int) -> torch.Tensor:
        """Positions [T] of `frames` keyframes `frame_skip` source frames apart, from the first."""
        last = (frames - 1) * self.config.frame_skip
        if last >= self.config.max_position:
            raise UserError(f"{frames} keyframes {self.config.frame_skip} frames apart reach position {last}, past "
                            f"this model's table of {self.config.max_position}; ask for at most "
                            f"{(self.config.max_position - 1) // self.config.frame_skip + 1} frames")
        return torch.arange(frames, device=self.frame_positions.weight.device) * self.config.frame_skip

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor | None = None, positions: torch.Tensor | None = None,
                text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Keyframes [B, C, T, h, w] at `timesteps` [B] (one per clip) -> epsilon [B, C, T, h, w].

        `positions`: [T] or [B, T] keyframe positions in source frames (default 0, s, 2s, ...).
        `text_embeds` [B, P]: the pooled text embeddings an SDXL base takes."""
        b, _, t = noisy.shape[:3]
        positions = self.positions(t) if positions is None else positions
        embedded = self.frame_positions(positions.expand(b, t))
        frames = rearrange(noisy, "b c t h w -> (b t) c h w")
        text = repeat(text, "b l d -> (b t) l d", t=t)
        text_mask = None if text_mask is None else repeat(text_mask, "b l -> (b t) l", t=t)
        pooled = None if text_embeds is None else repeat(text_embeds, "b p -> (b t) p", t=t)
        with self._clips_of(_Clip(t, embedded)):
            out = self.base.predict(frames, repeat(timesteps, "b -> (b t)", t=t), text, text_mask, frames=t,
                                    text_embeds=pooled)
        return rearrange(out, "(b t) c h w -> b c t h w", t=t)

    @property
    def latent_multiple(self) -> int:
        """What latent sides must be multiples of: Attn3D's 2x2 windows tile the feature map of every
        U-Net level with attention, down to the last, 2**(levels - 1) times smaller; Attn1D takes any."""
        window = TEMPORAL_VARIANTS[self.config.temporal].attention_window
        return 1 if window == 1 else window * 2 ** (len(self.config.base.block_out_channels) - 1)

    @property
    def fps(self) -> float:
        """Frame rate of the keyframes `generate` returns."""
        return self.config.clip_fps / self.config.frame_skip

    # --- training -----------------------------------------------------------------------------

    def training_losses(self, batch: dict, *, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        """Epsilon MSE on `keyframes` frames of each clip, `frame_skip` apart from a random start."""
        keyframes = sample_keyframes(batch["latents"], self.config.keyframes, self.config.frame_skip)
        text, mask, pooled = drop_conditions(batch, self.config.cond_dropout)
        noise = frame_noise_like(keyframes, self.config.noise_correlation)
        noisy, timesteps, target = diffusion_pair(self.config.base.schedule, keyframes, noise=noise)
        return {"loss": F.mse_loss(self.predict(noisy, timesteps, text, mask, text_embeds=pooled), target)}

def sample_keyframes(latents: torch.Tensor, count: int, skip: int) -> torch.Tensor:
    """`count` frames `skip` apart from each clip [B, C, T, h, w], from a random start per clip
    (§5: "randomly choosing the first frame position and the positions of the next frames with the
    skip") -> [B, C, count, h, w]."""
    b, _, t = latents.shape[:3]
    span = (count - 1) * skip + 1
    if span > t:
        raise UserError(f"{count} keyframes {skip} frames apart need clips of {span} frames; the data has {t} "
                        "(lower keyframes/frame_skip or build the latent set with more frames)")
    start = torch.randint(0, t - span + 1, (b, 1))
    index = (start + skip * torch.arange(count)).to(latents.device)  # [B, count]
    return torch.stack([latents[i, :, index[i]] for i in range(b)])


def build(preset_name: str, overrides: dict, base: T2IModel | None, data) -> KeyframeModel:
    """The trainer's entry (vidtool.generators.build): the frozen T2I model's config and weights
    go in whole; the clip geometry of the latent set is checked against the keyframe sampling."""
    if base is None:
        raise UserError("keyframes extends a trained text-to-image model: pass --base DIR (a t2i model folder)")
    config = preset(preset_name, **overrides)
    text_length(data, base.config.text_max_length, "the base t2i model")
    config.base = dataclasses.replace(base.config)
    if config.span > data.frames:
        raise ValueError(f"{config.keyframes} keyframes {config.frame_skip} frames apart need clips of "
                         f"{config.span} frames; the latent set has {data.frames}")
    model = KeyframeModel(config)
    model.base.load_state_dict(base.state_dict())
    return model
