"""MotionAura's 3D-MBQ-VAE: a discrete video tokenizer (MotionAura §3.1 and App. B).

    video [B, 3, T, H, W] in [-1, 1]
      -> encoder: Conv3D stem (1x3x3, stride 1x2x2), then per stage `encoder_mb_blocks` 3D-MB Conv
         blocks and one Inception-fused MB block, stages joined by strided 3D convolutions
      -> z_c [B, C, T/4, H/s, W/s]  --MLP-->  P(frame i was fully masked)   (training only, L_MFI)
      -> quantizer (LFQ, the paper's default, or Euclidean VQ) -> tokens [B, T/4, H/s, W/s]
      -> mirrored decoder with nearest-neighbour upsampling and a final ConvTranspose3d

Clip length: T must be a multiple of `temporal_factor` (4 in both presets). Frames are grouped
4 by 4 with no causal first frame, so a 16-frame clip has 4 latent frames; other lengths raise
ValueError in `encode`.

Training (`training_losses`) masks the input, never the target (App. B.2.2): random square patches
(16x16 and 32x32 at 256 px, scaled with `patch_sizes` for small clips) at a cosine-scheduled ratio
of 20% -> 60%, and whole frames at 10% -> 50%; the MFI head predicts which frames were blanked.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from einops import rearrange, reduce
from torch import nn

from vidtool.autoencoders.outputs import EncoderOutput
from vidtool.autoencoders.widen import widened_state
from vidtool.errors import UserError
from vidtool.nn.conv3d import Conv3d
from vidtool.nn.quantizers import LFQ, QuantizerOutput, VectorQuantizer
from vidtool.nn.params import parameter_count


@dataclass
class MBQVAEConfig:
    # Defaults are the `tiny` preset. Widths per stage, from full resolution (after the stem) down
    # to the latent; the decoder mirrors its own list. One stride pair per stage transition.
    encoder_channels: tuple[int, ...] = (16, 32, 48)
    decoder_channels: tuple[int, ...] = (16, 32, 48)
    # 3D-MB Conv blocks per stage besides the stage's Inception-fused block (which holds three).
    encoder_mb_blocks: int = 0
    decoder_mb_blocks: int = 0
    temporal_strides: tuple[int, ...] = (2, 2)
    spatial_strides: tuple[int, ...] = (2, 1)  # the stem adds one more x2: x4 in all
    expansion: int = 4  # MB Conv C -> 4C (App. B.1.3)
    se_ratio: float = 0.25  # squeeze width as a fraction of the block's C (EfficientNet's choice)

    quantizer: str = "lfq"  # "lfq" or "vq"
    # MotionAura App. B.2.1 quotes "LFQ, d = 8, codebook 12,800", which LFQ cannot be: its codebook
    # is 2**d. We keep the vocabulary and round it up to a power of two: 2**14 = 16,384 codes, d = 14
    # (the `paper` preset). Any power of two works here; 256 is the d = 8 reading.
    codebook_size: int = 1024
    vq_dim: int = 8  # VQ only: codebook vector width (= latent channels); LFQ uses log2(codebook)
    lfq_entropy_group_bits: int = 8
    lfq_inv_temperature: float = 100.0

    l1_weight: float = 1.0
    l2_weight: float = 1.0  # MotionAura Eq. 1 L_rec is ||V - V^||^2; L1 is added for sharper edges
    # Weight on minus the mean per-frame PSNR (dB). The gradient of log MSE_i is that of MSE_i divided
    # by MSE_i, so every frame counts by its relative error: a pooled L2 lets the frames with the
    # largest errors (photos) set the direction, while the reconstruction benchmark scores the mean
    # of per-frame PSNRs. Per unit of MSE the pull is 10/ln(10) x psnr_weight / MSE: 0.005 matches
    # l2_weight = 5 at 29.5 dB (MSE 4.5e-3 on [-1, 1] clips).
    psnr_weight: float = 0.0
    commitment_weight: float = 0.25  # beta in Eq. 1
    codebook_weight: float = 1.0  # VQ only
    entropy_weight: float = 0.1  # LFQ only (MAGVIT-v2)
    codebook_entropy_weight: float = 1.0  # LFQ only: gamma on the codebook-entropy term
    mfi_weight: float = 0.1
    mfi_hidden: int = 64

    patch_sizes: tuple[int, ...] = (4, 8)  # the paper's 16 and 32 at 256 px, scaled to 64 px
    patch_mask_ratio: tuple[float, float] = (0.2, 0.6)  # cosine schedule start, end (App. B.2.2)
    frame_mask_ratio: tuple[float, float] = (0.1, 0.5)
    # "decoder": encoder, quantizer and MFI head frozen, so every token id stays what it was and token
    # sets, generators and tokens files made with the model keep their meaning; only the decoder
    # learns, from unmasked clips (masking trains the encoder). "all": the paper's training.
    trainable: str = "all"
    # (frames, side) of a random crop each training clip is cut to before masking, or None for whole
    # clips. The model is convolutional, so it learns on crops and runs on whole clips; a 8x32x32
    # crop costs an eighth of a 16x64x64 clip, which is what lets a CPU run take enough updates.
    train_crop: tuple[int, int] | None = None
    # Frames the model codes at once by default (None: the default chunking with context). A model
    # trained on clips of one length codes other lengths worse (a 16-frame model: 48-frame clips
    # up to 10 dB worse in one piece than in 16-frame windows), so it records that length here and
    # encode/decode cut longer clips into independent windows of it.
    window_frames: int | None = None

    def __post_init__(self):
        stages = len(self.encoder_channels)
        if len(self.decoder_channels) != stages:
            raise ValueError(f"decoder_channels needs {stages} entries like encoder_channels, "
                             f"got {self.decoder_channels}")
        for name in ("temporal_strides", "spatial_strides"):
            if len(getattr(self, name)) != stages - 1:
                raise ValueError(f"{name} needs one entry per stage transition ({stages - 1}), "
                                 f"got {getattr(self, name)}")
        if self.quantizer not in ("lfq", "vq"):
            raise ValueError(f"quantizer must be 'lfq' or 'vq', got {self.quantizer!r}")
        if self.quantizer == "lfq" and (self.codebook_size < 2 or self.codebook_size & (self.codebook_size - 1)):
            raise ValueError(f"codebook size must be a power of two for LFQ, got {self.codebook_size}; try 16384")
        if self.trainable not in ("all", "decoder"):
            raise ValueError(f"trainable must be 'all' or 'decoder', got {self.trainable!r}")
        if self.window_frames is not None and self.window_frames % math.prod(self.temporal_strides):
            raise ValueError(f"window_frames must be a multiple of the temporal factor "
                             f"{math.prod(self.temporal_strides)}, got {self.window_frames}")
        if self.train_crop is not None and (len(self.train_crop) != 2 or min(self.train_crop) < 1):
            raise ValueError(f"train_crop is (frames, side), both at least 1, got {self.train_crop}")
        for name in ("patch_mask_ratio", "frame_mask_ratio"):
            ratio = getattr(self, name)
            if len(ratio) != 2 or not all(0.0 <= r < 1.0 for r in ratio):
                raise ValueError(f"{name} is (start, end) with both in [0, 1), got {ratio}")


def preset(name: str) -> MBQVAEConfig:
    """`tiny`: trains on CPU on 64x64x16 shape clips: x4 temporal, x4 spatial (latent 4x16x16),
    2**10 codes, 1.2M parameters.
    `paper`: x4 temporal, x16 spatial, LFQ 2**14, encoder ~140M / decoder ~177M parameters."""
    if name == "tiny":
        return MBQVAEConfig()
    if name == "paper":
        # Blocks in encoder order: MB, IF, Down(s) | MB, IF, Down(t,s) | MB, IF, Down(t,s) | MB, IF:
        # the temporal x2 steps are blocks 6 and 9 (App. B.1.4), x16 spatial with the stem.
        return MBQVAEConfig(
            # Widths chosen to land on the paper's 140M (encoder) + 177M (decoder) parameters.
            encoder_channels=(128, 256, 512, 608),
            decoder_channels=(128, 256, 512, 640),
            encoder_mb_blocks=1,
            decoder_mb_blocks=2,
            temporal_strides=(1, 2, 2),
            spatial_strides=(2, 2, 2),
            codebook_size=2**14,
            patch_sizes=(16, 32),
            mfi_hidden=256,
        )
    raise ValueError(f"unknown MBQ-VAE preset {name!r}; known: tiny, paper")


def cosine_ratio(start: float, end: float, step: int, total_steps: int) -> float:
    """Masking ratio at `step`: `start` at 0, `end` at `total_steps`, cosine in between (App. B.2.2)."""
    progress = min(max(step / max(total_steps, 1), 0.0), 1.0)
    return end + (start - end) * 0.5 * (1 + math.cos(math.pi * progress))


def _norm(channels: int) -> nn.GroupNorm:
    # At most 32 groups of at least 8 channels. One-channel groups (instance norm) would erase each
    # channel's clip-wide mean, i.e. a flat background's colour; wider groups keep it in the
    # relative pattern of the group's channels.
    return nn.GroupNorm(math.gcd(32, max(channels // 8, 1)), channels)


class SqueezeExcite3d(nn.Module):
    """3D squeeze-and-excitation: global (t, h, w) pooling gates each channel."""

    def __init__(self, channels: int, squeeze: int):
        super().__init__()
        self.reduce = Conv3d(channels, squeeze, 1)
        self.expand = Conv3d(squeeze, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = reduce(x, "b c t h w -> b c 1 1 1", "mean")
        return x * self.expand(F.silu(self.reduce(gate))).sigmoid()


class DepthwiseConv3d(nn.Conv3d):
    """Depthwise 3x3x3 convolution run in channels-last layout. On the CPU the channels-first
    grouped conv takes a slow path whose backward was half of a training step; channels-last goes
    to oneDNN (about 3x faster there). Same parameters and state-dict keys as `nn.Conv3d`."""

    def __init__(self, channels: int):
        super().__init__(channels, channels, 3, padding=1, groups=channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Back to contiguous: GroupNorm's CPU backward crashes on channels-last inputs (torch 2.13).
        return super().forward(x.contiguous(memory_format=torch.channels_last_3d)).contiguous()


class MBConv3d(nn.Module):
    """3D-MB Conv (App. B.1.3): 3x3x3 conv C' -> C, then the inverted residual
    pointwise C -> 4C, 3D SE, depthwise 3x3x3, pointwise 4C -> C."""

    def __init__(self, c_in: int, c_out: int, *, expansion: int, se_ratio: float):
        super().__init__()
        wide = c_out * expansion
        self.conv_in = Conv3d(c_in, c_out, 3, padding=1)
        self.norm_in = _norm(c_out)
        self.expand = Conv3d(c_out, wide, 1)
        self.norm_expand = _norm(wide)
        self.se = SqueezeExcite3d(wide, max(1, round(c_out * se_ratio)))
        self.depthwise = DepthwiseConv3d(wide)
        self.norm_depthwise = _norm(wide)
        self.project = Conv3d(wide, c_out, 1)
        # Zero-initialised last layers make every residual block start as the identity (the
        # "zero-init residual" trick); it shortens the early plateau of small CPU runs markedly.
        nn.init.zeros_(self.project.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.silu(self.norm_in(self.conv_in(x)))
        h = self.se(F.silu(self.norm_expand(self.expand(x))))
        h = F.silu(self.norm_depthwise(self.depthwise(h)))
        return x + self.project(h)


class InceptionFusedMB3d(nn.Module):
    """Inception-fused MB block (App. B.1.4): branches with (t, h, w) kernels 3x3x1, 3x1x3 and 1x3x3,
    each followed by a 3D-MB Conv, concatenated, fused by a 1x1x1 conv, plus the input."""

    KERNELS = ((3, 3, 1), (3, 1, 3), (1, 3, 3))

    def __init__(self, channels: int, *, expansion: int, se_ratio: float):
        super().__init__()
        self.branches = nn.ModuleList(
            nn.Sequential(
                Conv3d(channels, channels, k, padding=tuple(s // 2 for s in k)),
                _norm(channels),
                nn.SiLU(),
                MBConv3d(channels, channels, expansion=expansion, se_ratio=se_ratio),
            )
            for k in self.KERNELS
        )
        self.fuse = Conv3d(3 * channels, channels, 1)
        nn.init.zeros_(self.fuse.weight)  # starts as the identity, like MBConv3d.project

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fuse(torch.cat([branch(x) for branch in self.branches], dim=1))


def _stage(channels: int, mb_blocks: int, config: MBQVAEConfig, *, inception_last: bool) -> list[nn.Module]:
    knobs = dict(expansion=config.expansion, se_ratio=config.se_ratio)
    blocks = [MBConv3d(channels, channels, **knobs) for _ in range(mb_blocks)]
    inception = InceptionFusedMB3d(channels, **knobs)
    return blocks + [inception] if inception_last else [inception] + blocks


class Encoder(nn.Module):
    def __init__(self, config: MBQVAEConfig, latent_channels: int):
        super().__init__()
        widths = config.encoder_channels
        self.stem = Conv3d(3, widths[0], (1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        blocks: list[nn.Module] = []
        for i, width in enumerate(widths):
            blocks += _stage(width, config.encoder_mb_blocks, config, inception_last=True)
            if i + 1 < len(widths):
                ts, ss = config.temporal_strides[i], config.spatial_strides[i]
                blocks.append(Conv3d(width, widths[i + 1], 3, stride=(ts, ss, ss), padding=1))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = _norm(widths[-1])
        self.conv_out = Conv3d(widths[-1], latent_channels, 3, padding=1)

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.stem(video))
        return self.conv_out(F.silu(self.norm_out(h)))


class Upsample3d(nn.Module):
    def __init__(self, c_in: int, c_out: int, temporal: int, spatial: int):
        super().__init__()
        self.scale = (temporal, spatial, spatial)
        self.conv = Conv3d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode="nearest"))


class Decoder(nn.Module):
    """The encoder in reverse; the final ConvTranspose3d undoes the stem's 1x2x2 stride."""

    def __init__(self, config: MBQVAEConfig, latent_channels: int):
        super().__init__()
        widths = config.decoder_channels
        self.conv_in = Conv3d(latent_channels, widths[-1], 3, padding=1)
        blocks: list[nn.Module] = []
        for i in reversed(range(len(widths))):
            blocks += _stage(widths[i], config.decoder_mb_blocks, config, inception_last=False)
            if i > 0:
                ts, ss = config.temporal_strides[i - 1], config.spatial_strides[i - 1]
                blocks.append(Upsample3d(widths[i], widths[i - 1], ts, ss))
        self.blocks = nn.Sequential(*blocks)
        self.norm_out = _norm(widths[0])
        self.conv_out = nn.ConvTranspose3d(widths[0], 3, (1, 4, 4), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        h = self.blocks(self.conv_in(latents))
        return self.conv_out(F.silu(self.norm_out(h)))


class MaskedFrameIndexHead(nn.Module):
    """MLP on the continuous latent z_c giving, for every input frame, the logit of "this frame was
    fully masked" (§3.1). Each latent frame answers for the `temporal_factor` frames it covers, so
    the head works for any clip length."""

    def __init__(self, latent_channels: int, hidden: int, temporal_factor: int):
        super().__init__()
        self.mlp = nn.Sequential(nn.Linear(latent_channels, hidden), nn.SiLU(), nn.Linear(hidden, temporal_factor))

    def forward(self, z_c: torch.Tensor) -> torch.Tensor:
        pooled = reduce(z_c, "b c t h w -> b t c", "mean")
        return rearrange(self.mlp(pooled), "b t f -> b (t f)")


class MBQVAE(nn.Module):
    family = "mbq-vae"
    config_class = MBQVAEConfig

    def __init__(self, config: MBQVAEConfig):
        super().__init__()
        self.config = config
        if config.quantizer == "lfq":
            self.quantizer = LFQ(
                int(math.log2(config.codebook_size)),
                entropy_group_bits=config.lfq_entropy_group_bits,
                inv_temperature=config.lfq_inv_temperature,
                codebook_entropy_weight=config.codebook_entropy_weight,
            )
        else:
            self.quantizer = VectorQuantizer(config.codebook_size, config.vq_dim)
        self.encoder = Encoder(config, self.latent_channels)
        self.mfi_head = MaskedFrameIndexHead(self.latent_channels, config.mfi_hidden, self.temporal_factor)
        self.decoder = Decoder(config, self.latent_channels)
        if self.frozen_codes:
            for name, p in self.named_parameters():
                p.requires_grad_(name.startswith("decoder."))

    @classmethod
    def from_init(cls, source: "MBQVAE", config: MBQVAEConfig) -> "MBQVAE":
        """A model of `config` starting from `source` (`vidtool train-vae --init`): the same weights, or,
        where `config`'s widths are whole multiples of the source's, the source widened so that it
        computes the same function (`widen.widened_state`, with 1e-2 symmetry-breaking noise: -0.03 dB; seeded,
        so a rerun starts from the same weights). An LFQ with more bits (`codebook_size` 2**16 -> 2**20)
        starts with the new bits copying the first ones, nearly the same function: the whole-latent
        norm in front of the signs weighs the copied bits twice."""
        model = cls(config)
        try:
            state = widened_state(source, model, concat_inputs={"fuse": len(InceptionFusedMB3d.KERNELS)},
                                  noise=1e-2, generator=torch.Generator().manual_seed(0))
        except ValueError as e:
            raise UserError(f"cannot start this mbq-vae from the initial model: {e}") from e
        model.load_state_dict(state)
        return model

    @property
    def frozen_codes(self) -> bool:
        """Encoder and quantizer do not train, so token ids mean what they meant in the init model."""
        return self.config.trainable == "decoder"

    @property
    def temporal_factor(self) -> int:
        return math.prod(self.config.temporal_strides)

    @property
    def window(self) -> int | None:
        """Latent frames per independent window at inference (`window_frames`), or None."""
        return None if self.config.window_frames is None else self.config.window_frames // self.temporal_factor

    @property
    def spatial_factor(self) -> int:
        return 2 * math.prod(self.config.spatial_strides)

    @property
    def latent_channels(self) -> int:
        if self.config.quantizer == "lfq":
            return int(math.log2(self.config.codebook_size))
        return self.config.vq_dim

    @property
    def codebook_size(self) -> int:
        return self.config.codebook_size

    def parameter_counts(self) -> dict[str, int]:
        """Encoder (with quantizer and MFI head) and decoder, the split the paper reports (140M + 177M)."""
        return {
            "encoder": parameter_count(self.encoder, self.quantizer, self.mfi_head),
            "decoder": parameter_count(self.decoder),
        }

    def _check_video(self, video: torch.Tensor) -> None:
        if video.ndim != 5 or video.shape[1] != 3:
            raise ValueError(f"video must be [B, 3, T, H, W], got shape {tuple(video.shape)}")
        t, h, w = video.shape[2:]
        if t % self.temporal_factor:
            raise ValueError(
                f"clip has {t} frames; the MBQ-VAE needs a multiple of {self.temporal_factor} "
                f"(trim to {t - t % self.temporal_factor} or pad to {t + (-t) % self.temporal_factor})"
            )
        if h % self.spatial_factor or w % self.spatial_factor:
            raise ValueError(f"frame size {h}x{w} must be a multiple of {self.spatial_factor} on both sides; "
                             "resize or crop")

    def _quantize(self, video: torch.Tensor) -> tuple[torch.Tensor, QuantizerOutput]:
        self._check_video(video)
        z_c = self.encoder(video)
        return z_c, self.quantizer(z_c)

    def encode(self, video: torch.Tensor) -> EncoderOutput:
        _, q = self._quantize(video)
        return EncoderOutput(latents=q.quantized, tokens=q.indices)

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Quantized latents [B, C, t, h, w] -> video [B, 3, 4t, sh, sw], clamped to [-1, 1]."""
        return self.decoder(latents).clamp(-1, 1)

    def tokenize(self, video: torch.Tensor) -> torch.Tensor:
        return self.encode(video).tokens

    def decode_tokens(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.min() < 0 or tokens.max() >= self.codebook_size:
            raise ValueError(f"tokens must lie in [0, {self.codebook_size}); "
                             f"got [{int(tokens.min())}, {int(tokens.max())}]")
        return self.decode(self.indices_to_latents(tokens))

    def indices_to_latents(self, tokens: torch.Tensor) -> torch.Tensor:
        """Token ids [B, t, h, w] -> the quantized latents [B, C, t, h, w] the decoder takes."""
        return self.quantizer.indices_to_codes(tokens).to(self.decoder.conv_in.weight.dtype)

    def mask_ratios(self, step: int, total_steps: int) -> tuple[float, float]:
        """(patch ratio, frame ratio) at `step` of `total_steps` (App. B.2.2 cosine schedules)."""
        return (cosine_ratio(*self.config.patch_mask_ratio, step, total_steps),
                cosine_ratio(*self.config.frame_mask_ratio, step, total_steps))

    def mask_video(self, video: torch.Tensor, *, patch_ratio: float, frame_ratio: float,
                   generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Blank (set to 0, mid grey) random patches of each frame and then whole frames.

        Patch side is drawn per clip from `patch_sizes`; exactly round(ratio * n) patches per frame
        and max(1, round(ratio * T)) frames per clip (when the ratio is positive) are blanked.
        Returns (masked video, frame mask [B, T] float, 1 = blanked frame)."""
        b, _, t, h, w = video.shape
        keep = torch.ones(b, 1, t, h, w, dtype=video.dtype, device=video.device)
        if patch_ratio > 0:
            choice = torch.randint(len(self.config.patch_sizes), (b,), generator=generator)
            for i in range(b):
                p = self.config.patch_sizes[int(choice[i])]
                gh, gw = -(-h // p), -(-w // p)
                hidden = _random_subset(t, gh * gw, round(patch_ratio * gh * gw), generator)
                hidden = rearrange(hidden, "t (gh gw) -> t gh gw", gh=gh)
                hidden = hidden.repeat_interleave(p, 1).repeat_interleave(p, 2)[:, :h, :w]
                keep[i, 0] = (~hidden).to(video.dtype)
        frames = torch.zeros(b, t, dtype=video.dtype, device=video.device)
        if frame_ratio > 0:
            frames = _random_subset(b, t, max(1, round(frame_ratio * t)), generator).to(video)
        keep = keep * rearrange(1 - frames, "b t -> b 1 t 1 1")
        return video * keep, frames

    def training_losses(self, batch: dict, *, step: int, total_steps: int) -> dict[str, torch.Tensor]:
        """MotionAura Eq. 1 on one batch: "loss" is optimised; the other entries are detached terms.

        In train mode the encoder sees the masked clip, the decoder must rebuild the full clip, and
        the MFI head must find the blanked frames; in eval mode nothing is masked."""
        video = batch["video"]
        if self.training and self.config.train_crop is not None:
            video = self.random_crop(video)
        frames = None
        if self.frozen_codes:
            with torch.no_grad():
                _, q = self._quantize(video)
            terms = self._reconstruction_terms(self.decoder(q.quantized), video)
            return {"loss": terms["rec"], **{name: value.detach() for name, value in terms.items()}}
        if self.training:
            patch_ratio, frame_ratio = self.mask_ratios(step, total_steps)
            inputs, frames = self.mask_video(video, patch_ratio=patch_ratio, frame_ratio=frame_ratio)
        else:
            inputs = video
        z_c, q = self._quantize(inputs)
        terms = self._reconstruction_terms(self.decoder(q.quantized), video)
        terms.update(q.losses)
        weights = {
            "rec": 1.0,
            "commit": self.config.commitment_weight,
            "codebook": self.config.codebook_weight,
            "entropy": self.config.entropy_weight,
        }
        if frames is not None:
            # MotionAura Eq. 1: L_MFI = -log P(f_i). With several blanked frames (App. B.2.2 ratios)
            # each frame is a yes/no question, so -log P(f_i) for blanked frames and
            # -log(1 - P(f_j)) for the others: binary cross-entropy per frame.
            terms["mfi"] = F.binary_cross_entropy_with_logits(self.mfi_head(z_c), frames)
            weights["mfi"] = self.config.mfi_weight
        loss = sum(weights[name] * terms[name] for name in weights if name in terms)
        return {"loss": loss, **{name: value.detach() for name, value in terms.items()}}

    def random_crop(self, video: torch.Tensor) -> torch.Tensor:
        """One random (t, y, x) window of `train_crop` per batch, cut from every clip; a side the clip
        does not exceed is kept whole. Lengths must fit the model's factors."""
        frames, side = self.config.train_crop
        t, h, w = video.shape[2:]
        frames, height, width = min(frames, t), min(side, h), min(side, w)
        if frames % self.temporal_factor or height % self.spatial_factor or width % self.spatial_factor:
            raise ValueError(f"train_crop {self.config.train_crop} must be a multiple of the model's "
                             f"factors ({self.temporal_factor} frames, {self.spatial_factor} pixels)")
        t0, y0, x0 = (int(torch.randint(size - crop + 1, ())) for size, crop in ((t, frames), (h, height), (w, width)))
        return video[:, :, t0:t0 + frames, y0:y0 + height, x0:x0 + width]

    def _reconstruction_terms(self, recon: torch.Tensor, video: torch.Tensor) -> dict[str, torch.Tensor]:
        terms = {"l1": F.l1_loss(recon, video), "l2": F.mse_loss(recon, video)}
        terms["rec"] = self.config.l1_weight * terms["l1"] + self.config.l2_weight * terms["l2"]
        if self.config.psnr_weight:
            # Clips span [-1, 1]: peak-to-peak 2, so PSNR = 10 log10(4 / MSE).
            frame_mse = reduce((recon.float() - video.float()) ** 2, "b c t h w -> b t", "mean")
            terms["psnr"] = (10 * torch.log10(4 / frame_mse.clamp_min(1e-10))).mean()
            terms["rec"] = terms["rec"] - self.config.psnr_weight * terms["psnr"]
        return terms


def _random_subset(rows: int, n: int, k: int, generator: torch.Generator | None) -> torch.Tensor:
    """[rows, n] bool with exactly k True entries per row, uniformly placed."""
    rank = torch.rand(rows, n, generator=generator).argsort(-1).argsort(-1)
    return rank < k
