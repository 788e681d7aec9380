"""Peak memory of one training step of every paper preset, at its paper's resolution and batch,
measured on the meta device: will it fit one 80 GB GPU, with or without activation checkpointing?

    python benchmarks/memory_plan.py                       # every case, bf16 autocast, EMA kept
    python benchmarks/memory_plan.py --family spectral dmg
    python benchmarks/memory_plan.py --fsdp 8 --no-ema --precision fp32

Each case builds the model under `torch.device("meta")` (no storage at all), makes a meta batch
shaped as the trainer's data sets make them (vidtool.data.*), and runs `training_losses` once through
`vidtool.train.step_memory.measure_step`, which records what autograd saves for backward (see that
module for what is and is not counted). Columns:

    params        trainable / all parameters (frozen bases included)
    state         fp32 master weights of all parameters + fp32 gradient, AdamW moments and EMA of
                  the trainable ones (16 + 4 B per trainable parameter, 4 B per frozen one)
    act           saved activations (the batch included) without / with the trainer's activation
                  checkpointing (vidtool.train.parallel.checkpoint_activations: its blocks, as they are)
    total         state + act, without / with checkpointing
    1 GPU         "yes" (fits without checkpointing), "ckpt" (only with it) or "no", against --budget
    ≈max batch    the largest micro-batch that fits with checkpointing, activations taken linear in batch
    ckpt blocks   how many blocks checkpointing (and FSDP) wraps
    FSDP ×N       per GPU with checkpointing: state / N (parameters outside the model's module tree,
                  spectral-inpaint's frozen base, stay whole on every rank, as the trainer leaves
                  them) + activations less autocast's weight copies + the gathered bf16 weights of
                  the root unit and of two blocks

Where a paper does not state something, the case says what stands in (the `source` column):
- The video families that freeze a text-to-image U-Net (keyframes, interp, interp-mfi, harivo) need
  a base config, and vidtool has no paper-scale t2i preset: they use SD15_UNET, the Stable Diffusion
  1.5 U-Net shape (859.5M; HARIVO's own base, §4; FusionFrames' T2I model is unpublished), over
  4-channel latents at 1/8 of the frame side (the movq-temporal paper preset's latent space).
- spectral-inpaint is measured on each of the s / m / l bases.
- Batch sizes the papers leave out are 1 per GPU.
- GAN terms (cm-vae, mcd-vae) are on: the step is their start step. mcd-vae's LPIPS term needs local
  weights and is left out; its network's activations would come on top.

Families whose presets are all `tiny` (t2i) are not paper presets and are left out. Results go to
stdout (a Markdown table), progress to stderr.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from vidtool.train.step_memory import GB, StepMemory, measure_step

META = torch.device("meta")

# diffusers' UNet2DConditionModel defaults: the Stable Diffusion 1.x U-Net, 859.5M parameters.
SD15_UNET = dict(latent_channels=4, block_out_channels=(320, 640, 1280, 1280),
                 down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
                 up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
                 layers_per_block=2, attention_head_dim=8, cross_attention_dim=768, norm_num_groups=32,
                 text_max_length=77, text_encoder="clip-vit-large-patch14")


@dataclass
class Case:
    family: str
    preset: str
    video: str  # frames x height x width of the clips
    inputs: str  # what the model trains on, per sample
    batch: int
    source: str  # where resolution and batch come from
    build: Callable[[], tuple[nn.Module, nn.Module | None]]  # (model, frozen module outside its tree)
    make_batch: Callable[[int], dict[str, Any]]  # batch size -> the trainer's batch, on meta
    step: int = 0  # GAN terms join at their start step: measured past it
    seed: int = 0
    stand_ins: frozenset[str] = frozenset()  # MetaStandIns needed by this case


class MetaStandIns(TorchFunctionMode):
    """What a meta tensor cannot answer, answered for the cases that ask (not in the models):

    "scalars"  `float()`, `int()`, `.item()` of a meta tensor give 1 (initialisers that read a
               weight's statistics, e.g. LoRA's, while the model is built);
    "unique"   `unique()` of a meta tensor is the flattened tensor, an upper bound on its length (the
               movq-temporal image stage's codebook-usage metric, a detached number);
    "eye"      `torch.eye(..., device=meta)` is made on the host, so a boolean mask built from it
               has a known count (HARIVO's L_DC picks its negatives with one)."""

    def __init__(self, names: frozenset[str]):
        super().__init__()
        self.names = names

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        on_meta = bool(args) and isinstance(args[0], torch.Tensor) and args[0].device.type == "meta"
        if "scalars" in self.names and on_meta and func in (torch.Tensor.__float__, torch.Tensor.item):
            return 1.0
        if "scalars" in self.names and on_meta and func is torch.Tensor.__int__:
            return 1
        if "unique" in self.names and on_meta and func in (torch.unique, torch.Tensor.unique):
            return args[0].flatten()
        if "eye" in self.names and func is torch.eye and torch.device(kwargs.get("device") or "cpu") == META:
            return func(*args, **{**kwargs, "device": "cpu"})
        return func(*args, **kwargs)


def meta(*shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.empty(*shape, dtype=dtype, device=META)


def text_batch(b: int, length: int, dim: int) -> dict[str, torch.Tensor]:
    """The text keys every text-conditioned data set carries (vidtool.data.latents, tokens)."""
    return {"text": meta(b, length, dim), "text_mask": meta(b, length, dtype=torch.bool),
            "null_text": meta(length, dim), "null_mask": meta(length, dtype=torch.bool)}


def on_meta(build: Callable[[], nn.Module]) -> nn.Module:
    with META:
        return build().train()


# --- autoencoders -------------------------------------------------------------------------------

def video_case(family: str, preset: str, frames: int, height: int, width: int, batch: int, source: str,
               build: Callable[[], nn.Module], step: int = 0) -> Case:
    return Case(family, preset, f"{frames}×{height}×{width}", "pixels", batch, source,
                lambda: (on_meta(build), None),
                lambda b: {"video": meta(b, 3, frames, height, width)}, step=step)


def autoencoder_cases() -> list[Case]:
    from vidtool.autoencoders import cm_vae, mbq_vae, mcd_vae, movq_temporal

    cases = []
    # MotionAura App. D.2: four clip shapes, batches 8 / 4 / 2 / 4 (trained in fp32 there).
    for frames, height, width, batch in ((32, 256, 256, 8), (16, 512, 512, 4), (32, 720, 1280, 2), (48, 480, 640, 4)):
        cases.append(video_case("mbq-vae", "paper", frames, height, width, batch, "MotionAura App. D.2",
                                lambda: mbq_vae.MBQVAE(mbq_vae.preset("paper"))))
    # Cross-modal VAE §4.1: 16 videos a step (over how many GPUs is not said); 16-frame 256² clips
    # (its test sets' shape); GAN on. The presets have no text layers (text_dim=None).
    for name in ("4ch", "16ch"):
        config = cm_vae.preset(name)
        cases.append(video_case("cm-vae", name, 16, 256, 256, 16, "CMVAE §4.1: 16 videos a step; no text",
                                lambda config=config: cm_vae.CMVAE(config), step=config.gan_start_step))
    # LaMD Table 1: L × H × W per data set; batch not given. GAN on; LPIPS off (it needs local weights).
    for name, shape in mcd_vae.PAPER.items():
        config = mcd_vae.preset(name)
        side = shape["image_size"]
        cases.append(video_case("mcd-vae", name, shape["frames"], side, side, 1,
                                "LaMD Table 1; batch not given; no LPIPS",
                                lambda config=config: mcd_vae.MCDVAE(config), step=config.gan_start_step))
    # FusionFrames §5: the decoder trains on 8-frame sequences; 512² is the keyframes' size; batch not given.
    for name in movq_temporal.PAPER_VARIANTS:
        case = video_case("movq-temporal", name, 8, 512, 512, 1, "FusionFrames §5; batch not given",
                          lambda name=name: movq_temporal.MoVQTemporal(movq_temporal.preset(name)))
        cases.append(dataclasses.replace(case, stand_ins=frozenset({"unique"})))
    return cases


# --- generators on a frozen text-to-image U-Net ----------------------------------------------------

def t2i_base(side: int):
    from vidtool.generators.t2i import T2IConfig

    return T2IConfig(sample_size=side // 8, **SD15_UNET)


def latent_batch(b: int, frames: int, side: int) -> dict[str, torch.Tensor]:
    base = t2i_base(side)
    return {"latents": meta(b, base.latent_channels, frames, side // 8, side // 8),
            **text_batch(b, base.text_max_length, base.cross_attention_dim)}


def first_draw_seed(high: int, value: int) -> int:
    """A seed whose first `torch.randint(high, ())` is `value`: the cases that draw their clip layout
    at random (interpolation's stride) are measured at their largest."""
    for seed in range(10_000):
        if int(torch.randint(high, (), generator=torch.Generator().manual_seed(seed))) == value:
            return seed
    raise RuntimeError(f"no seed draws {value} of {high}")


def t2i_cases() -> list[Case]:
    from vidtool.generators import harivo, interpolation, keyframes, masked_interpolation

    cases = []
    # FusionFrames §5: 16 keyframes at 512², skip 12 from ~24 fps clips, batch 1; four temporal variants.
    config = keyframes.preset("paper")
    for variant in keyframes.TEMPORAL_VARIANTS:
        cfg = dataclasses.replace(config, base=t2i_base(512), temporal=variant)
        cases.append(Case("keyframes", f"paper {variant}", "16×512×512", f"latents 4×{config.span}×64×64", 1,
                          "FusionFrames §5; SD-1.5 U-Net base",
                          lambda cfg=cfg: (on_meta(lambda: keyframes.KeyframeModel(cfg)), None),
                          lambda b: latent_batch(b, config.span, 512)))
    # FusionFrames §5: 9 keyframes -> 33 frames at 256²; batch not given. Stride 1 (8 groups, the most).
    stride_one = first_draw_seed(8, 0)  # a 33-frame clip allows strides 1..8
    for family, cls in (("interp", interpolation.InterpolationModel),
                        ("interp-mfi", masked_interpolation.MaskedInterpolationModel)):
        cfg = interpolation.preset("tiny", base=t2i_base(256))
        cases.append(Case(family, "tiny (U-Net of the base)", "33×256×256", "latents 4×33×32×32", 1,
                          "FusionFrames §5; SD-1.5 U-Net base",
                          lambda cls=cls, cfg=cfg: (on_meta(lambda: cls(cfg)), None),
                          lambda b: latent_batch(b, 33, 256), seed=stride_one))
    # HARIVO §4 and App. D: SD 1.5, 4 s at 6 fps = 24 frames, 256²; batch not given.
    cfg = harivo.preset("tiny", base=t2i_base(256), frames=24, clip_fps=6.0, sampling_cfg=None)
    cases.append(Case("harivo", "frames=24 (HarivoConfig defaults)", "24×256×256", "latents 4×24×32×32", 1,
                      "HARIVO §4, App. D; SD-1.5 U-Net base", lambda: (harivo_on_meta(cfg), None),
                      lambda b: latent_batch(b, 24, 256), stand_ins=frozenset({"eye"})))
    return cases


def harivo_on_meta(config) -> nn.Module:
    from vidtool.generators.harivo import HarivoModel

    model = on_meta(lambda: HarivoModel(config))
    # L_DC reads how full its negative queue is (`int(dc_queue_count)`), which a meta tensor cannot
    # say: a host counter stands in, at a full queue (the largest L_DC).
    model.dc_queue_count = torch.tensor(config.dc_queue_size)
    return model


# --- MotionAura's generators and LaMD's DMG -----------------------------------------------------

def token_batch(b: int, grid: tuple[int, int, int], text_length: int, text_dim: int) -> dict[str, torch.Tensor]:
    return {"tokens": meta(b, *grid, dtype=torch.int16), "fps": meta(b), **text_batch(b, text_length, text_dim)}


def spectral_cases() -> list[Case]:
    from vidtool.generators import spectral_inpaint, spectral_transformer

    cases = []
    for name in ("s", "m", "l"):
        config = spectral_transformer.preset(name)
        grid = (config.token_frames, config.token_height, config.token_width)
        # Table 10: batch 3 per GPU; the preset's grid is 16 frames at 256² (x4 time, x16 space).
        cases.append(Case("spectral", name, "16×256×256", f"tokens {'×'.join(map(str, grid))}", 3,
                          "MotionAura Table 10",
                          lambda config=config: (on_meta(lambda: spectral_transformer.SpectralTransformer(config)),
                                                 None),
                          lambda b, config=config, grid=grid: token_batch(b, grid, config.text_max_length,
                                                                          config.text_dim)))
    for name in ("s", "m", "l"):
        base_config = spectral_transformer.preset(name)
        grid = (base_config.token_frames, 256 // 16, 512 // 16)
        inpaint = spectral_inpaint.SpectralInpaintConfig()

        def build(base_config=base_config, inpaint=inpaint):
            with META:
                base = spectral_transformer.SpectralTransformer(base_config)
                model = spectral_inpaint.SpectralInpaintModel(inpaint, base).train()
            return model, base

        def make_batch(b, base_config=base_config, grid=grid, inpaint=inpaint):
            side = inpaint.sketch_size
            return {**token_batch(b, grid, base_config.text_max_length, base_config.text_dim),
                    "masked_tokens": meta(b, *grid, dtype=torch.int16), "region": meta(b, *grid, dtype=torch.bool),
                    "sketch": meta(b, 1, side, side)}

        # App. D.4: batch 8 per GPU at 256×512; LoRA rank 16 on the frozen base.
        cases.append(Case("spectral-inpaint", f"rank 16 on spectral {name}", "16×256×512",
                          f"tokens 2×{'×'.join(map(str, grid))} + sketch", 8, "MotionAura App. D.4",
                          build, make_batch, stand_ins=frozenset({"scalars"})))
    return cases


def dmg_cases() -> list[Case]:
    from vidtool.autoencoders import mcd_vae
    from vidtool.generators import dmg

    cases = []
    for name in dmg.PAPER:
        config = dmg.preset(name)
        shape = mcd_vae.PAPER[name]
        side = config.sample_size

        def make_batch(b, config=config, side=side):
            batch = {"motion": meta(b, config.motion_channels, side, side),
                     "content": meta(b, config.content_channels, side, side)}
            if config.text_dim:
                batch.update(text_batch(b, config.text_max_length, config.text_dim))
            if config.num_classes:
                batch["label"] = meta(b, dtype=torch.long)
            return batch

        # LaMD Table 2: batch 96 (on 6 GPUs: whether per GPU or in all is not said; 96 is measured).
        cases.append(Case("dmg", name, f"{shape['frames']}×{shape['image_size']}×{shape['image_size']}",
                          f"motion {config.motion_channels}×{side}×{side}", 96, "LaMD Table 2",
                          lambda config=config: (on_meta(lambda: dmg.DMGModel(config)), None), make_batch))
    return cases


CASES: dict[str, Callable[[], list[Case]]] = {
    "autoencoders": autoencoder_cases, "t2i-based": t2i_cases, "motionaura": spectral_cases, "lamd": dmg_cases,
}


# --- measuring and the table ----------------------------------------------------------------------

@dataclass
class Row:
    case: Case
    memory: StepMemory | None
    error: str = ""


def measure(case: Case, *, dtype: torch.dtype | None, ema: bool) -> Row:
    try:
        with MetaStandIns(case.stand_ins):
            model, frozen = case.build()
            batch = case.make_batch(case.batch)
            torch.manual_seed(case.seed)
            memory = measure_step(model, batch, step=case.step, total_steps=max(case.step, 1) * 2, dtype=dtype,
                                  ema=ema, frozen=frozen)
        return Row(case, memory)
    except Exception as e:  # a case that cannot run on meta is reported, not fatal
        return Row(case, None, f"{type(e).__name__}: {str(e).splitlines()[0][:120]}")


def gb(n: float) -> str:
    return f"{n / GB:,.1f}"


def params(n: int) -> str:
    return f"{n / 1e9:.2f}B" if n >= 1e9 else f"{n / 1e6:.1f}M"


def table(rows: list[Row], budget: float, fsdp: int) -> str:
    head = ["family", "preset", "video F×H×W", "trains on (per sample)", "batch", "params trainable / all",
            "state GB", "ckpt blocks", "act GB no ckpt / ckpt", "total GB no ckpt / ckpt",
            f"1 GPU ({budget / GB:.0f} GB)", "≈max batch (ckpt)", f"FSDP ×{fsdp} GB/GPU (ckpt)", "source"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        c, m = row.case, row.memory
        if m is None:
            cells = [c.family, c.preset, c.video, c.inputs, str(c.batch)] + ["—"] * 8 + [f"not measured: {row.error}"]
        else:
            plain, checkpointed = m.total(False), m.total(True)
            fits = "yes" if plain <= budget else "ckpt" if checkpointed <= budget else "no"
            per_sample = m.checkpointed / c.batch
            max_batch = max(int((budget - m.state) // per_sample), 0) if per_sample else 0
            source = c.source + (f"; meta stand-in: {', '.join(sorted(c.stand_ins))}" if c.stand_ins else "")
            cells = [c.family, c.preset, c.video, c.inputs, str(c.batch),
                     f"{params(m.trainable)} / {params(m.parameters)}", gb(m.state), str(m.blocks),
                     f"{gb(m.activations)} / {gb(m.checkpointed)}", f"{gb(plain)} / {gb(checkpointed)}",
                     fits, str(max_batch), gb(m.fsdp_per_gpu(fsdp)), source]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--family", nargs="*", help="only these families (default: all)")
    parser.add_argument("--budget", type=float, default=80.0, help="GPU memory in GB (1e9 bytes); default 80")
    parser.add_argument("--fsdp", type=int, default=8, help="ranks for the FSDP column; default 8")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                        help="bf16: the trainer's autocast on GPUs (default); fp32: no autocast")
    parser.add_argument("--no-ema", dest="ema", action="store_false", help="leave the EMA out (train without --ema)")
    args = parser.parse_args(argv)

    cases = [case for make in CASES.values() for case in make()]
    if args.family:
        unknown = set(args.family) - {c.family for c in cases}
        if unknown:
            parser.error(f"unknown --family {', '.join(sorted(unknown))}; known: "
                         f"{', '.join(sorted({c.family for c in cases}))}")
        cases = [c for c in cases if c.family in args.family]
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    rows = []
    for case in cases:
        start = time.perf_counter()
        rows.append(measure(case, dtype=dtype, ema=args.ema))
        print(f"{case.family} {case.preset} {case.video}: {time.perf_counter() - start:.1f} s"
              + (f" — {rows[-1].error}" if rows[-1].error else ""), file=sys.stderr, flush=True)
    precision = "bf16 autocast over fp32 master weights" if dtype else "fp32"
    print(f"One training step: {precision}, AdamW, {'EMA' if args.ema else 'no EMA'}; "
          f"torch {torch.__version__}, meta device.\n")
    print(table(rows, args.budget * GB, args.fsdp))
    return 0


if __name__ == "__main__":
    sys.exit(main())
