"""Multi-process training on CPU (gloo): DDP and FSDP2 against one process on the same global batch,
checkpoints moving between world sizes, and a run killed with SIGKILL.

Two ranks with micro-batch 2 and one process with micro-batch 2 and 2-step accumulation see the same
samples with the same noise (the trainer seeds each micro-batch by its first sample's position, not
by rank), so their updates agree up to float rounding: all-reduce averages (g0 + g1) / 2 where one
process accumulates g0 / 2 + g1 / 2. Tolerances below are float32 rounding over 6 AdamW steps.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from distributed_toys import make_model, run
from vidtool.train.state import load_state

BASE = dict(steps=6, batch_size=2, grad_accum=1, lr=1e-2, schedule="constant", ema_decay=0.9, device="cpu",
            checkpoint_every=3, log_every=1, seed=7, deterministic=False)
ONE_PROCESS = {**BASE, "grad_accum": 2}  # the same global batch of 4 on one rank
TWO_RANK_RUNS = {
    "ddp-full": BASE,
    "ddp-half": {**BASE, "steps": 3},
    "one-then-two": {**BASE, "resume": True},  # resumes a 3-step checkpoint written by one process
    # The same under FSDP: rank 0 alone reads the file; the other rank receives its shards from it.
    "one-then-two-fsdp": {**BASE, "strategy": "fsdp", "resume": True},
    "fsdp-full": {**BASE, "strategy": "fsdp", "activation_checkpointing": True},
    "fsdp-half": {**BASE, "strategy": "fsdp", "steps": 3},
    "fsdp-bf16": {**BASE, "strategy": "fsdp", "precision": "bf16"},
    "fsdp-accum": {**BASE, "strategy": "fsdp", "batch_size": 1, "grad_accum": 2},
}
# 2 ranks x micro-batch 1 x 2 accumulations read positions (m * 2 + r): the same samples and seeds
# as one process reading micro-batches of 1 four times.
ONE_PROCESS_BY_ONES = {**BASE, "batch_size": 1, "grad_accum": 4}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_worker(rank: int, world_size: int, port: int, root: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                      WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # one group for all runs; train() leaves a group it did not make
    try:
        for name, config in TWO_RANK_RUNS.items():
            # init_seed=rank: the trainer must start every rank from rank 0's weights
            model, _ = run(f"{root}/{name}", config, init_seed=rank)
            if not config.get("strategy") == "fsdp":
                save_file(model.state_dict(), f"{root}/{name}/rank{rank}-weights.safetensors")
    finally:
        dist.destroy_process_group()


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """Every run of this module: one-process references, then one spawn of two gloo ranks, then the
    two-rank checkpoints resumed by one process."""
    root = tmp_path_factory.mktemp("runs")
    torch.set_num_threads(1)
    run(str(root / "one-process"), ONE_PROCESS)
    run(str(root / "one-process-by-ones"), ONE_PROCESS_BY_ONES)
    run(str(root / "one-then-two"), {**ONE_PROCESS, "steps": 3})
    run(str(root / "one-then-two-fsdp"), {**ONE_PROCESS, "steps": 3})
    torch.multiprocessing.spawn(_rank_worker, args=(2, _free_port(), str(root)), nprocs=2, join=True)
    for name in ("ddp-half", "fsdp-half"):
        shutil.copytree(root / name, root / f"{name}-then-one")
        run(str(root / f"{name}-then-one"), {**ONE_PROCESS, "resume": True})
    return root


def _records(folder: Path) -> list[dict]:
    return [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]


def _assert_close(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=atol, msg=name)


def _final(folder: Path) -> tuple[dict, dict]:
    """(trained weights, saved EMA weights) of a finished run."""
    return load_state(folder / "train_state").model, load_file(folder / "model.safetensors")


@pytest.mark.slow  # one spawn of two fresh torch processes: ~20-40 s on a shared 2-core machine
def test_two_ddp_ranks_hold_identical_weights_and_match_one_process_on_the_same_global_batch(runs):
    rank0, rank1 = (load_file(runs / "ddp-full" / f"rank{r}-weights.safetensors") for r in (0, 1))
    assert rank0.keys() == rank1.keys() and all(torch.equal(rank0[k], rank1[k]) for k in rank0)
    reference = _final(runs / "one-process")
    for got, want in zip(_final(runs / "ddp-full"), reference):
        _assert_close(got, want, atol=1e-5)
    ddp, one = _records(runs / "ddp-full"), _records(runs / "one-process")
    assert [r["samples_seen"] for r in ddp] == [r["samples_seen"] for r in one] == [4, 8, 12, 16, 20, 24]
    # The logged loss is the mean over both ranks' micro-batches, as one process averages its two.
    torch.testing.assert_close(torch.tensor([r["loss"] for r in ddp]), torch.tensor([r["loss"] for r in one]),
                               rtol=1e-5, atol=0)


@pytest.mark.slow
def test_checkpoint_from_two_ranks_resumes_on_one_and_from_one_on_two(runs):
    reference = _final(runs / "one-process")
    for name in ("ddp-half-then-one", "one-then-two", "one-then-two-fsdp"):
        state = load_state(runs / name / "train_state")
        assert state.step == 6 and state.samples_seen == 24, name
        for got, want in zip(_final(runs / name), reference):
            _assert_close(got, want, atol=1e-5)
        # metrics.jsonl continues the first half's records: six steps, one line each
        assert [r["step"] for r in _records(runs / name)] == [1, 2, 3, 4, 5, 6], name


@pytest.mark.slow
def test_fsdp_with_activation_checkpointing_matches_one_process_and_resumes_on_one(runs):
    reference = _final(runs / "one-process")
    for name in ("fsdp-full", "fsdp-half-then-one"):
        for got, want in zip(_final(runs / name), reference):
            _assert_close(got, want, atol=1e-5)
    for got, want in zip(_final(runs / "fsdp-accum"), _final(runs / "one-process-by-ones")):
        _assert_close(got, want, atol=1e-5)  # gradient accumulation over sharded gradients
    saved = load_state(runs / "fsdp-half" / "train_state")
    # The sharded optimizer was gathered into the numbered layout of Optimizer.state_dict().
    assert saved.world_size == 2 and sorted(saved.optimizer["state"]) == list(range(len(list(make_model().parameters()))))


@pytest.mark.slow
def test_fsdp_bf16_mixed_precision_trains_with_fp32_master_weights(runs):
    weights, _ = _final(runs / "fsdp-bf16")
    assert all(t.dtype == torch.float32 for t in weights.values())
    bf16, fp32 = _records(runs / "fsdp-bf16"), _records(runs / "fsdp-full")
    # bf16 keeps 8 bits of mantissa: relative error of a loss ~ 2**-8 per op, far below its fall.
    assert bf16[-1]["loss"] < bf16[0]["loss"]
    assert bf16[0]["loss"] != fp32[0]["loss"]  # the blocks did compute in bf16
    torch.testing.assert_close(torch.tensor(bf16[0]["loss"]), torch.tensor(fp32[0]["loss"]), rtol=2e-2, atol=0)


@pytest.mark.slow  # two fresh python processes importing torch
def test_run_killed_with_sigkill_resumes_to_the_weights_of_an_uninterrupted_run(tmp_path):
    config = {**BASE, "steps": 10, "checkpoint_every": 2, "schedule": "cosine", "warmup_steps": 2}
    torch.set_num_threads(1)  # as the child processes run (OMP_NUM_THREADS=1): bit-identity needs the same sums
    run(str(tmp_path / "full"), config)
    script = Path(__file__).with_name("distributed_toys.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join(sys.path)}
    out = tmp_path / "killed"
    # 0.3 s per step: the kill lands mid-run, at a moment the test does not choose.
    child = subprocess.Popen([sys.executable, str(script), str(out), json.dumps(config), "0.3"], env=env)
    try:
        deadline = time.monotonic() + 120
        while not _step_at_least(out, 4):
            assert child.poll() is None, "the training process ended before it could be killed"
            assert time.monotonic() < deadline, "no checkpoint within 120 s"
            time.sleep(0.05)
        time.sleep(0.4)
        child.send_signal(signal.SIGKILL)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL
    killed_at = load_state(out / "train_state").step
    assert 4 <= killed_at < 10
    subprocess.run([sys.executable, str(script), str(out), json.dumps({**config, "resume": True})], env=env, check=True)
    for got, want in zip(_final(out), _final(tmp_path / "full")):
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in got)  # bit-identical


def _step_at_least(out: Path, step: int) -> bool:
    try:
        return json.loads((out / "train_state" / "state.json").read_text())["step"] >= step
    except (FileNotFoundError, json.JSONDecodeError):
        return False


def test_activation_checkpointing_recomputes_blocks_and_changes_no_number(tmp_path):
    torch.set_num_threads(1)
    config = {**ONE_PROCESS, "steps": 3}
    plain, _ = run(str(tmp_path / "plain"), config)
    recomputed, _ = run(str(tmp_path / "checkpointed"), {**config, "activation_checkpointing": True})
    # Same weights to the bit: the recomputation replays dropout from the saved RNG state.
    assert all(torch.equal(a, b) for a, b in zip(plain.state_dict().values(), recomputed.state_dict().values()))
    # Each block's inner modules run twice per micro-batch: forward, then again in backward.
    block = recomputed.blocks[0]
    runs_of = []
    hook = block[1].register_forward_hook(lambda *a: runs_of.append(1))
    loss = recomputed.training_losses({"video": torch.rand(2, 3, 4, 8, 8)}, step=0, total_steps=1)["loss"]
    loss.backward()
    hook.remove()
    assert len(runs_of) == 2
    assert load_state(tmp_path / "checkpointed" / "train_state").model.keys() == plain.state_dict().keys()
