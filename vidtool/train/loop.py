"""The training loop.

Exact resume rests on two rules, so that no RNG state has to outlive the process:
- The data order is a pure function of (seed, epoch). The run reads one stream of samples, counted
  over all ranks; position p is item perm_{seed + p // N}[p % N] of the N-item dataset, where
  perm_e is `torch.randperm(N)` drawn from a generator seeded with e. The state saves the position,
  so a resumed run neither repeats nor skips a sample.
- Randomness is reseeded from its coordinates: python, numpy and torch from (seed, position) before
  an item is loaded (augmentations replay, in any DataLoader worker), and from (seed, position of the
  micro-batch's first sample) before the model computes its losses (masking, noise, dropout).

Bucketed runs (`plan`, a vidtool.data.buckets.BucketPlan) count batches instead of samples: the
plan maps batch n to its items and bucket, micro-batch k of rank r is batch k * world_size + r of the
step's, items are seeded from (seed, n, slot) and losses from (seed, n), and the state saves the batch
number with the plan's description, which a resumed run must match.

With a fixed seed on one machine, N uninterrupted steps and k steps, a new process, then N - k more
give bit-identical weights on CPU. Since nothing is keyed by rank, R ranks with micro-batch B and
accumulation A see the same samples with the same noise as one process with micro-batch B and
accumulation R * A: the same updates up to float rounding, which is what lets a run saved by R ranks
resume on any other number (the state is consolidated; see vidtool.train.parallel).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import os
import random
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader, Dataset

from vidtool.checkpoint import save_pretrained
from vidtool.errors import UserError
from vidtool.train import parallel
from vidtool.train.config import TrainConfig
from vidtool.train.ema import EMA
from vidtool.train.schedule import lr_at
from vidtool.train.state import STATE_DIR, STATE_NAME, TrainingState, load_state, save_state

METRICS_NAME = "metrics.jsonl"


@dataclass
class TrainResult:
    out_dir: Path
    step: int  # optimizer updates done
    samples_seen: int  # over all ranks
    metrics: dict[str, float]  # the last record of metrics.jsonl written by this call ({} if none)


def train(
    model: nn.Module,
    dataset: Dataset,
    collate_fn: Callable[[list[Any]], dict[str, Any]] | None,
    config: TrainConfig,
    out_dir: str | Path,
    *,
    progress: bool = True,
    on_log: Callable[[dict[str, float]], None] | None = None,
    plan: Any = None,
    validate: Callable[[nn.Module, int], None] | None = None,
) -> TrainResult:
    """Train `model` in place and leave `out_dir` a model folder with its resume state and metrics.

    Under torchrun (WORLD_SIZE > 1) every rank calls this; rank 0 alone writes files, draws the
    progress bar and calls `on_log(record)` for each metrics record (losses averaged over all ranks).
    `batch_size` is per rank and micro-batch: an update sees batch_size * grad_accum * world_size
    samples. `config.strategy` picks DDP or FSDP2 when there is more than one rank. SIGINT or SIGTERM
    finish the current step, write a checkpoint, then raise KeyboardInterrupt or SystemExit(143).
    With `plan` (see the module docstring) batches come from `dataset.read(index, bucket, image)` and
    `config.batch_size` is unused: each bucket has its own.
    Every `config.validate_every` updates rank 0 calls `validate(model, step)` with the weights a
    checkpoint would save (the EMA when on), in eval mode and without gradients; the other ranks wait.
    """
    if not callable(getattr(model, "training_losses", None)):
        raise UserError(f"{type(model).__name__} has no training_losses(); this model family cannot be trained")
    if len(dataset) == 0:
        raise UserError("the training dataset is empty; check the manifest or folder it was built from")
    out_dir = Path(out_dir)
    with (_distributed(config.device, group=config.strategy == "fsdp") as world, _deterministic(config.deterministic),
          _StopRequest() as stop):
        # Under torchrun FSDP shards even on one rank (one GPU): the same code path as on many.
        sharded = config.strategy == "fsdp" and dist.is_initialized()
        if validate is not None and config.validate_every and sharded:
            raise UserError("validation samples need the whole model on one rank; under --strategy fsdp drop "
                            "--validate-every (sample a checkpoint with `vidtool generate` instead)")
        compute_dtype = _autocast_dtype(config.precision, world.device, sharded)
        # Under FSDP the model stays where it was built (rank 0's host, the meta device elsewhere)
        # until sharding puts each rank's shards on the device.
        if not sharded:
            model.to(world.device)
        model.train()
        # Under FSDP only rank 0 reads the saved tensors: sharding broadcasts its weights, and the
        # optimizer moments and EMA are scattered from it; the other ranks read the counters.
        data_order = plan.describe() if plan is not None else None
        resumed = _load_resume_state(out_dir, config, len(dataset), data_order,
                                     tensors=world.rank == 0 or not sharded)
        if resumed and resumed.model:
            _load_weights(model, resumed.model)
        if config.activation_checkpointing:
            parallel.checkpoint_activations(model)
        losses: nn.Module = _Losses(model)
        # Wrapping broadcasts rank 0's weights, so it comes before the EMA copies them.
        if sharded:  # FSDP's mixed-precision policy casts the parameters, so no autocast on top
            parallel.shard(losses, model, compute_dtype, world.device)
        elif world.size > 1:
            device_ids = [world.device.index] if world.device.type == "cuda" else None
            # Unused parameters are normal here: image batches skip temporal layers, GAN terms start late.
            losses = DistributedDataParallel(losses, device_ids=device_ids, find_unused_parameters=True)
        autocast_dtype = None if sharded else compute_dtype
        trainable = {name: p for name, p in model.named_parameters() if p.requires_grad}
        optimizer = _adamw(trainable, config)
        scaler = torch.amp.GradScaler(world.device.type, enabled=autocast_dtype is torch.float16)
        # Only rank 0 saves, so under DDP only rank 0 spends memory on the EMA; under FSDP each rank
        # averages its own shard.
        keeps_ema = config.ema_decay is not None and (world.rank == 0 or sharded)
        ema = EMA(trainable, config.ema_decay) if keeps_ema else None
        step, seen = _restore(resumed, model, optimizer, scaler, ema)
        batches_seen = resumed.batches_seen if resumed else 0

        per_micro = config.batch_size * world.size
        micro_count = (config.steps - step) * config.grad_accum
        if plan is None:
            stream = _SampleStream(dataset, config.seed)
            micro_batches = _MicroBatches(seen, micro_count, config.batch_size, world.rank, world.size)
        else:
            stream = _PlannedStream(dataset, plan, config.seed)
            micro_batches = _PlannedBatches(plan, batches_seen, micro_count, world.rank, world.size)
        batches = iter(DataLoader(
            stream,
            batch_sampler=micro_batches,
            collate_fn=collate_fn,
            num_workers=(workers := _workers(config.num_workers, world.device)),
            persistent_workers=workers > 0,
            worker_init_fn=_ignore_stop_signals,
            pin_memory=world.device.type == "cuda",
        ))

        def checkpoint() -> None:
            """The model folder gets the weights to use (the EMA when on), train_state the rest; both
            hold full tensors, whatever the strategy."""
            if sharded:  # gathering the shards is a collective: every rank takes part
                weights = parallel.full_model_state(model)
                moments = parallel.full_optimizer_state(model, optimizer)
                averages = parallel.full_on_rank0(ema.state_dict(), world.rank) if ema else None
            elif world.rank == 0:
                weights, moments = model.state_dict(), optimizer.state_dict()
                averages = ema.state_dict() if ema else None
            if world.rank == 0:
                extra = {"train": {"step": step, "ema": ema is not None}}
                if sharded:
                    save_pretrained(model, out_dir, extra=extra, tensors={**weights, **(averages or {})})
                else:
                    with ema.swapped_into(trainable) if ema else contextlib.nullcontext():
                        save_pretrained(model, out_dir, extra=extra)
                save_state(out_dir / STATE_DIR, TrainingState(
                    step=step, samples_seen=seen, dataset_size=len(dataset), world_size=world.size,
                    config=dataclasses.asdict(config), model=weights, optimizer=moments,
                    scaler=scaler.state_dict(), ema=averages, batches_seen=batches_seen, data_order=data_order,
                ))
            world.barrier()

        last_step = config.steps if config.stop_at is None else config.stop_at
        with _Reporter(out_dir, config, step, world, progress=progress, on_log=on_log) as report:
            while step < last_step:
                lr = lr_at(step + 1, config)
                for group in optimizer.param_groups:
                    group["lr"] = lr
                for micro in range(config.grad_accum):
                    batch = _to_device(next(batches), world.device)
                    if plan is None:
                        first_sample = seen + (micro * world.size + world.rank) * config.batch_size
                        _seed_everything(_derive_seed(config.seed, "batch", first_sample))
                    else:
                        number = batches_seen + micro * world.size + world.rank
                        _seed_everything(_derive_seed(config.seed, "planned batch", number))
                    last = micro == config.grad_accum - 1
                    # DDP all-reduces on the last micro-batch only; FSDP reduce-scatters each one
                    # into the sharded gradients, which keeps gradient memory sharded too.
                    accumulate_locally = not last and world.size > 1 and not sharded
                    with losses.no_sync() if accumulate_locally else contextlib.nullcontext():
                        with _autocast(world.device, autocast_dtype):
                            terms = losses(batch, step, config.steps)
                        scaler.scale(terms["loss"] / config.grad_accum).backward()
                    report.add_terms(terms)
                scaler.unscale_(optimizer)
                grad_norm = parallel.full(torch.nn.utils.clip_grad_norm_(trainable.values(), config.grad_clip or math.inf))
                scaler.step(optimizer)
                scaler.update()
                optimizer.zero_grad(set_to_none=True)
                if ema is not None:
                    ema.update(trainable, step + 1)
                if plan is None:
                    step, seen = step + 1, seen + per_micro * config.grad_accum
                else:  # every rank knows every batch's size: no need to gather them
                    done = range(batches_seen, batches_seen + world.size * config.grad_accum)
                    step, seen = step + 1, seen + sum(len(plan.batch(n).indices) for n in done)
                    batches_seen = done.stop
                report.step_done(step, seen, lr, grad_norm)
                if validate is not None and config.validate_every and step % config.validate_every == 0:
                    _validate(validate, model, trainable, ema, step, world)

                stop_signal = world.agree(stop.signal)
                if step % config.checkpoint_every == 0 or step == last_step or stop_signal:
                    checkpoint()
                if stop_signal == signal.SIGINT:
                    raise KeyboardInterrupt
                if stop_signal:
                    raise SystemExit(128 + stop_signal)
        return TrainResult(out_dir, step, seen, report.last)


def _validate(validate: Callable[[nn.Module, int], None], model: nn.Module, trainable: dict[str, nn.Parameter],
              ema: EMA | None, step: int, world: _World) -> None:
    """Rank 0 runs `validate` on the weights it would save. Training randomness is reseeded from
    its coordinates before every item and micro-batch, so what validation draws changes no update."""
    if world.rank == 0:
        model.eval()
        with torch.no_grad(), ema.swapped_into(trainable) if ema else contextlib.nullcontext():
            validate(model, step)
        model.train()
    world.barrier()


def _load_resume_state(out_dir: Path, config: TrainConfig, dataset_size: int, data_order: str | None,
                       tensors: bool = True) -> TrainingState | None:
    state_dir = out_dir / STATE_DIR
    if not config.resume:
        if (state_dir / STATE_NAME).is_file():
            raise UserError(f"{out_dir} already holds a training run; pass --resume to continue it "
                            "or choose a new output folder")
        return None
    state = load_state(state_dir, tensors=tensors)
    if state is None:
        return None
    if state.step > config.steps:
        raise UserError(f"the run in {out_dir} is at step {state.step}, past steps={config.steps}; ask for more steps")
    if state.dataset_size != dataset_size:
        raise UserError(f"the run in {out_dir} was trained on {state.dataset_size} items but the dataset now has "
                        f"{dataset_size}; resume with the same data or start a new run")
    if state.data_order != data_order:
        said = {None: "plain batches (no --buckets)"}
        raise UserError(f"the run in {out_dir} was trained on {said.get(state.data_order, state.data_order)}, "
                        f"this one asks for {said.get(data_order, data_order)}; resume with the same --buckets "
                        "and --image-every, or start a new run")
    if state.config["seed"] != config.seed:
        raise UserError(f"the run in {out_dir} uses seed {state.config['seed']}; "
                        "resume with that seed for the same data order")
    return state


def _load_weights(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as e:
        raise UserError(f"the saved training state does not fit this model ({str(e).splitlines()[0]}); "
                        "resume with the configuration the run was started with") from e


def _restore(state: TrainingState | None, model: nn.Module, optimizer: torch.optim.Optimizer,
             scaler: torch.amp.GradScaler, ema: EMA | None) -> tuple[int, int]:
    """Load the optimizer, scaler and EMA from `state` (full tensors, cut into this rank's shards
    when the model is sharded); return (step, samples seen)."""
    if state is None:
        return 0, 0
    sharded = any(parallel.is_sharded(p) for p in model.parameters())
    try:
        if sharded:
            parallel.load_optimizer_state(model, optimizer, state.optimizer)
        else:
            optimizer.load_state_dict(state.optimizer)
    except (ValueError, KeyError, IndexError) as e:
        raise UserError(f"the saved optimizer state does not fit this model ({e}); "
                        "resume with the same trainable parameters") from e
    if state.scaler:
        scaler.load_state_dict(state.scaler)
    if ema is not None and sharded and state.config.get("ema_decay") is not None:
        # Rank 0 holds the full averages; every rank gets its shard of each, one tensor at a time.
        full = state.ema or {}  # empty on the ranks that did not read the tensors
        ema.load_state_dict({name: parallel.shard_like(full[name] if name in full else torch.empty(like.shape, dtype=like.dtype),
                                                       like) for name, like in ema.shadow.items()})
    elif ema is not None and state.ema is not None:
        ema.load_state_dict(state.ema)
    return state.step, state.samples_seen


def _adamw(trainable: dict[str, nn.Parameter], config: TrainConfig) -> torch.optim.AdamW:
    if not trainable:
        raise UserError("the model has no trainable parameters")
    # Decay matrices and kernels only; decaying biases and norm gains only hurts (as in nanoGPT).
    decay = [p for p in trainable.values() if p.ndim >= 2]
    no_decay = [p for p in trainable.values() if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr, betas=config.betas)


class _Losses(nn.Module):
    """Routes `training_losses` through `forward`, the call DistributedDataParallel hooks into."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, Any], step: int, total_steps: int) -> dict[str, torch.Tensor]:
        terms = self.model.training_losses(batch, step=step, total_steps=total_steps)
        if "loss" not in terms:
            raise TypeError(f"{type(self.model).__name__}.training_losses must return a dict with the key 'loss'")
        return terms


# --- data order -------------------------------------------------------------------------------


class _SampleStream(Dataset):
    """Maps a position of the run's sample stream to a dataset item (see the module docstring)."""

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed, self.size = dataset, seed, len(dataset)
        self._epoch, self._perm = -1, torch.empty(0, dtype=torch.long)

    def __getitem__(self, position: int) -> Any:
        epoch, offset = divmod(position, self.size)
        if epoch != self._epoch:
            self._epoch = epoch
            self._perm = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + epoch))
        _seed_everything(_derive_seed(self.seed, "item", position))
        return self.dataset[int(self._perm[offset])]


class _MicroBatches:
    """Positions for one rank: micro-batch k of the run takes the batch_size * world_size positions
    after `start + k * batch_size * world_size`, and rank r the r-th slice of batch_size of them."""

    def __init__(self, start: int, count: int, batch_size: int, rank: int, world_size: int):
        self.start, self.count, self.batch_size, self.rank, self.world_size = start, count, batch_size, rank, world_size

    def __iter__(self) -> Iterator[list[int]]:
        for k in range(self.count):
            first = self.start + (k * self.world_size + self.rank) * self.batch_size
            yield list(range(first, first + self.batch_size))

    def __len__(self) -> int:
        return self.count


class _PlannedStream(Dataset):
    """Maps (batch number, slot) of a bucketed run to the item the plan puts there, read at its bucket."""

    def __init__(self, dataset: Dataset, plan: Any, seed: int):
        self.dataset, self.plan, self.seed = dataset, plan, seed

    def __getitem__(self, key: tuple[int, int]) -> Any:
        number, slot = key
        planned = self.plan.batch(number)
        _seed_everything(_derive_seed(self.seed, "planned item", number, slot))
        return self.dataset.read(planned.indices[slot], planned.bucket, planned.image)


class _PlannedBatches:
    """Keys for one rank of a bucketed run: its k-th micro-batch is the whole of batch
    `start + k * world_size + rank`, one bucket's."""

    def __init__(self, plan: Any, start: int, count: int, rank: int, world_size: int):
        self.plan, self.start, self.count, self.rank, self.world_size = plan, start, count, rank, world_size

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for k in range(self.count):
            number = self.start + k * self.world_size + self.rank
            yield [(number, slot) for slot in range(len(self.plan.batch(number).indices))]

    def __len__(self) -> int:
        return self.count


def _derive_seed(*coordinates: Any) -> int:
    digest = hashlib.sha256(repr(coordinates).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1  # torch seeds are signed 64-bit


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also every CUDA device, lazily: safe without a GPU


def _ignore_stop_signals(worker_id: int) -> None:
    # Ctrl-C and SLURM's SIGTERM reach every process of the job; the data workers must live until
    # the step in flight is done and saved. They still exit when the main process goes.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: _to_device(v, device) for k, v in batch.items()}
    return batch


# --- processes, devices, precision, signals ---------------------------------------------------


@dataclass
class _World:
    rank: int
    size: int
    device: torch.device

    def agree(self, signum: int) -> int:
        """The largest stop signal any rank received, so that all ranks stop after the same step."""
        if self.size == 1:
            return signum
        flag = torch.tensor([signum], device=self.device)
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return int(flag.item())

    def barrier(self) -> None:
        if self.size > 1:
            dist.barrier()


@contextlib.contextmanager
def _distributed(device_choice: str, group: bool = False) -> Iterator[_World]:
    """One process, or a process group when torchrun set WORLD_SIZE > 1, or set up a one-rank run
    and `group` asks for one (FSDP) (gloo on CPU, nccl on CUDA)."""
    if device_choice == "cuda" and not torch.cuda.is_available():
        raise UserError("device cuda was asked for but no CUDA GPU is visible; use device auto or cpu")
    use_cuda = device_choice != "cpu" and torch.cuda.is_available()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    launched = "MASTER_ADDR" in os.environ and "RANK" in os.environ  # torchrun's environment
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1 and not (group and (launched or dist.is_initialized())):
        yield _World(0, 1, device)
        return
    owns_group = not dist.is_initialized()
    if owns_group:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        yield _World(dist.get_rank(), dist.get_world_size(), device)
    finally:
        if owns_group:
            dist.destroy_process_group()


@contextlib.contextmanager
def _deterministic(enabled: bool) -> Iterator[None]:
    if not enabled:
        yield
        return
    if torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # required by deterministic cuBLAS
    before = torch.are_deterministic_algorithms_enabled(), torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(before[0], warn_only=before[1])


def _workers(requested: int | None, device: torch.device) -> int:
    """DataLoader workers per rank: as requested, else none on CPU (loading would take the cores the
    model computes on) and the CPUs this process may use, shared among the node's ranks, on GPUs."""
    if requested is not None:
        return requested
    if device.type != "cuda":
        return 0
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, cpus // int(os.environ.get("LOCAL_WORLD_SIZE", "1")))


def _autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()


def _autocast_dtype(precision: str, device: torch.device, sharded: bool = False) -> torch.dtype | None:
    """The dtype blocks compute in (by autocast, or by FSDP's policy when `sharded`), None for fp32."""
    if device.type != "cuda":
        if precision == "bf16":  # CPU autocast (or FSDP's cast of the parameters) runs bf16 too
            return torch.bfloat16
        if precision == "fp16":
            raise UserError("precision fp16 needs a CUDA GPU (its gradient scaler is a GPU feature); "
                            "use bf16, auto or fp32 on CPU")
        return None
    if precision == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else None
    return {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


class _StopRequest:
    """SIGINT and SIGTERM set `signal`, checked after each step, so a checkpoint is never taken in
    the middle of an update. A second Ctrl-C aborts at once, without a checkpoint."""

    def __init__(self) -> None:
        self.signal = 0
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if signum == signal.SIGINT and self.signal == signal.SIGINT:
            raise KeyboardInterrupt
        self.signal = signum
        print(f"vidtool train: {signal.Signals(signum).name}, stopping after this step "
              "with a checkpoint (Ctrl-C again aborts without one)", file=sys.stderr)

    def __enter__(self) -> _StopRequest:
        if threading.current_thread() is threading.main_thread():  # handlers can only live there
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


# --- metrics and progress ---------------------------------------------------------------------


def _peak_memory_gib(device: torch.device) -> float:
    """The most memory the run has held so far: CUDA tensors on a GPU, the process's resident set on CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # kilobytes on Linux


class _Reporter:
    """Rank 0's output: a metrics.jsonl record every `log_every` steps (loss terms averaged since the
    previous record over the micro-batches of all ranks, and the grad norm), the progress bar and
    `on_log`. Every rank counts its terms; they are summed over ranks when a record is due."""

    def __init__(self, out_dir: Path, config: TrainConfig, first_step: int, world: _World, *,
                 progress: bool, on_log: Callable[[dict[str, float]], None] | None):
        self.world, self.config, self.on_log = world, config, on_log
        self.enabled = enabled = world.rank == 0
        self.path = out_dir / METRICS_NAME
        self.last: dict[str, float] = {}
        self._sums: dict[str, torch.Tensor] = {}
        self._micro_batches = 0
        self._grad_norm_sum = torch.zeros(())
        self._window_start = (first_step, time.perf_counter())
        if enabled:
            self._keep_records_up_to(first_step)
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self._bar = Progress(
            TextColumn("train"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[status]}"),
            TimeRemainingColumn(), console=Console(stderr=True), disable=not (enabled and progress),
        )
        self._task = self._bar.add_task("train", total=config.steps, completed=first_step, status="")

    def _keep_records_up_to(self, step: int) -> None:
        """Drop records a previous run wrote after its last checkpoint (all of them on a fresh run)."""
        kept = []
        if step > 0 and self.path.is_file():
            for line in self.path.read_text().splitlines():
                with contextlib.suppress(json.JSONDecodeError):
                    if json.loads(line)["step"] <= step:
                        kept.append(line + "\n")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text("".join(kept))

    def __enter__(self) -> _Reporter:
        self._bar.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._bar.stop()

    def add_terms(self, terms: dict[str, torch.Tensor]) -> None:
        for name, value in terms.items():
            self._sums[name] = self._sums.get(name, 0) + parallel.full(value.detach()).float()
        self._micro_batches += 1

    def step_done(self, step: int, samples_seen: int, lr: float, grad_norm: torch.Tensor) -> None:
        self._bar.update(self._task, completed=step)
        self._grad_norm_sum = self._grad_norm_sum.to(grad_norm.device) + grad_norm.detach().float()
        if step % self.config.log_every and step != self.config.steps:
            return
        if self.world.size > 1:  # every rank reaches this line at the same steps
            names = sorted(self._sums)
            sums = torch.stack([self._sums[name] for name in names]).to(self.world.device)
            dist.all_reduce(sums)
            self._sums = dict(zip(names, sums / self.world.size))
        if not self.enabled:
            self._sums, self._micro_batches, self._grad_norm_sum = {}, 0, torch.zeros(())
            return
        first_step, started = self._window_start
        now = time.perf_counter()
        record = {"step": step, **{k: float(v) / self._micro_batches for k, v in self._sums.items()},
                  "lr": lr, "grad_norm": float(self._grad_norm_sum) / (step - first_step),
                  "it_per_s": (step - first_step) / max(now - started, 1e-9), "samples_seen": samples_seen,
                  "peak_memory_gib": _peak_memory_gib(self.world.device)}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self._bar.update(self._task, status=f"loss {record['loss']:.4g}  {record['it_per_s']:.2f} it/s")
        self._sums, self._micro_batches, self._grad_norm_sum = {}, 0, torch.zeros(())
        self._window_start = (step, now)
        self.last = record
        if self.on_log is not None:
            self.on_log(record)
