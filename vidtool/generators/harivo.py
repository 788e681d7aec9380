"""HARIVO (Kwon et al.): a text-to-video model made from a frozen text-to-image U-Net (paper §3).

The T2I model (vidtool.generators.t2i) stays bit-identical and frozen. Trained around it:
- temporal layers l_theta after every spatial transformer of the U-Net (§3.1), attached with
  forward hooks so the base keeps its own parameter names and stays loadable as it is;
- the mapping network l_theta^M in front of the U-Net, applied to its input x_t at every timestep,
  in training and sampling, in the video path and in the T2I path of L_reg (§3.2, Fig. 3a, App. C);
- the frame-wise token generator t_theta: K tokens per frame appended to the text tokens (§3.5);
- the projection head g_theta of the h-space contrastive loss (§3.4), used only in training.

Losses (Eq. 5): L_simple + lambda_TRS L_TRS + lambda_reg L_reg + lambda_DC L_DC. Each norm of the
paper is taken as the mean over its elements, as L_simple's is (F.mse_loss), so the lambdas weigh
terms of comparable size at any resolution.

Sampling: DDIM, 25 steps, the CFG schedule of App. D and mitigating-gradient guidance
(Algorithm 1, alpha = 40) in vidtool.diffusion.mitigating.

The negative queue of L_DC is a persistent buffer: it is saved with the weights and in the training
state, so a resumed run continues with the same queue and training stays exactly resumable.
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
from torch.utils.checkpoint import checkpoint

from vidtool.diffusion.schedulers import NoiseSchedule, diffusion_pair
from vidtool.generators.t2i import T2IConfig, T2IModel, base_config, drop_conditions, text_length
from vidtool.nn.harivo_blocks import (FrameTokenGenerator, MappingNetwork, ProjectionHead, TemporalLayer,
                                      with_frame_tokens)
from vidtool.nn.params import parameter_count


@dataclass
class HarivoConfig:
    base: T2IConfig = field(default_factory=T2IConfig)  # the frozen T2I model's config (from --base)
    frames: int = 16  # F: frames per clip in training; the token generator makes tokens for this many
    clip_fps: float = 8.0  # frame rate of the training clips, and so of the generated videos
    # Guidance when the caller gives none: None = App. D's schedule (12.5 early, then 7.5); a number
    # = that constant scale. The tiny preset sets 3: App. D's scales, made for a Stable Diffusion
    # base, push the tiny 8x8 base to black frames (24 alignment prompts: 0% colour hits vs 62.5% at 3).
    sampling_cfg: float | None = None
    frame_tokens: int = 3  # K (§3.5); 0 turns the frame-wise token generator off
    temporal_head_dim: int = 32  # temporal layers: channels // head_dim heads
    temporal_ff_mult: int = 2
    mapping_hidden: int = 32  # mapping network: 3D-conv width and attention shape
    mapping_heads: int = 2
    mapping_head_dim: int = 16
    lambda_trs: float = 0.1  # Eq. 5 weights, §4 "Configuration"
    lambda_reg: float = 0.1
    lambda_dc: float = 0.1
    dc_temperature: float = 0.1  # tau of Eq. 4
    dc_queue_size: int = 256  # negatives kept from earlier steps (projected positives)

    # The latent space and noise schedule are the base's, so stages can treat every generator alike.
    @property
    def vae(self) -> str:
        return self.base.vae

    @property
    def latent_scale(self) -> float:
        return self.base.latent_scale

    @property
    def schedule(self) -> NoiseSchedule:
        return self.base.schedule


def preset(name: str, **overrides) -> HarivoConfig:
    """`tiny`: 16 frames, the length of the tiny latent clips (2 s at 8 fps), so training sees whole
    clips and MG sampling's kernel width (median over 15 frame pairs, log 15) is well defined; on the
    tiny 8x8 base U-Net about 1.3M trainable parameters, trains on CPU."""
    if name != "tiny":
        raise ValueError(f"unknown harivo preset {name!r}; known: tiny")
    return dataclasses.replace(HarivoConfig(sampling_cfg=3.0), **overrides)


@dataclass
class Recording:
    """What the hooks collect during one recorded U-Net pass, for L_TRS and L_DC."""

    # Per decoder self-attention layer, in order: Eq. 3's inner term, mean |A^(j) - A^(j-1)| for
    # frames j = 2..F [F-1], computed from q and k without keeping the maps (`attention_change`).
    attention_change: list[torch.Tensor] = field(default_factory=list)
    h: torch.Tensor | None = None  # h-space: the U-Net mid-block output [(B F), c, h', w']


def attention_change(q: torch.Tensor, k: torch.Tensor, scale: float, frames: int,
                     chunk: int = 1024) -> torch.Tensor:
    """Eq. 3's per-layer term from queries and keys [(B F), heads, n, d]: the mean over clips,
    heads, queries and keys of |A^(j) - A^(j-1)|, A = softmax(q k^T scale), for each frame j >= 2
    -> [F-1]. The maps are never all held: `chunk` queries at a time, each chunk recomputed in the
    backward pass (at 16 frames of 64x64 latents a layer's maps alone are 16 x heads x 4096^2)."""
    n, heads, length = q.shape[:3]
    total = sum(checkpoint(_change_sum, q[:, :, start:start + chunk], k, scale, frames, use_reentrant=False)
                for start in range(0, length, chunk))
    return total / (n // frames * heads * length * k.shape[2])


def _change_sum(q: torch.Tensor, k: torch.Tensor, scale: float, frames: int) -> torch.Tensor:
    a = rearrange(torch.softmax(q @ k.transpose(-1, -2) * scale, dim=-1), "(b f) h q k -> b f h q k", f=frames)
    return (a[:, 1:] - a[:, :-1]).abs().sum(dim=(0, 2, 3, 4))


@dataclass
class VideoPrediction:
    output: torch.Tensor  # [B, C, F, h, w], the epsilon prediction
    recording: Recording | None


class HarivoModel(nn.Module):
    family = "harivo"
    config_class = HarivoConfig

    def __init__(self, config: HarivoConfig):
        super().__init__()
        from diffusers import Transformer2DModel

        config.base = base_config(config.base)
        if config.frames < 2:
            raise ValueError(f"frames must be at least 2 (L_TRS and L_DC compare frames of a clip), got {config.frames}")
        if config.base.schedule.prediction_type != "epsilon":
            raise ValueError("HARIVO's losses and MG sampling are written for epsilon prediction; "
                             "use a t2i base trained with prediction_type='epsilon'")
        self.config = config
        self.base = T2IModel(config.base).requires_grad_(False)
        unet = self.base.unet

        # Temporal layers after every spatial transformer (down, mid and up blocks).
        self.temporal = nn.ModuleDict()
        for name, module in unet.named_modules():
            if isinstance(module, Transformer2DModel):
                key = name.replace(".", "_")
                self.temporal[key] = TemporalLayer(module.config.in_channels, config.temporal_head_dim,
                                                   config.temporal_ff_mult)
                module.register_forward_hook(functools.partial(self._after_spatial, key))
        # L_TRS reads the self-attention (attn1) maps of the decoder's transformer blocks (§3.3).
        for name, module in unet.up_blocks.named_modules():
            if name.endswith("attn1"):
                module.register_forward_pre_hook(self._record_self_attention, with_kwargs=True)
        unet.mid_block.register_forward_hook(self._record_h)

        self.mapping = MappingNetwork(config.base.latent_channels, config.mapping_hidden, config.mapping_heads,
                                      config.mapping_head_dim)
        self.token_generator = (FrameTokenGenerator(config.base.cross_attention_dim, config.base.text_max_length,
                                                    config.frames, config.frame_tokens)
                                if config.frame_tokens > 0 else None)
        h_channels = config.base.block_out_channels[-1]
        h_size = config.base.sample_size // 2 ** (len(config.base.block_out_channels) - 1)
        self.projection = ProjectionHead(h_channels, h_size, h_size)
        self.register_buffer("dc_queue", torch.zeros(config.dc_queue_size, h_channels))
        self.register_buffer("dc_queue_count", torch.zeros((), dtype=torch.long))

        self._frames: int | None = None  # set during a video pass; None = the per-frame T2I path
        self._record: Recording | None = None

    # --- hooks on the frozen U-Net ------------------------------------------------------------

    @contextlib.contextmanager
    def _video_pass(self, frames: int | None, record: "Recording | None") -> Iterator[None]:
        """The frame count (None: the per-frame T2I path) and recording the hooks use, for the
        duration (the previous ones after)."""
        saved = self._frames, self._record
        self._frames, self._record = frames, record
        try:
            yield
        finally:
            self._frames, self._record = saved

    def checkpoint_state(self):
        """The video pass's frame count and recording, for activation checkpointing's recomputation
        of the frozen U-Net's blocks (vidtool.train.parallel), which runs after `_predict` returned."""
        return self._video_pass(self._frames, self._record)

    def _after_spatial(self, key: str, module: nn.Module, args, output):
        if self._frames is None:
            return output
        return (self.temporal[key](output[0], self._frames), *output[1:])

    def _record_self_attention(self, module: nn.Module, args, kwargs) -> None:
        if self._record is None:
            return
        x = args[0] if args else kwargs["hidden_states"]
        q = rearrange(module.to_q(x), "n s (h d) -> n h s d", h=module.heads)
        k = rearrange(module.to_k(x), "n s (h d) -> n h s d", h=module.heads)
        self._record.attention_change.append(attention_change(q, k, module.scale, self._frames))

    def _record_h(self, module: nn.Module, args, output) -> None:
        if self._record is not None:
            self._record.h = output

    # --- prediction ---------------------------------------------------------------------------

    def _predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor, text_mask: torch.Tensor,
                 *, temporal: bool, record: bool = False, text_embeds: torch.Tensor | None = None) -> VideoPrediction:
        b, _, f = noisy.shape[:3]
        tokens = None
        if temporal and self.token_generator is not None:
            if f > self.config.frames:
                raise ValueError(f"this model makes at most {self.config.frames} frames (its frame-wise tokens); "
                                 f"asked for {f}")
            tokens = self.token_generator(text, f)
        text_f, mask_f = with_frame_tokens(text, text_mask, tokens, f)
        x = rearrange(self.mapping(noisy), "b c f h w -> (b f) c h w")
        pooled = None if text_embeds is None else repeat(text_embeds, "b p -> (b f) p", f=f)
        recording = Recording() if record else None
        with self._video_pass(f if temporal else None, recording):
            out = self.base.predict(x, repeat(timesteps, "b -> (b f)", f=f), text_f, mask_f, frames=f,
                                    text_embeds=pooled)
        return VideoPrediction(rearrange(out, "(b f) c h w -> b c f h w", b=b), recording)

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor,
                text_mask: torch.Tensor, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """Video latents x_t [B, C, F, h, w] at `timesteps` [B] -> epsilon [B, C, F, h, w].
        `text_embeds` [B, P]: the pooled text embeddings an SDXL base takes."""
        return self._predict(noisy, timesteps, text, text_mask, temporal=True, text_embeds=text_embeds).output

    def predict_t2i(self, noisy: torch.Tensor, timesteps: torch.Tensor, text: torch.Tensor,
                    text_mask: torch.Tensor, text_embeds: torch.Tensor | None = None) -> torch.Tensor:
        """f_{l^M, phi} of Eq. 2: the mapping network, then the frozen T2I U-Net on each frame alone
        (no temporal layers, no frame-wise tokens)."""
        return self._predict(noisy, timesteps, text, text_mask, temporal=False, text_embeds=text_embeds).output

    # --- training -----------------------------------------------------------------------------

    def training_losses(self, batch: dict, *, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        latents = batch["latents"]
        b, _, length = latents.shape[:3]
        f = self.config.frames
        if length < f:
            raise ValueError(f"clips have {length} frames; this model trains on {f}: set frames={length} or "
                             f"build the latent set with more frames")
        starts = torch.randint(0, length - f + 1, (b,)).tolist()
        clips = torch.stack([latents[i, :, s:s + f] for i, s in enumerate(starts)])
        text, mask, pooled = drop_conditions(batch, self.config.base.cond_dropout)
        noisy, timesteps, target = diffusion_pair(self.config.schedule, clips)

        video = self._predict(noisy, timesteps, text, mask, temporal=True, record=True, text_embeds=pooled)
        simple = F.mse_loss(video.output, target)  # Eq. 1
        trs = self._trs_loss(video.recording.attention_change)
        # Eq. 2: both paths carry gradients into the mapping network, which is what keeps its
        # output in the T2I model's domain; lambda_t = 1 - t/T.
        image = self.predict_t2i(noisy, timesteps, text, mask, pooled)
        lambda_t = 1 - timesteps.to(video.output.dtype) / self.config.schedule.train_timesteps
        reg = (lambda_t * (video.output - image).square().mean(dim=(1, 2, 3, 4))).mean()
        dc = self._dc_loss(rearrange(video.recording.h, "(b f) c h w -> b f c h w", f=f))
        c = self.config
        loss = simple + c.lambda_trs * trs + c.lambda_reg * reg + c.lambda_dc * dc  # Eq. 5
        return {"loss": loss, "simple": simple, "trs": trs, "reg": reg, "dc": dc}

    @staticmethod
    def _trs_loss(changes: list[torch.Tensor]) -> torch.Tensor:
        """Eq. 3: sum over decoder layers i (lambda_i = i/N) and frames j >= 2 of the layer's
        mean |A_i^(j) - A_i^(j-1)| (`attention_change`, one [F-1] per layer)."""
        total = changes[0].new_zeros(())
        for i, per_pair in enumerate(changes, start=1):
            total = total + i / len(changes) * per_pair.sum()
        return total

    def _dc_loss(self, h: torch.Tensor) -> torch.Tensor:
        """Eq. 4 on h [B, F, c, h', w']: a positive pair of two random frames of each clip, projected
        by g and L2-normalised (the decoupled contrastive loss compares cosine similarities);
        negatives are the queue of earlier steps' projected positives plus the current batch's
        other clips. The queue then takes this step's positives (detached)."""
        b, f = h.shape[:2]
        pick = torch.rand(b, f, device=h.device).argsort(dim=1)[:, :2]
        rows = torch.arange(b, device=h.device)
        z1 = F.normalize(self.projection(h[rows, pick[:, 0]]), dim=-1)
        z2 = F.normalize(self.projection(h[rows, pick[:, 1]]), dim=-1)
        tau = self.config.dc_temperature
        positive = (z1 * z2).sum(dim=-1) / tau

        in_batch = z1 @ torch.cat([z1, z2]).T / tau  # [B, 2B]
        own_clip = repeat(torch.eye(b, dtype=torch.bool, device=h.device), "i j -> i (two j)", two=2)
        # A copy: the queue is updated in place below, before backward needs these values.
        queued = z1 @ self.dc_queue[: int(self.dc_queue_count)].clone().to(z1.dtype).T / tau
        negatives = torch.cat([in_batch[~own_clip].reshape(b, 2 * (b - 1)), queued], dim=1)
        # With no negatives at all (one clip, empty queue) the log-sum term is absent, not -inf.
        spread = torch.logsumexp(negatives, dim=1) if negatives.shape[1] else torch.zeros_like(positive)
        self._enqueue(torch.cat([z1, z2]).detach())
        return (spread - positive).mean()

    @torch.no_grad()
    def _enqueue(self, z: torch.Tensor) -> None:
        size = self.dc_queue.shape[0]
        self.dc_queue.copy_(torch.cat([z.to(self.dc_queue.dtype), self.dc_queue])[:size])
        self.dc_queue_count.fill_(min(int(self.dc_queue_count) + z.shape[0], size))

    # --- sampling -----------------------------------------------------------------------------

    @property
    def fps(self) -> float:
        """Frame rate of generated videos: that of the clips it was trained on."""
        return self.config.clip_fps

    def parameter_counts(self) -> dict[str, int]:
        return {"frozen t2i": parameter_count(self.base), "temporal layers": parameter_count(self.temporal),
                "mapping network": parameter_count(self.mapping),
                "frame-wise tokens": parameter_count(self.token_generator),
                "projection head": parameter_count(self.projection)}


def build(preset_name: str, overrides: dict, base: T2IModel | None, data) -> HarivoModel:
    """The trainer's entry (vidtool.generators.build): the video model around a copy of `base`."""
    if base is None:
        raise ValueError("harivo extends a trained t2i model: pass its folder as the base")
    config = preset(preset_name, **overrides)
    if data.frames < config.frames:
        raise ValueError(f"the latent set's clips have {data.frames} frames, fewer than frames={config.frames}")
    text_length(data, base.config.text_max_length, "the base t2i model")
    config.base = dataclasses.replace(base.config)
    model = HarivoModel(config)
    model.base.load_state_dict(base.state_dict())
    return model
