"""Training hyperparameters: one dataclass, checked when it is built."""

from __future__ import annotations

from dataclasses import dataclass

from vidtool.errors import UserError

SCHEDULES = ("cosine", "linear", "constant")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
STRATEGIES = ("ddp", "fsdp")  # see vidtool.train.parallel


@dataclass
class TrainConfig:
    steps: int = 1000  # optimizer updates in the whole run (a resumed run continues to this count)
    # Checkpoint and return after this many updates, with the schedules still spanning `steps`, so
    # a run can be cut into sessions of chosen length and `resume` picks it up; None = run to `steps`.
    stop_at: int | None = None
    batch_size: int = 8  # samples per micro-batch and process
    lr: float = 1e-4
    weight_decay: float = 0.01  # applied to matrices and kernels only, not to biases and norms
    betas: tuple[float, float] = (0.9, 0.999)
    warmup_steps: int = 0
    schedule: str = "cosine"  # decay after warm-up: cosine | linear | constant
    min_lr_ratio: float = 0.1  # final LR as a fraction of `lr`
    grad_accum: int = 1  # micro-batches per optimizer update
    grad_clip: float | None = 1.0  # max global grad norm; None = no clipping (the norm is still logged)
    ema_decay: float | None = None  # None = no EMA; otherwise the saved weights are the EMA ones
    precision: str = "auto"  # auto = bf16 autocast on CUDA GPUs that have it, fp32 on CPU; bf16 also on CPU
    device: str = "auto"  # auto = CUDA when available
    deterministic: bool = True  # torch.use_deterministic_algorithms during training
    checkpoint_every: int = 500
    log_every: int = 10
    validate_every: int | None = None  # updates between calls of train()'s `validate` hook; None = never
    seed: int = 0
    num_workers: int | None = None  # DataLoader workers per rank; None = 0 on CPU, the CPUs per rank on GPUs
    resume: bool = False  # continue from out_dir/train_state if it exists
    strategy: str = "ddp"  # under torchrun: ddp = a replica per rank, fsdp = FSDP2 sharding (fully_shard)
    activation_checkpointing: bool = False  # recompute each block's activations in backward

    def __post_init__(self) -> None:
        self.betas = tuple(self.betas)
        checks = [
            (self.steps >= 1, f"steps must be at least 1, got {self.steps}"),
            (self.stop_at is None or 1 <= self.stop_at <= self.steps,
             f"stop_at must be between 1 and steps ({self.steps}), got {self.stop_at}"),
            (self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}"),
            (self.lr > 0, f"lr must be positive, got {self.lr}"),
            (self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}"),
            (len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
             f"betas must be two numbers in [0, 1), got {self.betas}"),
            (0 <= self.warmup_steps <= self.steps,
             f"warmup_steps must be between 0 and steps ({self.steps}), got {self.warmup_steps}"),
            (self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}"),
            (0 <= self.min_lr_ratio <= 1, f"min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}"),
            (self.grad_accum >= 1, f"grad_accum must be at least 1, got {self.grad_accum}"),
            (self.grad_clip is None or self.grad_clip > 0,
             f"grad_clip must be positive or None (off), got {self.grad_clip}"),
            (self.ema_decay is None or 0 < self.ema_decay < 1,
             f"ema_decay must be in (0, 1) or None (off), got {self.ema_decay}"),
            (self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}"),
            (self.device in DEVICES, f"device must be one of {', '.join(DEVICES)}, got {self.device!r}"),
            (self.checkpoint_every >= 1, f"checkpoint_every must be at least 1, got {self.checkpoint_every}"),
            (self.log_every >= 1, f"log_every must be at least 1, got {self.log_every}"),
            (self.validate_every is None or self.validate_every >= 1,
             f"validate_every must be at least 1 or None (off), got {self.validate_every}"),
            (self.num_workers is None or self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}"),
            (self.strategy in STRATEGIES, f"strategy must be one of {', '.join(STRATEGIES)}, got {self.strategy!r}"),
            (not (self.strategy == "fsdp" and self.precision == "fp16"),
             "precision fp16 needs a gradient scaler that FSDP shards; use bf16 (or fp32) with strategy fsdp"),
        ]
        for ok, message in checks:
            if not ok:
                raise UserError(message)
