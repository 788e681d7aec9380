"""The training loop on a toy conv autoencoder whose losses use torch randomness (masking, dropout)."""

from __future__ import annotations

import json
import math
import os
import signal
import socket
from dataclasses import dataclass, replace
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn
from torch.optim.optimizer import register_optimizer_step_pre_hook
from toy_videos import ToyClips, collate

from vidtool import checkpoint
from vidtool.errors import UserError
from vidtool.train import state as state_module
from vidtool.train.config import TrainConfig
from vidtool.train.loop import train
from vidtool.train.schedule import lr_at
from vidtool.train.state import load_state


@dataclass
class ToyConfig:
    hidden: int = 8
    dropout: float = 0.1
    mask_ratio: float = 0.25


class ToyAE(nn.Module):
    family = "toy-ae"
    config_class = ToyConfig

    def __init__(self, config: ToyConfig):
        super().__init__()
        self.config = config
        self.encode = nn.Conv3d(3, config.hidden, 3, padding=1)
        self.decode = nn.Conv3d(config.hidden, 3, 3, padding=1)
        self.dropout = nn.Dropout(config.dropout)
        self.seen: list[int] = []  # dataset indices, in the order the losses saw them

    def forward(self, video: torch.Tensor) -> torch.Tensor:
        return self.decode(self.dropout(F.gelu(self.encode(video))))

    def training_losses(self, batch, *, step, total_steps):
        video = batch["video"]
        self.seen.extend(batch["index"].tolist())
        b, _, t, h, w = video.shape
        keep = (torch.rand(b, 1, t, h, w, device=video.device) >= self.config.mask_ratio).to(video.dtype)
        mse = F.mse_loss(self(video * keep), video)
        return {"loss": mse, "mse": mse.detach()}


def make_model(init_seed: int = 0, **config) -> ToyAE:
    torch.manual_seed(init_seed)
    return ToyAE(ToyConfig(**config))


def cpu_config(**overrides) -> TrainConfig:
    base = dict(steps=10, batch_size=4, lr=1e-2, device="cpu", checkpoint_every=4,
                log_every=1, seed=7)
    return TrainConfig(**{**base, **overrides})


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}


def assert_state_dicts_equal(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(autouse=True)
def toy_family(monkeypatch):
    monkeypatch.setitem(checkpoint.FAMILIES, "toy-ae", f"{ToyAE.__module__}:ToyAE")


@pytest.fixture(autouse=True)
def one_thread():
    # Toy tensors gain nothing from threads, and on a shared machine spinning threads cost 50x.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def test_loss_falls_over_30_steps(tmp_path):
    result = train(make_model(), ToyClips(), collate, cpu_config(steps=30, log_every=5), tmp_path / "run")
    losses = [r["loss"] for r in records(tmp_path / "run")]
    assert len(losses) == 6
    assert losses[-1] < 0.5 * losses[0]
    assert result.step == 30 and result.samples_seen == 30 * 4
    assert checkpoint.from_pretrained(tmp_path / "run").family == "toy-ae"


def test_lr_schedule_matches_closed_forms_at_warmup_end_midpoint_and_end(tmp_path):
    lr, warmup, steps, floor = 1e-2, 4, 12, 0.1
    for schedule, quarter in [("cosine", 0.5 * (1 + math.cos(math.pi / 4))), ("linear", 0.75)]:
        config = cpu_config(steps=steps, lr=lr, warmup_steps=warmup, schedule=schedule, min_lr_ratio=floor)
        assert lr_at(1, config) == pytest.approx(lr / warmup)
        assert lr_at(warmup, config) == pytest.approx(lr)
        assert lr_at(6, config) == pytest.approx(lr * (floor + (1 - floor) * quarter))
        assert lr_at(8, config) == pytest.approx(lr * (1 + floor) / 2)
        assert lr_at(steps, config) == pytest.approx(lr * floor)
    constant = cpu_config(steps=steps, lr=lr, warmup_steps=warmup, schedule="constant")
    assert [lr_at(s, constant) for s in (2, 4, 8, 12)] == pytest.approx([lr / 2, lr, lr, lr])

    # ... and the loop uses it: the logged LR of update s is lr_at(s).
    config = cpu_config(steps=steps, lr=lr, warmup_steps=warmup, min_lr_ratio=floor)
    train(make_model(), ToyClips(), collate, config, tmp_path / "run", progress=False)
    logged = {r["step"]: r["lr"] for r in records(tmp_path / "run")}
    assert logged[warmup] == pytest.approx(lr)
    assert logged[8] == pytest.approx(lr * (1 + floor) / 2)
    assert logged[steps] == pytest.approx(lr * floor)


def test_two_micro_batches_of_4_give_the_gradient_of_one_batch_of_8(tmp_path):
    gradients: list[list[torch.Tensor]] = []

    def grab(optimizer, args, kwargs):
        gradients.append([p.grad.clone() for group in optimizer.param_groups for p in group["params"]])

    handle = register_optimizer_step_pre_hook(grab)
    try:
        models = []
        for name, batch_size, grad_accum in [("accum", 4, 2), ("whole", 8, 1)]:
            model = make_model(dropout=0.0, mask_ratio=0.0)
            config = cpu_config(steps=1, batch_size=batch_size, grad_accum=grad_accum, grad_clip=None)
            train(model, ToyClips(), collate, config, tmp_path / name, progress=False)
            models.append(model)
    finally:
        handle.remove()
    accumulated, whole = gradients
    assert models[0].seen == models[1].seen and len(models[0].seen) == 8
    for a, b in zip(accumulated, whole):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def test_ema_equals_its_closed_form_after_two_steps(tmp_path):
    """With the warm-up: d_n = min(decay, (1 + n) / (10 + n))."""
    decay = 0.9
    model = make_model()
    snapshots = [{k: v.clone() for k, v in model.state_dict().items()}]
    train(model, ToyClips(), collate, cpu_config(steps=2, ema_decay=decay), tmp_path / "run", progress=False,
          on_log=lambda record: snapshots.append({k: v.clone() for k, v in model.state_dict().items()}))
    p0, p1, p2 = snapshots
    saved = load_file(tmp_path / "run" / "model.safetensors")
    d1, d2 = 2 / 11, 3 / 12  # the warm-up decays (1 + n) / (10 + n), below 0.9 for the first updates
    for name, value in saved.items():
        expected = d2 * (d1 * p0[name] + (1 - d1) * p1[name]) + (1 - d2) * p2[name]
        torch.testing.assert_close(value, expected, rtol=1e-6, atol=1e-7)
    assert_state_dicts_equal(model.state_dict(), p2)  # the model object keeps the trained weights


@pytest.mark.parametrize("signum, raised", [(signal.SIGTERM, SystemExit), (signal.SIGINT, KeyboardInterrupt)])
def test_run_stopped_by_a_signal_resumes_bit_identically(tmp_path, signum, raised):
    config = cpu_config(warmup_steps=2, ema_decay=0.8)
    full = make_model()
    train(full, ToyClips(), collate, config, tmp_path / "full", progress=False)

    def stop_at_6(record):
        if record["step"] == 6:
            signal.raise_signal(signum)

    first = make_model()
    with pytest.raises(raised):
        train(first, ToyClips(), collate, config, tmp_path / "split", progress=False, on_log=stop_at_6)
    assert load_state(tmp_path / "split" / "train_state").step == 6  # between the periodic ones (4, 8)
    second = make_model(init_seed=123)  # fresh object, other init: the weights must come from the state
    result = train(second, ToyClips(), collate, replace(config, resume=True), tmp_path / "split", progress=False)

    assert result.step == 10 and result.samples_seen == 40
    assert_state_dicts_equal(second.state_dict(), full.state_dict())
    for name in ["model.safetensors", "train_state/tensors-00000010.safetensors"]:
        assert_state_dicts_equal(load_file(tmp_path / "split" / name), load_file(tmp_path / "full" / name))
    # The same samples in the same order: no repeats, no skips; each epoch of 12 is a permutation.
    assert first.seen + second.seen == full.seen
    assert [sorted(full.seen[i : i + 12]) for i in (0, 12, 24)] == [list(range(12))] * 3
    # Speed and memory are measurements of the process, not of the run.
    without_speed = lambda rs: [{k: v for k, v in r.items() if k not in ("it_per_s", "peak_memory_gib")} for r in rs]
    assert without_speed(records(tmp_path / "split")) == without_speed(records(tmp_path / "full"))
    assert files_under(tmp_path / "split") == {
        "config.json", "model.safetensors", "metrics.jsonl", "train_state/state.json",
        "train_state/tensors-00000010.safetensors",
    }


def test_finished_run_continued_to_more_steps_equals_one_longer_run(tmp_path):
    # With a constant schedule nothing depends on the planned total, so 6 then 4 more == 10.
    config = cpu_config(schedule="constant")
    full, first, second = make_model(), make_model(), make_model()
    train(full, ToyClips(), collate, config, tmp_path / "full", progress=False)
    train(first, ToyClips(), collate, replace(config, steps=6), tmp_path / "split", progress=False)
    train(second, ToyClips(), collate, replace(config, resume=True), tmp_path / "split", progress=False)
    assert_state_dicts_equal(second.state_dict(), full.state_dict())
    assert first.seen + second.seen == full.seen


def test_stop_at_checkpoints_mid_schedule_and_resume_finishes_the_uninterrupted_run(tmp_path):
    # A cosine schedule over 10 steps, cut at step 7 by --stop-at: the first part must follow the
    # 10-step schedule (not a 7-step one), so resuming gives exactly the uninterrupted run.
    config = cpu_config(warmup_steps=2, ema_decay=0.8)
    full, first, second = make_model(), make_model(), make_model()
    train(full, ToyClips(), collate, config, tmp_path / "full", progress=False)
    result = train(first, ToyClips(), collate, replace(config, stop_at=7), tmp_path / "split", progress=False)
    assert result.step == 7 and load_state(tmp_path / "split" / "train_state").step == 7
    assert [r["lr"] for r in records(tmp_path / "split")] == [r["lr"] for r in records(tmp_path / "full")][:7]
    train(second, ToyClips(), collate, replace(config, resume=True), tmp_path / "split", progress=False)
    assert_state_dicts_equal(second.state_dict(), full.state_dict())
    assert_state_dicts_equal(load_file(tmp_path / "split" / "model.safetensors"),
                             load_file(tmp_path / "full" / "model.safetensors"))
    with pytest.raises(UserError, match="stop_at"):
        cpu_config(stop_at=11)


class FlippedClips(ToyClips):
    def __getitem__(self, i: int):
        item = super().__getitem__(i)
        if torch.rand(()) < 0.5:  # an augmentation drawn from the worker's global RNG
            item["video"] = item["video"].flip(-1)
        return item


def test_resume_is_exact_with_data_workers_and_random_augmentation(tmp_path):
    config = cpu_config(num_workers=2, steps=6, checkpoint_every=3)
    full, first, second = make_model(), make_model(), make_model()
    train(full, FlippedClips(), collate, config, tmp_path / "full", progress=False)
    with pytest.raises(SystemExit):
        train(first, FlippedClips(), collate, config, tmp_path / "split", progress=False,
              on_log=lambda r: r["step"] == 3 and signal.raise_signal(signal.SIGTERM))
    train(second, FlippedClips(), collate, replace(config, resume=True), tmp_path / "split", progress=False)
    assert_state_dicts_equal(second.state_dict(), full.state_dict())


def test_failed_checkpoint_write_leaves_no_partial_file_and_keeps_the_previous_state(tmp_path, monkeypatch):
    writes = []

    def save_then_fail_the_second_time(tensors, path):
        writes.append(path)
        if len(writes) == 2:
            Path(path).write_bytes(b"half a file")
            raise OSError("No space left on device")
        save_file(tensors, path)

    monkeypatch.setattr(state_module, "save_file", save_then_fail_the_second_time)
    out = tmp_path / "run"
    with pytest.raises(OSError, match="No space"):
        train(make_model(), ToyClips(), collate, cpu_config(steps=4, checkpoint_every=2), out, progress=False)
    assert not [name for name in files_under(out) if name.endswith(".tmp")]
    saved = load_state(out / "train_state")
    assert saved.step == 2 and saved.samples_seen == 8
    assert files_under(out / "train_state") == {"state.json", "tensors-00000002.safetensors"}


def test_training_state_is_json_and_safetensors_only_never_pickle(tmp_path):
    out = tmp_path / "run"
    train(make_model(), ToyClips(), collate, cpu_config(steps=2, ema_decay=0.9), out, progress=False)
    for path in (out / "train_state").iterdir():
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            assert path.suffix == ".safetensors"
            with safe_open(str(path), "pt") as f:
                assert {k.split("/")[0] for k in f.keys()} == {"model", "ema", "optimizer"}
    saved = load_state(out / "train_state")
    assert saved.step == 2 and set(saved.optimizer["state"]) == {0, 1, 2, 3}  # int keys survive JSON


def test_refuses_to_overwrite_a_run_without_resume_and_bad_options(tmp_path):
    out = tmp_path / "run"
    train(make_model(), ToyClips(), collate, cpu_config(steps=1), out, progress=False)
    with pytest.raises(UserError, match="--resume"):
        train(make_model(), ToyClips(), collate, cpu_config(steps=1), out, progress=False)
    with pytest.raises(UserError, match="seed"):
        train(make_model(), ToyClips(), collate, cpu_config(steps=2, seed=8, resume=True), out, progress=False)
    with pytest.raises(UserError, match="CUDA"):
        train(make_model(), ToyClips(), collate, cpu_config(precision="fp16"), tmp_path / "fp16", progress=False)
    with pytest.raises(UserError, match="schedule"):
        TrainConfig(schedule="cosin")


def _ddp_worker(rank: int, world_size: int, port: int, out: str, dumps: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    model = make_model(init_seed=rank)  # DDP must start every rank from rank 0's weights
    # deterministic=False: turning it on imports torch._inductor, seconds per process.
    config = cpu_config(steps=4, batch_size=2, grad_accum=2, checkpoint_every=2, ema_decay=0.9, deterministic=False)
    train(model, ToyClips(8), collate, config, out, progress=False)
    save_file(model.state_dict(), f"{dumps}/rank{rank}.safetensors")
    Path(f"{dumps}/rank{rank}.json").write_text(json.dumps(model.seen))


@pytest.mark.slow  # two fresh processes importing torch: 15-25 s on a shared 2-core machine
def test_ddp_on_two_gloo_processes_keeps_ranks_identical_and_only_rank_0_writes(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out, dumps = tmp_path / "run", tmp_path / "dumps"
    dumps.mkdir()
    torch.multiprocessing.spawn(_ddp_worker, args=(2, port, str(out), str(dumps)), nprocs=2, join=True)

    rank0, rank1 = (load_file(dumps / f"rank{r}.safetensors") for r in (0, 1))
    assert_state_dicts_equal(rank0, rank1)
    saved = load_state(out / "train_state")
    assert_state_dicts_equal(saved.model, rank0)
    assert saved.ema is not None and saved.samples_seen == 32
    assert [r["step"] for r in records(out)] == [1, 2, 3, 4]  # one writer, one record per step
    assert files_under(out) == {"config.json", "model.safetensors", "metrics.jsonl", "train_state/state.json",
                                "train_state/tensors-00000004.safetensors"}
    # 4 steps x 2 micro-batches x 2 ranks x 2 samples = 32 = 4 epochs of 8, split between the ranks.
    seen = [json.loads((dumps / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert len(seen[0]) == len(seen[1]) == 16
    stream = [i for k in range(8) for r in (0, 1) for i in seen[r][2 * k : 2 * k + 2]]
    assert [sorted(stream[e * 8 : e * 8 + 8]) for e in range(4)] == [list(range(8))] * 4


def test_bf16_autocast_trains_on_the_cpu_with_fp32_master_weights(tmp_path):
    """precision bf16 is CPU autocast here (the GPU path, emulated): the loss goes down and what is
    saved (weights, optimizer moments) stays fp32."""
    from safetensors.torch import load_file

    result = train(make_model(), ToyClips(), collate, cpu_config(precision="bf16"), tmp_path / "bf16", progress=False)
    records = [json.loads(line) for line in (tmp_path / "bf16" / "metrics.jsonl").read_text().splitlines()]
    assert result.step == 10 and records[-1]["loss"] < records[0]["loss"]
    assert {t.dtype for t in load_file(tmp_path / "bf16" / "model.safetensors").values()} == {torch.float32}
    moments = load_state(tmp_path / "bf16" / "train_state").optimizer["state"]
    assert all(v.dtype == torch.float32 for m in moments.values() for k, v in m.items() if k != "step")


@pytest.mark.slow  # ~17 s: two short training runs through the stage
def test_resume_without_saved_state_is_an_error_unless_resume_or_start(tmp_path):
    """`--resume` on a folder with no run would silently start from scratch; it is refused, and
    `--resume-or-start` (a job array's first task, a preemptible queue) starts, then continues."""
    from stage_runner import run_stage

    assert run_stage("make-dataset", "shapes", "-n", "2", "--frames", "4", "--size", "32", "-o", tmp_path / "data") == 0
    data = tmp_path / "data" / "manifest.jsonl"
    args = ["train-vae", "--family", "movq-temporal", "--data", data, "--steps", "2", "--batch-size", "1",
            "--frames", "4", "--size", "32", "--checkpoint-every", "1", "-o", tmp_path / "run"]
    assert run_stage(*args, "--resume") == 2 and not (tmp_path / "run").exists()
    assert run_stage(*args, "--resume-or-start", "--stop-at", "1") == 0
    assert run_stage(*args, "--resume-or-start") == 0
    assert json.loads((tmp_path / "run" / "train_state" / "state.json").read_text())["step"] == 2
