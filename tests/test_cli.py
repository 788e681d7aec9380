"""The `vidtool` command as a user meets it: help, pipes, info, and the exit-2 rule for bad input."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import sys

import numpy as np
import pytest
import torch

from conftest import ROOT, one_line_error
from vidtool import tensorfile
from vidtool.tensorfile import TensorFile


def write_video_file(path, frames=8):
    ramp = np.linspace(0, 255, 32, dtype=np.uint8)
    clip = np.stack([np.roll(np.broadcast_to(ramp[None, :, None], (32, 32, 3)), 2 * t, axis=1) for t in range(frames)])
    tensorfile.save(TensorFile(kind="video", tensors={"video": torch.from_numpy(clip)[None]}, fps=8.0,
                               prompt="a ramp moving right", params={"source": "test"}), path)
    return path


def test_help_lists_stages_without_importing_torch():
    code = ("import sys; from stages.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "heavy = [m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules]\n"
            "print('HEAVY', heavy, file=sys.stderr)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert "info" in result.stdout and "make-dataset" in result.stdout
    assert "HEAVY []" in result.stderr


def test_every_stage_help_shows_an_example(vidtool):
    from stages import STAGES

    for name in ["", *STAGES]:
        result = vidtool(*([name] if name else []), "--help", env={"COLUMNS": "200"})
        assert result.returncode == 0, result.stderr
        assert b"Example" in result.stdout or not name
        assert f"vidtool {name}".encode() in result.stdout, name
        # a flag shows as its names (--json, --resume/--no-resume), not with a value type
        assert b"<bool>" not in result.stdout and b"BOOLEAN" not in result.stdout, name


def test_pipe_round_trip_keeps_bytes_and_metadata(vidtool, tmp_path):
    original = write_video_file(tmp_path / "v.safetensors").read_bytes()
    first = vidtool("convert", "-", input=original)
    assert first.returncode == 0, first.stderr
    second = vidtool("convert", "-", "-o", "-", input=first.stdout)
    assert second.stdout == original
    shown = vidtool("info", "-", "--json", input=second.stdout)
    report = json.loads(shown.stdout)
    assert report["kind"] == "video" and report["tensors"]["video"]["shape"] == [1, 8, 32, 32, 3]
    assert report["metadata"]["prompt"] == "a ramp moving right" and report["metadata"]["fps"] == "8.0"


def test_info_prints_a_table_for_people(vidtool, tmp_path):
    path = write_video_file(tmp_path / "v.safetensors")
    result = vidtool("info", path)
    assert result.returncode == 0
    assert b"video" in result.stdout and b"1\xc3\x978\xc3\x9732\xc3\x9732\xc3\x973" in result.stdout  # 1×8×32×32×3


def test_missing_file_exits_2(vidtool, tmp_path):
    assert "no such file" in one_line_error(vidtool("info", tmp_path / "nope.safetensors"))


@pytest.mark.parametrize("args", [
    ["decode", "missing.safetensors", "-o", "x.mp4"],
    ["encode", "missing.mp4", "-o", "z.safetensors"],
    ["tokenize", "missing.mp4", "-o", "t.safetensors"],
    ["interpolate", "missing.safetensors", "-o", "z.safetensors"],
    ["convert", "missing.mp4", "-o", "v.safetensors"],
    ["generate", "--prompts", "missing.txt", "-o", "k.safetensors"],
    ["generate", "--family", "lamd", "--image", "missing.png", "-o", "m.safetensors"],
    ["generate", "a red circle", "--embeddings", "missing.safetensors", "-o", "k.safetensors"],
], ids=lambda args: "-".join(a for a in args if not a.startswith("-"))[:40])
def test_missing_input_is_reported_before_heavy_imports(tmp_path, args):
    """A mistyped path is one line and exit 2 before torch (or a model) loads, so it is instant."""
    code = ("import sys; from stages.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as e:\n    status = e.code\n"
            "heavy = [m for m in ('torch', 'transformers', 'diffusers', 'decord') if m in sys.modules]\n"
            "print('STATUS', status, 'HEAVY', heavy)")
    result = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=tmp_path,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.stdout.strip() == "STATUS 2 HEAVY []", (result.stdout, result.stderr)
    assert result.stderr.strip() == f"vidtool: error: no such file: {args[args.index('-o') - 1]}"
    assert list(tmp_path.iterdir()) == []


def test_truncated_file_exits_2(vidtool, tmp_path):
    data = write_video_file(tmp_path / "v.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[:-500])
    assert "truncated" in one_line_error(vidtool("convert", tmp_path / "cut.safetensors", "-o", tmp_path / "x.safetensors"))


def test_truncated_pipe_exits_2(vidtool, tmp_path):
    data = write_video_file(tmp_path / "v.safetensors").read_bytes()
    assert "truncated" in one_line_error(vidtool("info", "-", input=data[: len(data) // 2]))


def test_non_safetensors_file_exits_2(vidtool, tmp_path):
    (tmp_path / "a.safetensors").write_text("hello, I am plain text and not a tensor file\n")
    line = one_line_error(vidtool("info", tmp_path / "a.safetensors"))
    assert "not a safetensors file" in line or "truncated" in line


def test_wrong_kind_for_the_stage_exits_2(vidtool, tmp_path):
    path = tmp_path / "z.safetensors"
    tensorfile.save(TensorFile(kind="latents", tensors={"latents": torch.zeros(1, 4, 2, 4, 4)}), path)
    assert "takes video, not 'latents'" in one_line_error(vidtool("convert", path, "-o", tmp_path / "z.mp4"))


def test_binary_to_a_terminal_is_refused(tmp_path):
    path = write_video_file(tmp_path / "v.safetensors")
    leader, follower = pty.openpty()
    try:
        result = subprocess.run([sys.executable, "-m", "stages.cli", "convert", str(path)], stdout=follower,
                                stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, cwd=ROOT,
                                env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    finally:
        os.close(follower)
        os.close(leader)
    assert result.returncode == 2
    assert b"refusing to write a binary tensor file to the terminal" in result.stderr
    assert b"Traceback" not in result.stderr


def test_debug_shows_the_traceback(vidtool, tmp_path):
    result = vidtool("--debug", "info", tmp_path / "nope.safetensors")
    assert result.returncode == 2 and b"Traceback" in result.stderr


def test_usage_error_exits_2(vidtool):
    assert vidtool("make-dataset", "nonsense", "-o", "x").returncode == 2


def test_corrupt_video_exits_2(vidtool, tmp_path):
    (tmp_path / "bad.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + os.urandom(2000))
    assert "bad.mp4" in one_line_error(vidtool("convert", tmp_path / "bad.mp4", "-o", tmp_path / "v.safetensors"))


def test_mp4_convert_round_trip_keeps_frames_and_fps(vidtool, tmp_path):
    write_video_file(tmp_path / "v.safetensors", frames=12)
    assert vidtool("convert", tmp_path / "v.safetensors", "-o", tmp_path / "v.mp4").returncode == 0
    back = vidtool("convert", tmp_path / "v.mp4", "-o", tmp_path / "w.safetensors")
    assert back.returncode == 0, back.stderr
    tf = tensorfile.load(tmp_path / "w.safetensors")
    assert tf.main.shape == (1, 12, 32, 32, 3) and tf.fps == pytest.approx(8.0)
