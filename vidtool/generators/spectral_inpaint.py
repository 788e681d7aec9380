"""MotionAura's sketch-guided video inpainting (§4, Fig. 5, App. F): a frozen spectral transformer
adapted with LoRA, reading [z_t ; z_m ; s'] and predicting the tokens of the region to fill.

- z_t: the video's tokens with the region's tokens masked (fully at the start of sampling, z_T);
- z_m: tokens of the masked video V ⊙ (1 − m), the context as the tokenizer sees it;
- s': the sketch through an image encoder (a small built-in conv net, or SigLIP from a local folder)
  and an MLP, a few tokens wide.
Each segment gets a learned segment embedding; z_t and z_m share the (t, h, w) positions of the grid.

Adapters (App. F.2): attention LoRA in parallel on Q and K of the self- and cross-attention, FF-LoRA
in sequence after each block's output feed-forward layer. The base stays frozen and is not part of
this model's weights: the model folder holds the adapters, the sketch encoder and the segment
embeddings (a checkpoint of a few hundred kB), and names the base by tag (`family@digest`), found
again with the model store like a decoder is.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from torch import nn

from vidtool.diffusion.masked import corrupt, masked_cross_entropy
from vidtool.generators.spectral_transformer import Segment, SpectralTransformer
from vidtool.nn.lora import ACTIVATIONS, ParallelLoRALinear, SequentialLoRALinear, inject, merge
from vidtool.nn.params import parameter_count
from vidtool.nn.rope import grid_positions


@dataclass
class SpectralInpaintConfig:
    base: str = ""  # the frozen spectral model's tag
    base_path: str = ""  # where it was when this model was trained (looked at first)
    tokenizer: str = ""  # the base's tokenizer, whose ids z_t and z_m are
    rank: int = 16  # App. F / Table 6 try 8–64
    lora_activation: str = "gelu"  # the paper's W_up(GeLU(W_down x)); "identity" folds into the weights
    sketch_encoder: str = "conv"  # "conv", or a local SigLIP folder (transformers SiglipVisionModel)
    sketch_size: int = 32
    sketch_channels: int = 64
    text_dropout: float = 0.1

    def __post_init__(self):
        assert self.lora_activation in ACTIVATIONS, f"lora_activation must be one of {ACTIVATIONS}"


class ConvSketchEncoder(nn.Module):
    """Sketch [B, 1, S, S] → [B, (S/8)², channels]: three stride-2 convolutions."""

    def __init__(self, channels: int):
        super().__init__()
        self.net = nn.Sequential(
            nn.Conv2d(1, channels // 2, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(channels // 2, channels, 3, stride=2, padding=1), nn.SiLU(),
            nn.Conv2d(channels, channels, 3, stride=2, padding=1),
        )
        self.out_dim = channels

    def forward(self, sketch: torch.Tensor) -> torch.Tensor:
        return rearrange(self.net(sketch * 2 - 1), "b c h w -> b (h w) c")


class SiglipSketchEncoder(nn.Module):
    """A frozen SigLIP vision tower from a local folder; its patch tokens are the sketch features."""

    def __init__(self, folder: str):
        super().__init__()
        from transformers import SiglipVisionModel

        from vidtool.errors import UserError

        if not (Path(folder) / "config.json").is_file():
            raise UserError(f"sketch_encoder {folder} is neither 'conv' nor a local SigLIP folder (no config.json)")
        model = SiglipVisionModel.from_pretrained(folder, local_files_only=True).eval().requires_grad_(False)
        self._frozen = [model]  # not part of the adapter checkpoint
        self.image_size = model.config.image_size
        self.out_dim = model.config.hidden_size

    def _apply(self, fn, *args, **kwargs):
        self._frozen[0]._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def forward(self, sketch: torch.Tensor) -> torch.Tensor:
        # SigLIP's preprocessing: RGB in [-1, 1]; strokes drawn dark on white like a pencil sketch.
        image = F.interpolate(1 - 2 * sketch, size=(self.image_size, self.image_size), mode="bilinear")
        return self._frozen[0](pixel_values=repeat(image, "b 1 h w -> b 3 h w")).last_hidden_state


class SpectralInpaintModel(nn.Module):
    family = "spectral-inpaint"
    config_class = SpectralInpaintConfig

    def __init__(self, config: SpectralInpaintConfig, base: SpectralTransformer | None = None):
        super().__init__()
        self.config = config
        if base is None:
            from vidtool.checkpoint import from_pretrained
            from vidtool.model_store import find_by_tag

            base = from_pretrained(find_by_tag(config.base, hint=config.base_path))
        base.requires_grad_(False).eval()
        self._frozen = [base]  # adapted in place; its own weights stay out of this model's state
        attention = {"to_q": ParallelLoRALinear, "to_k": ParallelLoRALinear}
        inject(base.blocks, attention, config.rank, config.lora_activation)
        inject(base.blocks, {"proj_out": SequentialLoRALinear}, config.rank, config.lora_activation)
        self.adapters = nn.ModuleDict({
            name.replace(".", "__"): module.lora for name, module in base.blocks.named_modules()
            if isinstance(module, (ParallelLoRALinear, SequentialLoRALinear))})
        dim = base.config.dim
        self.sketch_encoder = (ConvSketchEncoder(config.sketch_channels) if config.sketch_encoder == "conv"
                               else SiglipSketchEncoder(config.sketch_encoder))
        self.sketch_mlp = nn.Sequential(nn.Linear(self.sketch_encoder.out_dim, dim), nn.GELU(), nn.Linear(dim, dim))
        self.segment = nn.Parameter(torch.zeros(3, dim))  # z_t, z_m, s'

    @property
    def base(self) -> SpectralTransformer:
        return self._frozen[0]

    def frozen_modules(self) -> list[nn.Module]:
        """The adapted base, kept out of this model's tree and state (vidtool.train.parallel
        checkpoints its blocks and casts it for mixed precision)."""
        return [self.base]

    def _apply(self, fn, *args, **kwargs):
        self.base._apply(fn, *args, **kwargs)
        return super()._apply(fn, *args, **kwargs)

    def parameter_counts(self) -> dict[str, int]:
        return {"adapters": parameter_count(self.adapters), "sketch": parameter_count(self.sketch_encoder, self.sketch_mlp),
                "trainable": parameter_count(self), "base (frozen)": parameter_count(self.base)}

    def merge_adapters(self) -> int:
        """Fold linear adapters (lora_activation="identity") into the base's weights; returns how many."""
        folded = merge(self.base.blocks)
        self.adapters = nn.ModuleDict()
        return folded

    def sketch_tokens(self, sketch: torch.Tensor) -> Segment:
        """Sketch [B, 1, S, S] in {0, 1} → s' [B, S', dim] at (0, i, j) positions of its token grid."""
        features = self.sketch_mlp(self.sketch_encoder(sketch.to(self.segment.dtype)))
        side = int(round(features.shape[1] ** 0.5))
        return Segment(features + self.segment[2], grid_positions(1, side, side, device=sketch.device))

    def logits(self, tokens: torch.Tensor, t: torch.Tensor, fps: torch.Tensor, text: torch.Tensor,
               text_mask: torch.Tensor, masked_tokens: torch.Tensor, sketch: Segment) -> torch.Tensor:
        """Logits over the codebook for the z_t places [B, T·h·w, K]."""
        z_t, z_m = self.base.token_segment(tokens), self.base.token_segment(masked_tokens)
        z_t.embeddings = z_t.embeddings + self.segment[0]
        z_m.embeddings = z_m.embeddings + self.segment[1]
        hidden = self.base.run([z_t, z_m, sketch], t, fps, text, text_mask)
        return self.base.to_logits(hidden[:, : z_t.embeddings.shape[1]])

    def training_losses(self, batch: dict, *, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        """L_diff restricted to the region: its tokens are masked at a random t, the rest stay given."""
        from vidtool.generators.t2i import drop_prompts

        tokens = batch["tokens"].long()
        b, t, h, w = tokens.shape
        text, text_mask = drop_prompts(batch, self.config.text_dropout)
        clean = rearrange(tokens, "b t h w -> b (t h w)")
        region = rearrange(batch["region"].bool(), "b t h w -> b (t h w)")
        times = torch.rand(b, device=tokens.device)
        z_t, masked = corrupt(clean, times, self.base.schedule, self.base.mask_id, maskable=region)
        logits = self.logits(rearrange(z_t, "b (t h w) -> b t h w", t=t, h=h), times, batch["fps"], text, text_mask,
                             batch["masked_tokens"].long(), self.sketch_tokens(batch["sketch"]))
        loss = masked_cross_entropy(logits, clean, masked)
        accuracy = ((logits.argmax(-1) == clean) & masked).sum() / masked.sum().clamp(min=1)
        return {"loss": loss, "masked_accuracy": accuracy.detach()}

def build(preset_name: str, overrides: dict, base: SpectralTransformer, data) -> SpectralInpaintModel:
    """The trainer's entry: `base` is the loaded spectral model (vidtool.generators.build)."""
    from vidtool.checkpoint import model_tag

    if preset_name != "tiny":
        raise ValueError("spectral-inpaint has one preset, 'tiny' (the base sets the scale); set the LoRA rank "
                         "with --set rank=N")
    folder = base.source_folder
    config = SpectralInpaintConfig(**overrides)
    config.base, config.base_path, config.tokenizer = model_tag(folder), str(folder), base.config.tokenizer
    return SpectralInpaintModel(config, base)
