"""LPIPS v0.1 (Zhang et al. 2018, "The Unreasonable Effectiveness of Deep Features as a Perceptual
Metric"), with the AlexNet or VGG16 backbone, written here in plain torch.

    d(x0, x1) = Σ_l mean_hw( w_l · (ŷ0_l − ŷ1_l)² )

where ŷ_l are a backbone layer's activations normalised to unit length along channels and w_l ≥ 0
the learned linear heads ("lin" layers). Inputs are RGB in [-1, 1], shifted and scaled first by the
paper's ScalingLayer constants. Nothing is downloaded:

- backbone: a torchvision state-dict file the user names (`alexnet-owt-7be5be79.pth`,
  `vgg16-397923af.pth`); the layers below are numbered as torchvision's `features` Sequential, so its
  keys (`features.0.weight`, …) load as they are, with `torch.load(weights_only=True)`;
- heads: the `lpips` package's `weights/v0.1/{alex,vgg}.pth` (keys `lin0.model.1.weight` …, each
  [1, C, 1, 1]), from a file the user names or from an installed `lpips` package, which is located
  but never imported (it would import torchvision).

The backbone is recognised from its keys and the heads from their channel counts, so a VGG head on
an AlexNet backbone is refused instead of giving a number.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from einops import rearrange
from torch import nn

from vidtool.errors import UserError
from vidtool.metrics.video_sets import file_digest
from vidtool.video import frames_to_model

# LPIPS ScalingLayer: the ImageNet mean and std expressed for inputs in [-1, 1].
SHIFT = (-0.030, -0.088, -0.188)
SCALE = (0.458, 0.448, 0.450)
EPS = 1e-10  # lpips.normalize_tensor

# torchvision's `features` layouts. A conv is (in, out, kernel, stride, padding); "M" a 3x3/2 (AlexNet)
# or 2x2/2 (VGG) max-pool; every conv is followed by a ReLU, which keeps the numbering torchvision's.
ALEXNET = [(3, 64, 11, 4, 2), "M", (64, 192, 5, 1, 2), "M", (192, 384, 3, 1, 1), (384, 256, 3, 1, 1),
           (256, 256, 3, 1, 1), "M"]
VGG16 = [(3, 64, 3, 1, 1), (64, 64, 3, 1, 1), "M", (64, 128, 3, 1, 1), (128, 128, 3, 1, 1), "M",
         (128, 256, 3, 1, 1), (256, 256, 3, 1, 1), (256, 256, 3, 1, 1), "M",
         (256, 512, 3, 1, 1), (512, 512, 3, 1, 1), (512, 512, 3, 1, 1), "M",
         (512, 512, 3, 1, 1), (512, 512, 3, 1, 1), (512, 512, 3, 1, 1), "M"]


@dataclass(frozen=True)
class Backbone:
    layout: list
    pool: tuple[int, int]  # max-pool kernel, stride
    taps: tuple[int, ...]  # indices in `features` whose outputs LPIPS compares (the ReLUs it names)
    channels: tuple[int, ...]


BACKBONES = {
    # AlexNet relu1..relu5; VGG16 relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 (the lpips package's slices)
    "alex": Backbone(ALEXNET, (3, 2), (1, 4, 7, 9, 11), (64, 192, 384, 256, 256)),
    "vgg": Backbone(VGG16, (2, 2), (3, 8, 15, 22, 29), (64, 128, 256, 512, 512)),
}


def features_stack(net: str) -> nn.Sequential:
    spec = BACKBONES[net]
    layers: list[nn.Module] = []
    for entry in spec.layout:
        if entry == "M":
            layers.append(nn.MaxPool2d(*spec.pool))
        else:
            cin, cout, k, s, p = entry
            layers += [nn.Conv2d(cin, cout, k, stride=s, padding=p), nn.ReLU()]
    # Only up to the last tap is ever run; the trailing pool stays so the numbering is torchvision's.
    return nn.Sequential(*layers)


class LPIPS(nn.Module):
    def __init__(self, net: str):
        super().__init__()
        if net not in BACKBONES:
            raise ValueError(f"LPIPS backbone must be one of {sorted(BACKBONES)}, got {net!r}")
        self.net = net
        self.features = features_stack(net)
        self.heads = nn.ModuleList(nn.Conv2d(c, 1, 1, bias=False) for c in BACKBONES[net].channels)
        self.register_buffer("shift", torch.tensor(SHIFT).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor(SCALE).view(1, 3, 1, 1))

    def taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        x = (x - self.shift) / self.scale
        outputs, taps = [], BACKBONES[self.net].taps
        for index, layer in enumerate(self.features[: taps[-1] + 1]):
            x = layer(x)
            if index in taps:
                outputs.append(x)
        return outputs

    def forward(self, x0: torch.Tensor, x1: torch.Tensor) -> torch.Tensor:
        """[N, 3, H, W] pairs in [-1, 1] -> distances [N]. A backbone cast to bf16 gets its input in bf16;
        the distance (unit-normalised differences, squared) is float32 whatever the backbone's dtype."""
        dtype = self.shift.dtype
        f0, f1 = ([t.float() for t in self.taps(x.to(dtype))] for x in (x0, x1))
        return distance_from_features(f0, f1, [h.weight.float() for h in self.heads])


def unit_normalize(x: torch.Tensor) -> torch.Tensor:
    return x / (x.pow(2).sum(dim=1, keepdim=True).sqrt() + EPS)


def distance_from_features(f0: list[torch.Tensor], f1: list[torch.Tensor], heads: list[torch.Tensor]) -> torch.Tensor:
    """Σ_l mean over positions of the head-weighted squared difference of unit-normalised features."""
    total = 0
    for a, b, w in zip(f0, f1, heads):
        diff = (unit_normalize(a) - unit_normalize(b)) ** 2
        total = total + nn.functional.conv2d(diff, w).mean(dim=(1, 2, 3))
    return total


@dataclass(frozen=True)
class LPIPSWeights:
    backbone: str
    heads: str
    net: str
    digests: dict[str, str]


def installed_heads(net: str) -> Path | None:
    """weights/v0.1/{net}.pth inside an installed `lpips` package, found without importing it."""
    spec = importlib.util.find_spec("lpips")
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / "v0.1" / f"{net}.pth"
    return path if path.is_file() else None


def _state_dict(path: Path, what: str) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise UserError(f"LPIPS {what} file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and safetensors errors all mean an unreadable file
        raise UserError(f"{path}: cannot read LPIPS {what} weights ({str(error).splitlines()[0]})") from error
    if not isinstance(state, dict):
        raise UserError(f"{path}: expected a state dict of tensors, got {type(state).__name__}")
    return state


def _backbone_net(state: dict[str, torch.Tensor], path: Path) -> str:
    for net, spec in BACKBONES.items():
        convs = [i for i, entry in enumerate(_numbered(spec)) if entry == "conv"]
        if all(f"features.{i}.weight" in state for i in convs):
            return net
    raise UserError(f"{path}: not a torchvision AlexNet or VGG16 state dict (no features.N.weight keys of either)")


def _numbered(spec: Backbone) -> list[str]:
    """The layout as numbered modules: conv, relu, pool — matching `features_stack`."""
    return [m for entry in spec.layout for m in (["pool"] if entry == "M" else ["conv", "relu"])]


def load_lpips(backbone: str, heads: str | None, device: str = "cpu",
               dtype: str = "float32") -> tuple[LPIPS, LPIPSWeights]:
    """Build LPIPS from a torchvision backbone file and v0.1 heads (a file, or the installed lpips package's);
    `dtype` (a torch dtype name) is the backbone's precision (`LPIPS.forward`)."""
    backbone_path = Path(backbone)
    state = _state_dict(backbone_path, "backbone")
    net = _backbone_net(state, backbone_path)
    heads_path = Path(heads) if heads else installed_heads(net)
    if heads_path is None:
        raise UserError(f"no LPIPS heads: pass --lpips-heads PATH (the lpips package's weights/v0.1/{net}.pth)")
    head_state = _state_dict(heads_path, "heads")
    model = LPIPS(net)
    features = {k[len("features."):]: v for k, v in state.items() if k.startswith("features.")}
    try:
        model.features.load_state_dict(features, strict=True)
    except RuntimeError as error:
        # torch's message is a title line and then one line per offending key; the first key says enough
        lines = str(error).strip().splitlines()
        raise UserError(f"{backbone_path}: does not fit torchvision's {net} layout ({lines[min(1, len(lines) - 1)].strip()})") from error
    channels = BACKBONES[net].channels
    for i, c in enumerate(channels):
        w = head_state.get(f"lin{i}.model.1.weight")
        if w is None or tuple(w.shape) != (1, c, 1, 1):
            got = "missing" if w is None else list(w.shape)
            raise UserError(f"{heads_path}: lin{i}.model.1.weight is {got}; the {net} backbone needs [1, {c}, 1, 1] "
                            "(heads for the other backbone?)")
        model.heads[i].weight.data.copy_(w)
    weights = LPIPSWeights(str(backbone_path), str(heads_path), net,
                           {"backbone": file_digest(backbone_path), "heads": file_digest(heads_path)})
    return model.eval().to(device, getattr(torch, dtype)), weights


def lpips_frames(model: LPIPS, a: np.ndarray, b: np.ndarray, *, chunk: int = 16) -> np.ndarray:
    """LPIPS of each frame pair of two uint8 clips [T, H, W, 3] -> [T]."""
    device = next(model.parameters()).device
    x = rearrange(frames_to_model(a), "c t h w -> t c h w")
    y = rearrange(frames_to_model(b), "c t h w -> t c h w")
    out = []
    with torch.no_grad():
        for start in range(0, len(x), chunk):
            out.append(model(x[start : start + chunk].to(device), y[start : start + chunk].to(device)).cpu())
    return torch.cat(out).double().numpy()
