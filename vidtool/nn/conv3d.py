"""`Conv3d`: `nn.Conv3d` that sends a single CPU clip to oneDNN.

PyTorch chooses between oneDNN and its own im2col kernel (`slow_conv3d`) by a size heuristic that,
for one float32 clip of the shapes a small video autoencoder has (e.g. [1, 16, 16, 32, 32]),
picks im2col: about 10x slower than oneDNN there, while two clips already go to oneDNN. A user's
`vidtool encode clip.mp4` codes one clip at a time, so this layer calls oneDNN itself for batch 1
(`python benchmarks/mbq_vae_step.py` measures both). Same parameters and state-dict keys as
`nn.Conv3d`, results equal up to float rounding; gradients flow through PyTorch's own backward.
"""

from __future__ import annotations

import torch
from torch import nn


class Conv3d(nn.Conv3d):
    def _conv_forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        single_cpu_clip = x.device.type == "cpu" and x.dtype == torch.float32 and x.shape[0] == 1
        if (single_cpu_clip and self.padding_mode == "zeros" and not isinstance(self.padding, str)
                and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
            return torch.mkldnn_convolution(x, weight, bias, self.padding, self.stride, self.dilation, self.groups)
        return super()._conv_forward(x, weight, bias)
