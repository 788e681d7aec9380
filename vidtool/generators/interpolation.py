"""FusionFrames' latent interpolation model (§4.2, Appendix 9): T keyframes -> 4T - 3 frames.

Between each pair of consecutive keyframes (c^g, c^g+1) one U-Net pass predicts a group of three
frames at once:

    input  [z_t^1, z_t^2, z_t^3, c^g, c^g+1]   5C channels (three noisy latents + two keyframes)
    output [v^1, v^2, v^3]                      3C channels (v-prediction, §4.2)

The U-Net is a copy of the trained text-to-image U-Net (vidtool.generators.t2i), adapted as App. 9
says, and the whole of it trains (§5: "The entire interpolation model was trained"); the T2I folder
itself is only read.
- Input conv inflated with zero weights for the new channels. The T2I weights sit on the *middle*
  noisy latent z_t^2: with the output conv replicated x3, the fresh model then predicts, for each of
  the three frames of a group, exactly what the T2I U-Net predicts for z_t^2 — "three identical
  frames before the training phase starts" (App. 9) — and ignores the keyframes until it learns to
  use them. The middle slot is the frame the two keyframes bracket symmetrically.
- A 3x1x1 temporal conv after each spatial conv of the U-Net's ResNet blocks (conv1 and conv2),
  merged as out = out_spatial + alpha * out_temporal (§4.2 Eq. 3). The temporal conv starts at
  zero and alpha at one, so the fresh model is the T2I model and the conv gets a gradient at once.
  The temporal axis is the sequence of groups: a clip of T keyframes is T - 1 groups denoised jointly.
- No text (§4.2): cross-attention reads one learned context token, initialised to zero (the fresh
  model equals the T2I U-Net given a zero context), and shared by all inputs. On an SDXL-layout
  U-Net the pooled text embedding it also takes is learned the same way (zero at first), and its
  size conditioning is the frames' own (vidtool.generators.t2i.size_condition).
- Skip-frame s and perturbation level tp: sinusoidal embeddings through small MLPs whose last layer
  starts at zero, added to the time embedding (the diffusers "class embedding" slot).

Skip-frame s (§5). The paper resamples ~24 fps training videos "with a skip of s frames" and infers
with s = 3 for 2 fps -> 8 fps and s = 1 for 8 fps -> ~30 fps, and samples keyframes "with the skip
of 12" for 2 fps: s is the stride, in frames of a ~24 fps source, between consecutive frames of the
*interpolated* sequence, so keyframes are 4s source frames apart with three frames between them.
The tiny latent sets hold 8 fps clips, where one frame is three 24 fps frames:
`skip_per_data_frame` = 3 turns a stride of r latent frames into s = 3r.

Training (§4.2, §5). From each clip [C, 16, h, w]: a stride r, the most groups G that fit (at most
`max_groups`; the paper's 9 keyframes -> 33 frames is G = 8), keyframes at p + 4rg and targets at
p + 4rg + rk (k = 1, 2, 3) from a random offset p; r = 1 gives keyframes 0, 4, 8, 12 -> 13 frames.
Each clip's keyframes are perturbed to a random level tp in {0..250} (conditional frame
perturbation: tp forward-diffusion steps, tp = 0 leaves them clean) and, with probability
`cond_dropout` (10%), replaced by zeros (m = 0, Eq. 4; tp is then 0 too, as Eq. 5's unconditional
branch has no tp). Loss: Eq. 4, the MSE to v_t = alpha_t eps - sigma_t x.

Inference: DDIM over the in-between frames, keyframes perturbed to tp (0 by default), context
guidance Eq. 5 = `guide(cond, uncond, w)` with uncond = zero keyframes, w = 0.25 (§5).
"""

from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Iterator

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from vidtool.diffusion.schedulers import NoiseSchedule, diffusion_pair
from vidtool.errors import UserError
from vidtool.generators.t2i import (
    T2IConfig,
    base_config,
    schedule_from_dict,
    size_condition,
    text_length,
)

FRAMES_PER_GROUP = 3  # in-between frames predicted per keyframe pair (§4.2)


def v_schedule() -> NoiseSchedule:
    return NoiseSchedule(prediction_type="v_prediction")


@dataclass
class InterpolationConfig:
    # The T2I U-Net this model was copied from (architecture only; the weights are in the folder).
    base: T2IConfig = field(default_factory=T2IConfig)
    schedule: NoiseSchedule = field(default_factory=v_schedule)
    latent_scale: float = 1.0  # the latent set's, as for the T2I model (vidtool.data.latents)
    vae: str = ""  # "family@digest" of the autoencoder whose latents are interpolated
    temporal_kernel: int = 3  # App. 9: 3x1x1 temporal convs
    cond_dropout: float = 0.1  # §5 uncond_prob
    max_perturbation: int = 250  # §4.2: tp in {0, ..., 250}
    skip_per_data_frame: int = 3  # s of one frame of stride in the training clips (8 fps vs ~24 fps)
    max_groups: int = 8  # keyframe pairs per training sequence (§5: 9 keyframes -> 33 frames)

    def __post_init__(self):
        self.base = base_config(self.base)  # a reloaded config.json holds the nested dataclasses as dicts
        self.schedule = schedule_from_dict(self.schedule)
        if self.schedule.prediction_type != "v_prediction":
            raise ValueError("FusionFrames' interpolation uses v-prediction (§4.2); keep schedule.prediction_type "
                             "= 'v_prediction'")
        if self.temporal_kernel % 2 != 1:
            raise ValueError(f"temporal_kernel must be odd to keep the sequence length, got {self.temporal_kernel}")
        if not 0 <= self.max_perturbation < self.schedule.train_timesteps:
            raise ValueError(f"max_perturbation must lie in [0, {self.schedule.train_timesteps}), "
                             f"got {self.max_perturbation}")


def preset(name: str, **overrides) -> InterpolationConfig:
    """`tiny`: the paper's training knobs; the U-Net's shape is the base T2I model's."""
    if name != "tiny":
        raise ValueError(f"unknown interpolation preset {name!r}; known: tiny (the U-Net's size follows --base)")
    return dataclasses.replace(InterpolationConfig(), **overrides)


# --- the video U-Net shared with the masked-frame-interpolation baseline -----------------------------

class SequenceLength:
    """How many consecutive batch entries form one sequence for the temporal layers.

    The diffusers U-Net sees a batch of images; `VideoUNet.forward` sets the length for the duration
    of one call, as diffusers' own video U-Nets pass `num_frames`."""

    def __init__(self):
        self.value: int | None = None

    @contextlib.contextmanager
    def set(self, value: int) -> Iterator[None]:
        self.value = value
        try:
            yield
        finally:
            self.value = None


class TemporalConv(nn.Module):
    """A spatial conv followed by a kx1x1 temporal conv: out = out_spatial + alpha * out_temporal
    (FusionFrames Eq. 3). The temporal conv starts at zero, so the layer starts as the spatial conv."""

    def __init__(self, spatial: nn.Conv2d, length: SequenceLength, kernel: int):
        super().__init__()
        self.spatial = spatial
        channels = spatial.out_channels
        self.temporal = nn.Conv3d(channels, channels, (kernel, 1, 1), padding=(kernel // 2, 0, 0))
        nn.init.zeros_(self.temporal.weight)
        nn.init.zeros_(self.temporal.bias)
        # Shape [1], not a 0-d scalar: FSDP2 shards parameters along dim 0 and refuses 0-d ones.
        self.alpha = nn.Parameter(torch.ones(1))
        self.length = length

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # Folders saved before alpha had a dimension store it 0-d.
        key = prefix + "alpha"
        if key in state_dict and state_dict[key].dim() == 0:
            state_dict[key] = state_dict[key].reshape(1)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def checkpoint_state(self):
        """The sequence length of the current call, for activation checkpointing's recomputation
        (vidtool.train.parallel), which runs after `VideoUNet.forward` has reset it."""
        return self.length.set(self.length.value)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.spatial(x)
        n = self.length.value
        assert n is not None, "TemporalConv runs inside VideoUNet.forward, which sets the sequence length"
        video = rearrange(out, "(b n) c h w -> b c n h w", n=n)
        return out + self.alpha * rearrange(self.temporal(video), "b c n h w -> (b n) c h w")


class ConditionEmbedding(nn.Module):
    """Skip-frame s and perturbation level tp -> a vector added to the time embedding (§4.2).

    Each value gets the U-Net's sinusoidal timestep features and its own MLP; the MLPs' last layers
    start at zero so that the fresh model ignores both."""

    def __init__(self, features: int, out_dim: int):
        super().__init__()
        from diffusers.models.embeddings import Timesteps

        self.features = Timesteps(features, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.skip = self._mlp(features, out_dim)
        self.perturbation = self._mlp(features, out_dim)

    @staticmethod
    def _mlp(features: int, out_dim: int) -> nn.Sequential:
        mlp = nn.Sequential(nn.Linear(features, out_dim), nn.SiLU(), nn.Linear(out_dim, out_dim))
        nn.init.zeros_(mlp[-1].weight)
        nn.init.zeros_(mlp[-1].bias)
        return mlp

    def forward(self, labels: torch.Tensor) -> torch.Tensor:
        """labels [N, 2] = (s, tp) -> [N, out_dim]."""
        skip, perturbation = labels.unbind(-1)
        dtype = self.skip[0].weight.dtype
        return (self.skip(self.features(skip).to(dtype))
                + self.perturbation(self.features(perturbation).to(dtype)))


class VideoUNet(nn.Module):
    """The T2I diffusers U-Net with other input/output widths, temporal convs in its ResNet blocks,
    a learned context instead of text, and (s, tp) conditioning.

    Images [N = batch * length, in_channels, h, w] -> [N, out_channels, h, w]; the temporal convs
    mix the `length` consecutive entries of each sequence."""

    def __init__(self, base: T2IConfig, *, in_channels: int, out_channels: int, temporal_kernel: int):
        super().__init__()
        from vidtool.generators.t2i import unet_class

        self.kandinsky3 = base.unet_class == "Kandinsky3UNet"
        if self.kandinsky3:
            # Kandinsky3UNet predicts as many channels as it takes and has no class-embedding slot: the
            # output conv is rebuilt at `out_channels`, and (s, tp) are added to its time embedding by a
            # forward hook (`_add_conditions`) — where UNet2DConditionModel adds a class embedding.
            self.unet = unet_class(base.unet_class)(**{**base.unet_kwargs(), "in_channels": in_channels})
            old = self.unet.conv_out
            self.unet.conv_out = nn.Conv2d(old.in_channels, out_channels, old.kernel_size, padding=old.padding)
            self.unet.time_embedding.register_forward_hook(self._add_conditions)
        else:
            self.unet = unet_class(base.unet_class)(**{**base.unet_kwargs(), "in_channels": in_channels,
                                                       "out_channels": out_channels})
        self.unet.class_embedding = ConditionEmbedding(base.block_out_channels[0],
                                                       self.unet.time_embedding.linear_2.out_features)
        self.context = nn.Parameter(torch.zeros(1, 1, base.cross_attention_dim))
        self.pixels_per_latent = base.pixels_per_latent
        if base.text_embeds_dim is not None:  # only then: the other layouts' folders keep their keys
            self.pooled_context = nn.Parameter(torch.zeros(1, base.text_embeds_dim))
        self.length = SequenceLength()
        self._labels: torch.Tensor | None = None
        self.temporal_names: list[str] = []
        for name, module in list(self.unet.named_modules()):
            if type(module).__name__ == "ResnetBlock2D":
                for conv in ("conv1", "conv2"):
                    setattr(module, conv, TemporalConv(getattr(module, conv), self.length, temporal_kernel))
                    self.temporal_names.append(f"{name}.{conv}")
            elif type(module).__name__ == "Kandinsky3Block" and module.projection.kernel_size != (1, 1):
                # Kandinsky 3's ResNet blocks: each 3x3 spatial conv (the 1x1 ones only mix channels).
                module.projection = TemporalConv(module.projection, self.length, temporal_kernel)
                self.temporal_names.append(f"{name}.projection")

    def _add_conditions(self, module: nn.Module, args: tuple, embedding: torch.Tensor) -> torch.Tensor:
        return embedding + self.unet.class_embedding(self._labels).to(embedding.dtype)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, skip: torch.Tensor, perturbation: torch.Tensor,
                *, length: int) -> torch.Tensor:
        labels = torch.stack([skip, perturbation], dim=-1).to(x.dtype)
        context = self.context.expand(x.shape[0], -1, -1)
        extra = {}
        if hasattr(self, "pooled_context"):
            extra["added_cond_kwargs"] = {"text_embeds": self.pooled_context.expand(x.shape[0], -1).to(x.dtype),
                                          "time_ids": size_condition(x, self.pixels_per_latent)}
        with self.length.set(length):
            if not self.kandinsky3:
                return self.unet(x, timesteps, encoder_hidden_states=context, class_labels=labels, **extra).sample
            self._labels = labels
            try:
                mask = torch.ones(context.shape[:2], dtype=torch.bool, device=x.device)
                return self.unet(x, timesteps, encoder_hidden_states=context, encoder_attention_mask=mask).sample
            finally:
                self._labels = None

    @torch.no_grad()
    def load_base(self, base_unet: nn.Module, *, input_slot: int, output_copies: int) -> None:
        """Copy a T2I U-Net's weights (App. 9): the input conv's C input channels go to channels
        [slot*C, (slot+1)*C) and the rest stay zero; the output conv is replicated `output_copies`
        times; ResNet convs land in their TemporalConv's `spatial`. New parts keep their zero init."""
        state = {}
        for key, value in base_unet.state_dict().items():
            for name in self.temporal_names:
                if key.startswith(name + "."):
                    key = f"{name}.spatial.{key[len(name) + 1:]}"
            state[key] = value
        c = base_unet.conv_in.in_channels
        conv_in = torch.zeros_like(self.unet.conv_in.weight)
        conv_in[:, input_slot * c:(input_slot + 1) * c] = state["conv_in.weight"]
        state["conv_in.weight"] = conv_in
        state["conv_out.weight"] = repeat(state["conv_out.weight"], "o i kh kw -> (r o) i kh kw", r=output_copies)
        state["conv_out.bias"] = repeat(state["conv_out.bias"], "o -> (r o)", r=output_copies)
        missing, unexpected = self.unet.load_state_dict(state, strict=False)
        new = [k for k in missing if not (k.startswith("class_embedding.") or ".temporal." in k or k.endswith(".alpha"))]
        if new or unexpected:
            raise UserError(f"the base U-Net does not fit this model (missing {new[:3]}, unexpected {unexpected[:3]}); "
                            "build it from the t2i folder it was configured with")


# --- data and conditioning, shared with the MFI baseline ---------------------------------------------

@dataclass
class Groups:
    keyframes: torch.Tensor  # [B, C, G + 1, h, w]
    inbetweens: torch.Tensor  # [B, C, 3G, h, w]: frame 3g + k - 1 is the k-th between keyframes g, g + 1
    stride: int  # latent frames between consecutive frames of the interpolated sequence


def sample_groups(clips: torch.Tensor, max_groups: int, generator: torch.Generator | None = None) -> Groups:
    """Keyframes and the frames between them from clips [B, C, T, h, w] (see the module docstring).

    One stride per batch, so every clip in it has the same number of groups; offsets per clip."""
    frames = clips.shape[2]
    strides = [r for r in range(1, frames) if 4 * r + 1 <= frames]
    if not strides:
        raise UserError(f"interpolation training needs clips of at least 5 frames (two keyframes and three "
                        f"between), got {frames}")
    stride = strides[int(torch.randint(len(strides), (), generator=generator))]
    groups = min(max_groups, (frames - 1) // (4 * stride))
    span = 4 * stride * groups
    offsets = torch.randint(frames - span, (clips.shape[0],), generator=generator)
    key_at = torch.arange(groups + 1) * 4 * stride
    between_at = rearrange(key_at[:-1, None] + stride * torch.arange(1, 4), "g k -> (g k)")
    keyframes = torch.stack([clip[:, int(p) + key_at] for clip, p in zip(clips, offsets)])
    inbetweens = torch.stack([clip[:, int(p) + between_at] for clip, p in zip(clips, offsets)])
    return Groups(keyframes, inbetweens, stride)


def perturb(schedule: NoiseSchedule, keyframes: torch.Tensor, level: torch.Tensor,
            generator: torch.Generator | None = None) -> torch.Tensor:
    """Conditional frame perturbation (§4.2): `level` [B] forward-diffusion steps applied to each
    item's keyframes; level 0 leaves them as they are."""
    alphas = schedule.training_scheduler().alphas_cumprod.to(keyframes.device)
    index = (level - 1).clamp(min=0)
    signal = torch.where(level > 0, alphas[index].sqrt(), torch.ones_like(alphas[index]))
    noise_scale = torch.where(level > 0, (1 - alphas[index]).sqrt(), torch.zeros_like(alphas[index]))
    noise = torch.randn(keyframes.shape, generator=generator, dtype=keyframes.dtype, device=keyframes.device)
    shape = (-1,) + (1,) * (keyframes.dim() - 1)
    return signal.view(shape).to(keyframes.dtype) * keyframes + noise_scale.view(shape).to(keyframes.dtype) * noise


def drop_context(keyframes: torch.Tensor, level: torch.Tensor, probability: float,
                 generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 4's m: each item's keyframes become zeros (m = 0) with `probability`, and its perturbation
    level 0. Returns (keyframes, level, m) with m [B] bool."""
    keep = torch.rand(keyframes.shape[0], generator=generator, device=keyframes.device) >= probability
    shape = (-1,) + (1,) * (keyframes.dim() - 1)
    return keyframes * keep.view(shape).to(keyframes.dtype), level * keep, keep


def interleave(keyframes: torch.Tensor, inbetweens: torch.Tensor) -> torch.Tensor:
    """Keyframes [B, C, T, h, w] and their in-betweens [B, C, 3(T-1), h, w] -> [B, C, 4T-3, h, w]."""
    groups = rearrange(inbetweens, "b c (g k) h w -> b c g k h w", k=FRAMES_PER_GROUP)
    runs = torch.cat([keyframes[:, :, :-1, None], groups], dim=3)
    return torch.cat([rearrange(runs, "b c g k h w -> b c (g k) h w"), keyframes[:, :, -1:]], dim=2)


def check_inputs(keyframes: torch.Tensor, channels: int, tp: int, max_perturbation: int) -> None:
    """What `interpolate` accepts: latents [B, C, T >= 2, h, w] and tp within the training range."""
    if keyframes.dim() != 5 or keyframes.shape[1] != channels or keyframes.shape[2] < 2:
        raise UserError(f"interpolation needs latents [B, {channels}, T >= 2, h, w], got {list(keyframes.shape)}")
    if not 0 <= tp <= max_perturbation:
        raise UserError(f"tp must lie in [0, {max_perturbation}] (the training range), got {tp}")


@dataclass
class TrainingConditions:
    groups: Groups
    keyframes: torch.Tensor  # perturbed to `level`, zeros where the context was dropped
    level: torch.Tensor  # [B] tp
    present: torch.Tensor  # [B] bool, Eq. 4's m
    skip: torch.Tensor  # [B] s


def training_conditions(clips: torch.Tensor, config: InterpolationConfig) -> TrainingConditions:
    """Eq. 4's conditioning for a batch of clips: groups at one stride, keyframes perturbed to a
    random tp in [0, max_perturbation], dropped (m = 0) with probability cond_dropout, and s."""
    groups = sample_groups(clips, config.max_groups)
    b, device = groups.keyframes.shape[0], groups.keyframes.device
    level = torch.randint(0, config.max_perturbation + 1, (b,)).to(device)
    keyframes, level, present = drop_context(perturb(config.schedule, groups.keyframes, level), level,
                                             config.cond_dropout)
    skip = as_batch(groups.stride * config.skip_per_data_frame, b, device)
    return TrainingConditions(groups, keyframes, level, present, skip)


def as_batch(value: float | int, batch: int, device: torch.device) -> torch.Tensor:
    return torch.full((batch,), value, device=device, dtype=torch.long)


# --- the model ---------------------------------------------------------------------------------------

class InterpolationModel(nn.Module):
    family = "interp"
    config_class = InterpolationConfig

    def __init__(self, config: InterpolationConfig):
        super().__init__()
        self.config = config
        c = config.base.latent_channels
        # [z_t^1, z_t^2, z_t^3, c^g, c^g+1] in, [v^1, v^2, v^3] out (§4.2).
        self.net = VideoUNet(config.base, in_channels=(FRAMES_PER_GROUP + 2) * c, out_channels=FRAMES_PER_GROUP * c,
                             temporal_kernel=config.temporal_kernel)

    @classmethod
    def from_base(cls, base: nn.Module, config: InterpolationConfig) -> InterpolationModel:
        """Initialise from a trained T2IModel (App. 9); `config.base` must describe its U-Net."""
        model = cls(config)
        model.net.load_base(base.unet, input_slot=1, output_copies=FRAMES_PER_GROUP)  # slot 1 = z_t^2
        return model

    @property
    def latent_channels(self) -> int:
        return self.config.base.latent_channels

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, keyframes: torch.Tensor, skip: torch.Tensor,
                perturbation: torch.Tensor) -> torch.Tensor:
        """Noisy in-betweens [B, C, 3G, h, w] at `timesteps` [B], conditioning keyframes [B, C, G+1, h, w]
        (scaled, already perturbed or zeroed), s and tp [B] -> v for the in-betweens [B, C, 3G, h, w]."""
        g = keyframes.shape[2] - 1
        z = rearrange(noisy, "b c (g k) h w -> (b g) (k c) h w", k=FRAMES_PER_GROUP)
        pairs = rearrange(torch.stack([keyframes[:, :, :-1], keyframes[:, :, 1:]]),
                          "two b c g h w -> (b g) (two c) h w")
        per_group = lambda v: repeat(v, "b -> (b g)", g=g)  # noqa: E731
        out = self.net(torch.cat([z, pairs], dim=1), per_group(timesteps), per_group(skip), per_group(perturbation),
                       length=g)
        return rearrange(out, "(b g) (k c) h w -> b c (g k) h w", g=g, k=FRAMES_PER_GROUP)

    def training_losses(self, batch: dict, *, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        """Eq. 4 on groups sampled from each batch of clips (module docstring)."""
        c = training_conditions(batch["latents"], self.config)
        noisy, timesteps, target = diffusion_pair(self.config.schedule, c.groups.inbetweens)
        loss = F.mse_loss(self.predict(noisy, timesteps, c.keyframes, c.skip, c.level), target)
        return {"loss": loss}

def build(preset_name: str, overrides: dict, base, data) -> InterpolationModel:
    """The trainer's entry (vidtool.generators.build): the U-Net is copied from `base` (App. 9)."""
    config = preset(preset_name, **overrides)
    return InterpolationModel.from_base(base, configure(config, base, data))


def configure(config: InterpolationConfig, base, data) -> InterpolationConfig:
    """Fill the parts of an interpolation config that come from the base model and the latent set."""
    if base.config.vae != data.vae:
        raise UserError(f"the base t2i model works on {base.config.vae} latents, the latent set holds {data.vae}'s; "
                        "use the latent set the base was trained on")
    text_length(data, base.config.text_max_length, "the base t2i model")
    config.base = dataclasses.replace(base.config)
    # The scale the training batches carry (LatentDataset divides by the set's std), as for the T2I.
    config.latent_scale = data.latent_scale
    config.vae = data.vae
    return config
