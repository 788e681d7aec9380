"""Bucketed batching (vidtool.data.buckets): clips of several sizes and lengths, one shape per batch."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from typer.testing import CliRunner

from vidtool.data.buckets import (
    Bucket,
    BucketPlan,
    ClipShape,
    assign_buckets,
    parse_buckets,
)
from vidtool.data.clips import ClipDataset, ClipSets, collate_clips
from vidtool.data.make import make_dataset
from vidtool.data.manifest import SHAPE_KEYS, read_manifest, write_manifest
from vidtool.errors import UserError
from vidtool.train.config import TrainConfig
from vidtool.train.loop import _PlannedBatches, train

BUCKETS = parse_buckets("64x64:16:2,48x80:16:2,32x32:32:3,32x32:8:4")


def test_parse_buckets_reads_shapes_and_batch_sizes_and_refuses_a_malformed_one():
    assert BUCKETS[1] == Bucket(height=48, width=80, frames=16, batch_size=2)
    with pytest.raises(UserError, match="HEIGHTxWIDTH:FRAMES:BATCH"):
        parse_buckets("64x64:16")
    with pytest.raises(UserError, match="listed twice"):
        parse_buckets("64x64:16:2,64x64:16:4")


def test_each_clip_goes_to_the_largest_bucket_it_fits():
    shapes = [
        ClipShape(frames=16, fps=8, height=64, width=64),  # exactly the 64x64:16 bucket
        ClipShape(frames=16, fps=8, height=48, width=80),  # too few pixels for 64x64 (3840 < 4096)
        ClipShape(frames=40, fps=8, height=144, width=256),  # 16:9 fits both 4096-ish buckets: nearest aspect
        ClipShape(frames=40, fps=8, height=64, width=64),  # resolution goes before length: 64x64:16, not 32x32:32
        ClipShape(frames=8, fps=8, height=64, width=64),  # too short for 16 frames
        ClipShape(frames=100, fps=8, height=24, width=24),  # fewer pixels than any bucket
        None,  # a clip that could not be probed
    ]
    assert assign_buckets(shapes, BUCKETS) == [0, 1, 1, 0, 3, None, None]


def test_a_clip_read_at_a_lower_rate_counts_the_frames_it_yields_then():
    sixteen_at_8fps = ClipShape(frames=16, fps=8, height=64, width=64)
    assert assign_buckets([sixteen_at_8fps], BUCKETS, fps=4) == [3]  # 8 frames at 4 fps


def plan_over(count: int, seed: int = 0, image_every: int | None = None) -> BucketPlan:
    assignment = [None if i % 7 == 6 else i % 4 for i in range(count)]
    return BucketPlan(BUCKETS, assignment, seed, image_every)


def test_a_batch_never_mixes_buckets_and_an_epoch_covers_every_fitting_clip_once():
    plan = plan_over(50)
    for epoch in range(2):
        batches = [plan.batch(epoch * plan.per_epoch + k) for k in range(plan.per_epoch)]
        for batch in batches:
            assert {plan.assignment[i] for i in batch.indices} == {BUCKETS.index(batch.bucket)}
            assert 1 <= len(batch.indices) <= batch.bucket.batch_size
        drawn = sorted(i for batch in batches for i in batch.indices)
        assert drawn == [i for i, k in enumerate(plan.assignment) if k is not None]


def test_the_batch_order_is_a_function_of_seed_and_batch_number_only():
    first, again, other = plan_over(50), plan_over(50), plan_over(50, seed=1)
    numbers = range(3 * first.per_epoch)
    order = [first.batch(n) for n in numbers]
    # A resumed run asks for batch numbers from where it stopped, in a fresh process.
    assert [again.batch(n) for n in reversed(numbers)] == order[::-1]
    assert [other.batch(n) for n in numbers] != order
    assert order[: first.per_epoch] != order[first.per_epoch: 2 * first.per_epoch]  # epochs reshuffle


def test_ranks_draw_whole_batches_that_together_are_the_one_process_order():
    plan = plan_over(50)
    one = list(_PlannedBatches(plan, start=5, count=6, rank=0, world_size=1))
    ranks = [list(_PlannedBatches(plan, start=5, count=3, rank=r, world_size=2)) for r in range(2)]
    assert [batch for pair in zip(*ranks) for batch in pair] == one
    for keys in ranks[1]:
        assert len({number for number, _ in keys}) == 1  # one batch, so one bucket, per micro-batch


def test_every_nth_batch_is_an_image_batch():
    plan = plan_over(50, image_every=5)
    assert [plan.batch(n).image for n in range(10)] == [False] * 4 + [True] + [False] * 4 + [True]


# --- the training loop on a toy dataset of many shapes ------------------------------------------


class ShapedClips(torch.utils.data.Dataset):
    """Clip i is a constant video of value i; read() gives it at the bucket's shape."""

    def __init__(self, count: int):
        self.count = count

    def __len__(self) -> int:
        return self.count

    def read(self, index: int, bucket: Bucket, image: bool = False) -> dict:
        video = torch.full((3, bucket.frames, *bucket.size), index / self.count)
        return {"video": video, "index": index}


@dataclass
class ToyConfig:
    hidden: int = 4


class ShapeRecorder(nn.Module):
    family = "toy-shapes"
    config_class = ToyConfig

    def __init__(self, config: ToyConfig | None = None):
        super().__init__()
        self.config = config or ToyConfig()
        self.conv = nn.Conv3d(3, 3, 3, padding=1)
        self.received: list[tuple[tuple[int, ...], list[int]]] = []

    def training_losses(self, batch, *, step, total_steps):
        video = batch["video"]
        self.received.append((tuple(video.shape), batch["index"].tolist()))
        noisy = video + 0.1 * torch.randn_like(video)  # seeded by the loop from the batch number
        loss = F.mse_loss(self.conv(noisy), video)
        return {"loss": loss}


TOY_BUCKETS = [Bucket(8, 8, 2, 2), Bucket(8, 16, 4, 3)]


def toy_run(out: Path, steps: int, stop_at: int | None = None, resume: bool = False) -> ShapeRecorder:
    torch.manual_seed(0)
    model = ShapeRecorder()
    dataset = ShapedClips(10)
    plan = BucketPlan(TOY_BUCKETS, [i % 2 for i in range(10)], seed=3)
    config = TrainConfig(steps=steps, stop_at=stop_at, grad_accum=2, lr=1e-2, seed=3, checkpoint_every=100,
                         resume=resume, device="cpu", log_every=1)
    train(model, dataset, torch.utils.data.default_collate, config, out, progress=False, plan=plan)
    return model


def test_a_bucketed_run_resumed_midway_sees_the_same_batches_and_ends_with_the_same_weights(tmp_path):
    whole = toy_run(tmp_path / "whole", steps=4)
    first = toy_run(tmp_path / "cut", steps=4, stop_at=2)
    rest = toy_run(tmp_path / "cut", steps=4, resume=True)
    assert first.received + rest.received == whole.received
    assert {shape[2:] for shape, _ in whole.received} == {(2, 8, 8), (4, 8, 16)}
    for a, b in zip(whole.state_dict().values(), rest.state_dict().values()):
        assert torch.equal(a, b)
    state = json.loads((tmp_path / "cut" / "train_state" / "state.json").read_text())
    assert state["batches_seen"] == 8
    assert state["samples_seen"] == sum(len(indices) for _, indices in whole.received)


def test_resuming_with_other_buckets_is_refused(tmp_path):
    toy_run(tmp_path / "run", steps=2, stop_at=1)
    model, plan = ShapeRecorder(), BucketPlan(TOY_BUCKETS[:1], [0] * 10, seed=3)
    config = TrainConfig(steps=2, grad_accum=2, seed=3, resume=True, device="cpu")
    with pytest.raises(UserError, match="resume with the same --buckets"):
        train(model, ShapedClips(10), torch.utils.data.default_collate, config, tmp_path / "run", progress=False,
              plan=plan)


# --- manifests and the train-vae stage ------------------------------------------------------------


@pytest.fixture(scope="module")
def two_shapes(tmp_path_factory):
    """A manifest of 32x32 clips of 8 frames and one of 16x16 clips of 4 frames, 4 of each."""
    root = tmp_path_factory.mktemp("two_shapes")
    big = make_dataset("shapes", root / "big", 4, frames=8, size=32, seed=0)
    small = make_dataset("photos", root / "small", 4, frames=4, size=16, seed=0)
    return big, small


def test_make_dataset_records_carry_the_clip_shape_and_old_records_are_probed(two_shapes, tmp_path):
    big, _ = two_shapes
    record = read_manifest(big)[0]
    assert {key: record[key] for key in SHAPE_KEYS} == {"frames": 8, "fps": 8, "height": 32, "width": 32}
    old = tmp_path / "old.jsonl"  # a manifest written before the shape fields existed
    write_manifest(old, [{"path": str(big.parent / record["path"]), "caption": record["caption"]}])
    assert ClipDataset(old).shape(0) == ClipShape(frames=8, fps=8.0, height=32, width=32)


def test_clip_sets_read_a_clip_at_its_bucket_and_collate_splits_image_batches(two_shapes):
    clips = ClipSets([ClipDataset(m) for m in two_shapes])
    item = clips.read(5, Bucket(8, 16, 4, 1))
    assert item["video"].shape == (4, 8, 16, 3) and item["index"] == 1  # index within its own manifest
    images = collate_clips([clips.read(i, Bucket(16, 16, 4, 2), image=True) for i in (4, 5)])
    assert images["video"].shape == (8, 3, 1, 16, 16)
    assert images["index"].tolist() == [0] * 4 + [1] * 4


def train_vae(args: list[str], monkeypatch) -> list[tuple[int, ...]]:
    """Run the train-vae stage in this process; the shapes of the batches the cm-vae trained on."""
    from stages.train_vae import app
    from vidtool.autoencoders.cm_vae import CMVAE

    received = []
    losses = CMVAE.training_losses

    def recording(self, batch, **kwargs):
        received.append(tuple(batch["video"].shape))
        return losses(self, batch, **kwargs)

    monkeypatch.setattr(CMVAE, "training_losses", recording)
    small = ["--set", "block_out_channels=[8,16,16,16]", "--set", "norm_num_groups=4",
             "--set", "temporal_block_out_channels=[8,8,8]"]
    result = CliRunner().invoke(app, ["--family", "cm-vae", *small, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return received


def test_train_vae_batches_clips_of_two_sizes_and_lengths_by_bucket(two_shapes, tmp_path, monkeypatch):
    big, small = two_shapes
    received = train_vae(["--data", str(big), "--data", str(small), "--buckets", "32x32:8:2,16x16:4:2",
                          "--steps", "2", "--grad-accum", "2", "-o", str(tmp_path / "vae")], monkeypatch)
    # 2 steps of 2 micro-batches are one epoch: the two batches of each bucket.
    assert sorted(received) == [(2, 3, 4, 16, 16)] * 2 + [(2, 3, 8, 32, 32)] * 2


def test_cm_vae_joint_training_runs_an_image_batch_and_a_video_batch(two_shapes, tmp_path, monkeypatch):
    big, _ = two_shapes
    received = train_vae(["--data", str(big), "--size", "32", "--frames", "8", "--batch-size", "2",
                          "--image-every", "2", "--steps", "2", "-o", str(tmp_path / "vae")], monkeypatch)
    assert received == [(2, 3, 8, 32, 32), (16, 3, 1, 32, 32)]  # batch 1 of every 2: 2 clips' 16 frames


def test_image_batches_are_refused_for_a_family_that_takes_video_only(two_shapes, tmp_path, vidtool):
    from conftest import one_line_error

    made = vidtool("train-vae", "--family", "mbq-vae", "--data", str(two_shapes[0]), "--image-every", "5",
                   "-o", str(tmp_path / "mbq"))
    assert "--image-every is for the families that train on images too" in one_line_error(made)


@pytest.mark.slow
def test_train_denoiser_encodes_a_bucketed_latent_set_and_reuses_its_buckets(two_shapes, tmp_path, vidtool):
    from vidtool.data.latents import LatentDataset

    big, small = two_shapes
    out = tmp_path / "t2i"
    made = vidtool("train-denoiser", "--family", "t2i", "--data", str(big), "--data", str(small),
                   "--buckets", "32x32:1:2,16x16:1:2", "--steps", "2", "--grad-accum", "2", "-o", str(out))
    assert made.returncode == 0, made.stderr.decode()
    latents = LatentDataset(out / "latent-set.safetensors")
    assert latents.info.buckets == ["32x32:1", "16x16:1"]
    # movq-tiny encodes x8 spatially: each clip's latent has its bucket's shape.
    assert sorted({tuple(latents[i]["latents"].shape) for i in range(len(latents))}) == [(4, 1, 2, 2), (4, 1, 4, 4)]
    again = vidtool("train-denoiser", "--family", "t2i", "--latent-set", str(out / "latent-set.safetensors"),
                    "--batch-size", "2", "--steps", "3", "--grad-accum", "2", "--resume", "-o", str(out))
    assert again.returncode == 0, again.stderr.decode()
    assert "32x32:1 4, 16x16:1 4" in again.stderr.decode()
