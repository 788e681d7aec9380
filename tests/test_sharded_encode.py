"""`tokenize`/`encode --manifest`: one tensor file per clip, sharded, resumable after a kill, mergeable."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import ROOT
from vidtool import checkpoint, tensorfile, video
from vidtool.autoencoders import mbq_vae
from vidtool.data.manifest import read_manifest, resolve, write_manifest
from vidtool.tensorfile import TensorFile


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory):
    torch.manual_seed(0)
    mbq = mbq_vae.MBQVAE(mbq_vae.MBQVAEConfig(encoder_channels=(8, 16, 16), decoder_channels=(8, 16, 16), mfi_hidden=8))
    return checkpoint.save_pretrained(mbq, tmp_path_factory.mktemp("models") / "mbq")


def _frames(seed: int, t: int = 8, side: int = 32) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (t, side, side, 3), dtype=np.uint8)


def _save_video_file(path, frames, caption):
    tensorfile.save(TensorFile(kind="video", tensors={"video": torch.from_numpy(frames[None])}, fps=8.0, prompt=caption), path)


@pytest.fixture
def data_set(tmp_path):
    """Clips of every input kind (mp4, video tensor file, frame folder) and two that cannot be tokenized."""
    root = tmp_path / "data"
    (root / "clips").mkdir(parents=True)
    records = []
    for i in range(2):
        video.write_video(root / f"clips/m{i}.mp4", _frames(i), 8)
        records.append({"path": f"clips/m{i}.mp4", "caption": f"mp4 {i}", "fps": 8})
    for i in range(2):
        _save_video_file(root / f"clips/t{i}.safetensors", _frames(10 + i), "ignored")
        records.append({"path": f"clips/t{i}.safetensors", "caption": f"tensor {i}", "mask": f"clips/t{i}.npz"})
    folder = root / "clips/f0"
    folder.mkdir()
    for t, frame in enumerate(_frames(20)):
        from PIL import Image

        Image.fromarray(frame).save(folder / f"{t:03d}.png")
    records.append({"path": "clips/f0", "caption": "folder", "fps": 8})
    (root / "clips/broken.mp4").write_bytes(b"not a video at all")
    records.append({"path": "clips/broken.mp4", "caption": "broken"})
    _save_video_file(root / "clips/short.safetensors", _frames(30, t=2), "short")
    records.append({"path": "clips/short.safetensors", "caption": "too short"})
    write_manifest(root / "manifest.jsonl", records)
    return root / "manifest.jsonl"


def test_three_shards_merged_equal_one_run_file_for_file(stage, tokenizer, data_set, tmp_path):
    args = ["tokenize", "--manifest", data_set, "--model", tokenizer]
    assert stage(*args, "--out-dir", tmp_path / "one") == 0
    for i in range(3):
        assert stage(*args, "--out-dir", tmp_path / "parts", "--shard", f"{i}/3") == 0
    assert stage("merge-shards", tmp_path / "parts") == 0
    one, parts = tmp_path / "one", tmp_path / "parts"
    for name in ("manifest.jsonl", "manifest.errors.jsonl"):
        assert (parts / name).read_text() == (one / name).read_text()
    records = read_manifest(one / "manifest.jsonl")
    assert [r["path"] for r in records] == ["clips/m0.tokens.safetensors", "clips/m1.tokens.safetensors",
                                            "clips/t0.tokens.safetensors", "clips/t1.tokens.safetensors",
                                            "clips/f0.tokens.safetensors"]
    for record in records:
        assert (parts / record["path"]).read_bytes() == (one / record["path"]).read_bytes()
        tf = tensorfile.load(one / record["path"], kinds=["tokens"])
        # 8 frames of 32×32 through ×4 time and ×4 space: 2×8×8 tokens; the caption becomes the prompt.
        assert tf.main.shape == (1, 2, 8, 8) and tf.prompt == record["caption"]
        assert resolve(one / "manifest.jsonl", record["source"]).exists()
    assert resolve(one / "manifest.jsonl", records[2]["mask"]) == data_set.parent / "clips/t0.npz"
    errors = {e["path"]: e["error"] for e in read_manifest(one / "manifest.errors.jsonl")}
    # The inputs lie outside the output folder, so their paths are written absolute (never with "..").
    assert set(errors) == {str(data_set.parent / "clips/broken.mp4"), str(data_set.parent / "clips/short.safetensors")}
    assert any("has 2 frame(s)" in e for e in errors.values())


def test_manifest_tokens_equal_the_single_clip_command(stage, tokenizer, data_set, tmp_path):
    assert stage("tokenize", "--manifest", data_set, "--model", tokenizer, "--out-dir", tmp_path / "out") == 0
    clip = data_set.parent / "clips/m1.mp4"
    assert stage("tokenize", clip, "--model", tokenizer, "-o", tmp_path / "single.safetensors") == 0
    single = tensorfile.load(tmp_path / "single.safetensors", kinds=["tokens"])
    batch = tensorfile.load(tmp_path / "out/clips/m1.tokens.safetensors", kinds=["tokens"])
    assert torch.equal(single.main, batch.main) and single.model == batch.model


def test_manifest_mode_refuses_single_clip_outputs(stage, tokenizer, data_set, tmp_path, capsys):
    assert stage("tokenize", "--manifest", data_set, "-o", tmp_path / "x.safetensors") == 2
    assert "with --manifest, outputs go to --out-dir" in capsys.readouterr().err
    assert stage("tokenize", data_set.parent / "clips/m0.mp4", "--shard", "0/2") == 2
    assert "go with --manifest" in capsys.readouterr().err


def test_a_killed_shard_reruns_without_redoing_finished_clips(tokenizer, tmp_path):
    root = tmp_path / "many"
    root.mkdir()
    count = 40
    for i in range(count):
        # Larger clips than elsewhere, so the shard is still running when the journal shows 3 done.
        _save_video_file(root / f"c{i:02d}.safetensors", _frames(i, t=16, side=64), f"clip {i}")
    write_manifest(root / "m.jsonl", [{"path": f"c{i:02d}.safetensors", "caption": f"clip {i}"} for i in range(count)])
    out = tmp_path / "out"
    command = [sys.executable, "-m", "stages.cli", "tokenize", "--manifest", str(root / "m.jsonl"), "--model",
               str(tokenizer), "--out-dir", str(out), "--shard", "1/2"]
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "SLURM_ARRAY_TASK_ID": "", "SLURM_ARRAY_TASK_COUNT": ""}
    journal = out / ".tokenize-shard-00001-of-00002.journal.jsonl"
    job = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and job.poll() is None:
        if journal.exists() and journal.read_text().count("\n") >= 4:  # the header and at least 3 clips
            job.send_signal(signal.SIGKILL)
            break
        time.sleep(0.005)
    job.wait()
    assert job.returncode == -signal.SIGKILL, "the shard finished before it could be killed halfway"
    finished = [json.loads(line)["key"] for line in journal.read_text().splitlines()[1:] if line.endswith("}")]
    assert 3 <= len(finished) < count // 2
    before = {key: (out / f"{key}.tokens.safetensors").stat().st_mtime_ns for key in finished}
    rerun = subprocess.run(command, env=env, capture_output=True)
    assert rerun.returncode == 0, rerun.stderr.decode()
    message = " ".join(rerun.stderr.decode().split())  # rich wraps long lines
    assert f"{len(finished)} of {count // 2} items already done" in message
    assert {key: (out / f"{key}.tokens.safetensors").stat().st_mtime_ns for key in finished} == before
    records = read_manifest(out / "tokenize-shard-00001-of-00002.jsonl")
    assert [r["caption"] for r in records] == [f"clip {i}" for i in range(count // 2, count)]
