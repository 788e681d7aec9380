"""Masked frame interpolation (MFI), FusionFrames' baseline (Appendix 10, after Video LDM).

Each frame of a 5-frame window [c^g, x^1, x^2, x^3, c^g+1] is one U-Net image: the input is its
noisy latent, the "upsampled video" (the keyframe latent at the two ends, zeros in between) and a
one-channel mask marking the keyframes:

    input  [z_t, upsampled, mask]   2C + 1 channels per frame     output  v   C channels per frame

so a group of three new frames costs five U-Net images where FusionFrames' model (interpolation.py)
costs one: the point of §6.3 / Figure 7. Everything else is shared with that model so the two differ
only in this layout: the U-Net copied from the T2I model with the new input channels at zero
(App. 10: "we initialize additional parameters with zeros"; the T2I weights read z_t), 3x1x1
temporal convs — here over the five frames of a window, which is Video LDM's temporal context —
the learned context instead of text, s and tp conditioning, conditional frame perturbation
(App. 10), v-prediction, 10% context dropout (keyframes and mask zeroed) and context guidance.

The loss covers the three unknown frames of each window; the keyframe slots are diffused with the
window but their prediction is not trained (they are given) and is discarded at sampling.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from vidtool.diffusion.schedulers import diffusion_pair
from vidtool.generators.interpolation import (FRAMES_PER_GROUP, InterpolationConfig, VideoUNet, configure, preset,
                                              training_conditions)

WINDOW = FRAMES_PER_GROUP + 2  # keyframe, three unknown frames, keyframe
KEY_MASK = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0])


def windows_of(keyframes: torch.Tensor, inbetweens: torch.Tensor) -> torch.Tensor:
    """Keyframes [B, C, G+1, h, w] and in-betweens [B, C, 3G, h, w] -> windows [B, C, G, 5, h, w]."""
    groups = rearrange(inbetweens, "b c (g k) h w -> b c g k h w", k=FRAMES_PER_GROUP)
    return torch.cat([keyframes[:, :, :-1, None], groups, keyframes[:, :, 1:, None]], dim=3)


class MaskedInterpolationModel(nn.Module):
    family = "interp-mfi"
    config_class = InterpolationConfig

    def __init__(self, config: InterpolationConfig):
        super().__init__()
        self.config = config
        c = config.base.latent_channels
        self.net = VideoUNet(config.base, in_channels=2 * c + 1, out_channels=c, temporal_kernel=config.temporal_kernel)

    @classmethod
    def from_base(cls, base: nn.Module, config: InterpolationConfig) -> "MaskedInterpolationModel":
        model = cls(config)
        model.net.load_base(base.unet, input_slot=0, output_copies=1)  # slot 0 = the noisy frame
        return model

    @property
    def latent_channels(self) -> int:
        return self.config.base.latent_channels

    def predict(self, noisy: torch.Tensor, timesteps: torch.Tensor, keyframes: torch.Tensor, skip: torch.Tensor,
                perturbation: torch.Tensor, present: torch.Tensor) -> torch.Tensor:
        """Noisy windows [B, C, G, 5, h, w] at `timesteps` [B], keyframes [B, C, G+1, h, w] (scaled,
        perturbed or zeroed), s, tp and `present` (m, bool) [B] -> v for every window frame."""
        b, c, g, _, h, w = noisy.shape
        upsampled = windows_of(keyframes, noisy.new_zeros(b, c, FRAMES_PER_GROUP * g, h, w))
        mask = KEY_MASK.to(noisy)[None, None, None, :, None, None] * present.to(noisy.dtype).view(b, 1, 1, 1, 1, 1)
        mask = mask.expand(b, 1, g, WINDOW, h, w)
        frames = rearrange(torch.cat([noisy, upsampled, mask], dim=1), "b c g n h w -> (b g n) c h w")
        per_frame = lambda v: repeat(v, "b -> (b g n)", g=g, n=WINDOW)  # noqa: E731
        out = self.net(frames, per_frame(timesteps), per_frame(skip), per_frame(perturbation), length=WINDOW)
        return rearrange(out, "(b g n) c h w -> b c g n h w", b=b, g=g)

    def training_losses(self, batch: dict, *, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        c = training_conditions(batch["latents"], self.config)
        noisy, timesteps, target = diffusion_pair(self.config.schedule,
                                                  windows_of(c.groups.keyframes, c.groups.inbetweens))
        prediction = self.predict(noisy, timesteps, c.keyframes, c.skip, c.level, c.present)
        return {"loss": F.mse_loss(prediction[:, :, :, 1:-1], target[:, :, :, 1:-1])}

def build(preset_name: str, overrides: dict, base, data) -> MaskedInterpolationModel:
    config = preset(preset_name, **overrides)
    return MaskedInterpolationModel.from_base(base, configure(config, base, data))
