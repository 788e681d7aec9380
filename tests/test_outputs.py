"""A stage's output: never one of its inputs, written by the writer its extension names, into a folder
that exists or is created with a note, through temp files that no exit leaves behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from conftest import ROOT
from stage_runner import run_stage

from vidtool import tensorfile
from vidtool.atomic import atomic_write_bytes, sweep
from vidtool.tensorfile import TensorFile

# First bytes of each container (ISO BMFF 'ftyp' at offset 4; EBML for webm; GIF; PNG).
MAGIC = {".mp4": (4, b"ftyp"), ".mov": (4, b"ftyp"), ".webm": (0, b"\x1a\x45\xdf\xa3"), ".gif": (0, b"GIF8"),
         ".png": (0, b"\x89PNG"), ".safetensors": (8, b"{")}


def video_file(path, frames=4, size=16):
    clip = np.random.default_rng(0).integers(0, 256, (1, frames, size, size, 3), dtype=np.uint8)
    tensorfile.save(TensorFile(kind="video", tensors={"video": torch.from_numpy(clip)}, fps=8.0), path)
    return path


def leftovers(folder):
    return sorted(p.name for p in folder.rglob("*") if ".vidtool-" in p.name)


@pytest.mark.parametrize("suffix", [".mp4", ".mov", ".webm", ".gif", ".png", ".safetensors"])
def test_convert_writes_the_format_its_extension_names(tmp_path, suffix):
    out = tmp_path / f"out{suffix}"
    assert run_stage("convert", video_file(tmp_path / "v.safetensors"), "-o", out) == 0
    at, magic = MAGIC[suffix]
    assert out.read_bytes()[at:at + len(magic)] == magic
    assert leftovers(tmp_path) == []


def test_an_extension_no_writer_knows_is_refused_before_any_work(tmp_path, capsys):
    source = video_file(tmp_path / "v.safetensors")
    for stage, out in (("convert", "x.avi"), ("convert", "x"), ("encode", "z.mp4"), ("interpolate", "z.webm")):
        assert run_stage(stage, source, "-o", tmp_path / out) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "not a format this stage writes" in err, err
        assert not (tmp_path / out).exists()


def test_output_naming_an_input_is_refused_and_the_input_kept(tmp_path, capsys):
    source = video_file(tmp_path / "v.safetensors")
    before = source.read_bytes()
    os.link(source, tmp_path / "hard.safetensors")  # another name of the same inode
    os.symlink(source, tmp_path / "soft.safetensors")
    for out in (source, tmp_path / "hard.safetensors", tmp_path / "soft.safetensors", tmp_path / "." / source.name):
        assert run_stage("convert", source, "-o", out) == 2
        assert "this stage's input" in capsys.readouterr().err
    assert run_stage("decode", source, "-o", source) == 2  # refused before the kind check reads it
    assert source.read_bytes() == before and leftovers(tmp_path) == []


def test_a_missing_output_folder_is_created_and_said(tmp_path, capsys):
    from stages.cli import main

    out = tmp_path / "new" / "deeper" / "v.safetensors"
    main(["convert", str(video_file(tmp_path / "v.safetensors")), "-o", str(out)])  # not --quiet: the note shows
    assert out.is_file()
    assert f"created folder {out.parent}" in capsys.readouterr().err.replace("\n", "")


def test_an_unwritable_output_folder_is_one_line(tmp_path, capsys, monkeypatch):
    source = video_file(tmp_path / "v.safetensors")
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    # Tests run as root here, for whom chmod 0o555 does not stop a write; os.access is what asks.
    monkeypatch.setattr(os, "access", lambda path, mode, **kw: str(path) != str(locked) and real_access(path, mode))
    assert run_stage("convert", source, "-o", locked / "v.mp4") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "not writable" in err


def test_a_write_that_the_file_system_refuses_is_one_line(tmp_path, capsys):
    assert run_stage("convert", video_file(tmp_path / "v.safetensors"), "-o", "/proc/self/v.safetensors") == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "cannot write" in err


def test_temp_files_of_a_dead_writer_are_swept_by_the_next_write_and_a_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], check=True, capture_output=True,
                          text=True)
    dead_pid = int(dead.stdout)
    stale = [tmp_path / f".out.mp4.vidtool-{dead_pid}-abc.tmp", tmp_path / f".out.mp4.vidtool-{dead_pid}-abc.rgb"]
    live = tmp_path / f".out.mp4.vidtool-{os.getppid()}-abc.tmp"  # pytest's parent: alive
    other = tmp_path / f".other.mp4.vidtool-{dead_pid}-abc.tmp"  # another output's: not this write's business
    for path in (*stale, live, other):
        path.write_bytes(b"half")
    atomic_write_bytes(tmp_path / "out.mp4", b"whole")
    assert not any(p.exists() for p in stale) and live.exists() and other.exists()
    assert sweep(tmp_path, "other.mp4") == [other]


def _children(pid: int) -> list[int]:
    tasks = f"/proc/{pid}/task"
    found = []
    for task in os.listdir(tasks):
        with open(f"{tasks}/{task}/children") as f:
            found += [int(c) for c in f.read().split()]
    return found


def _slow_mp4_write(tmp_path):
    """`vidtool convert` of a clip big enough that ffmpeg is still encoding when we look."""
    clip = np.random.default_rng(0).integers(0, 256, (1, 240, 256, 256, 3), dtype=np.uint8)
    source = tmp_path / "big.safetensors"
    tensorfile.save(TensorFile(kind="video", tensors={"video": torch.from_numpy(clip)}, fps=8.0), source)
    out = tmp_path / "out.mp4"
    process = subprocess.Popen([sys.executable, "-m", "stages.cli", "convert", str(source), "-o", str(out)],
                               env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not _children(process.pid):
        assert process.poll() is None and time.monotonic() < deadline, "ffmpeg never started"
        time.sleep(0.05)
    return process, out, _children(process.pid)


def _gone(pid: int, within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            with open(f"/proc/{pid}/stat") as f:
                if f.read().split(") ")[1].startswith("Z"):  # a zombie has finished
                    return True
        except FileNotFoundError:
            return True
        time.sleep(0.05)
    return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_mid_write_exits_143_and_leaves_nothing(tmp_path):
    process, out, ffmpeg = _slow_mp4_write(tmp_path)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 143 and b"Traceback" not in err, err
    assert all(_gone(pid) for pid in ffmpeg)
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PR_SET_PDEATHSIG is Linux's")
def test_kill_9_mid_write_takes_ffmpeg_along_and_the_next_run_sweeps_its_temp_files(tmp_path):
    process, out, ffmpeg = _slow_mp4_write(tmp_path)
    assert leftovers(tmp_path)  # the raw frames and the temp output wait beside out.mp4
    process.kill()
    process.wait(timeout=30)
    assert all(_gone(pid) for pid in ffmpeg), "ffmpeg outlived its parent"
    assert not out.exists()
    assert run_stage("convert", video_file(tmp_path / "small.safetensors"), "-o", out) == 0
    assert out.is_file() and leftovers(tmp_path) == []
