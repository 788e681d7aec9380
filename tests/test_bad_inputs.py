"""Bad input never crashes a reader: fuzzed tensor files and manifests end in the documented
UserError (exit status 2, one line) or load; paths that leave the dataset root are refused; saved
training state and model folders load without running pickle."""

from __future__ import annotations

import json
import os
import struct
import tempfile
import time
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidtool import tensorfile
from vidtool.data.manifest import read_manifest, resolve
from vidtool.errors import UserError

CASES = 10_000
FUZZ = settings(max_examples=CASES, deadline=None, derandomize=True, database=None,
                suppress_health_check=list(HealthCheck))


def _valid_file() -> bytes:
    tf = tensorfile.TensorFile(kind="latents", tensors={"latents": torch.arange(24, dtype=torch.float32).view(1, 2, 3, 2, 2)},
                               model="movq-temporal@0123456789abcdef", fps=2.0, seed=3, params={"steps": 4})
    tf.set_prompts(["a red circle moving right"])
    return tensorfile.to_bytes(tf)


VALID = _valid_file()
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=True) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)
tensor_entries = st.fixed_dictionaries({}, optional={
    "dtype": st.sampled_from(["F32", "F16", "U8", "I64", "BOOL", "X9"]) | json_values,
    "shape": st.lists(st.integers(-2, 6), max_size=6) | json_values,
    "data_offsets": st.lists(st.integers(-4, 200), min_size=0, max_size=3) | json_values,
})
metadata = st.dictionaries(
    st.sampled_from(["vidtool.kind", "vidtool.version", "vidtool.fps", "vidtool.seed", "vidtool.params",
                     "vidtool.parents", "vidtool.prompts", "vidtool.model"]) | st.text(max_size=8),
    st.sampled_from(["latents", "video", "tokens", "1", "2", "²", "nan", "{}", "[]", "[\"a\"]", "x"]) | json_values,
    max_size=8,
)


@st.composite
def headers(draw) -> bytes:
    header = draw(st.dictionaries(st.sampled_from(["latents", "video", "tokens", "text", "x"]), tensor_entries, max_size=3))
    if draw(st.booleans()):
        header["__metadata__"] = draw(metadata)
    text = json.dumps(header).encode()
    declared = draw(st.sampled_from([len(text), len(text) + 1, max(len(text) - 1, 0), 2**63]))
    return struct.pack("<Q", declared) + text + draw(st.binary(max_size=300))


@st.composite
def mutated(draw) -> bytes:
    data = bytearray(VALID)
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data) - 1))
        data[at] = draw(st.integers(0, 255))
    return bytes(data[: draw(st.integers(0, len(data)))])


tensor_files = st.binary(max_size=64) | headers() | mutated() | st.just(struct.pack("<Q", 100_000) + b"[" * 100_000)


@pytest.fixture
def scratch(tmp_path):
    """A folder in memory when the machine has one: a write to disk costs more than a fuzz case."""
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK):
        with tempfile.TemporaryDirectory(dir=shm) as folder:
            yield Path(folder)
    else:
        yield tmp_path


def test_tensor_file_reader_survives_10000_fuzzed_files(scratch):
    path = scratch / "fuzz.safetensors"
    outcomes = {"loaded": 0, "refused": 0}

    @FUZZ
    @given(tensor_files)
    def case(data: bytes) -> None:
        path.write_bytes(data)
        started = time.monotonic()
        try:
            tf = tensorfile.load(path)
            tf.prompts()
            outcomes["loaded"] += 1
        except UserError as e:
            assert "\n" not in str(e)  # one line on stderr
            outcomes["refused"] += 1
        assert time.monotonic() - started < 5  # no hang

    case()
    assert sum(outcomes.values()) >= CASES
    assert outcomes["loaded"] > 0 and outcomes["refused"] > 0  # both paths were exercised


manifest_lines = st.one_of(
    st.text(max_size=20),
    st.builds(json.dumps, json_values),
    st.builds(lambda r: json.dumps(r), st.fixed_dictionaries(
        {"path": st.sampled_from(["clips/a.mp4", "../a.mp4", "a/../../b", "/abs/a.mp4", "", "./x", "a\x00b"]) | json_values},
        optional={"caption": st.text(max_size=10) | json_values,
                  "mask": st.sampled_from(["m.npz", "../m.npz"]) | json_values,
                  "sketch": json_values})),
    st.just("[" * 100_000),
    st.just("1" * 5000),
)


def test_manifest_reader_survives_10000_fuzzed_manifests(scratch):
    path = scratch / "manifest.jsonl"
    outcomes = {"read": 0, "refused": 0}

    @FUZZ
    @given(st.lists(manifest_lines, max_size=3), st.sampled_from(["utf-8", "utf-16", "latin-1"]))
    def case(lines: list[str], encoding: str) -> None:
        try:
            path.write_bytes("\n".join(lines).encode(encoding, errors="replace"))
        except ValueError:  # embedded NUL etc. still writes as bytes; nothing else can fail here
            return
        try:
            for record in read_manifest(path):
                resolve(path, record["path"])
            outcomes["read"] += 1
        except UserError as e:
            assert "\n" not in str(e)
            outcomes["refused"] += 1

    case()
    assert sum(outcomes.values()) >= CASES
    assert outcomes["read"] > 0 and outcomes["refused"] > 0


def test_manifest_paths_that_climb_out_with_dotdot_are_refused(tmp_path):
    manifest = tmp_path / "set" / "manifest.jsonl"
    manifest.parent.mkdir()
    for bad in ["../secret.mp4", "clips/../../secret.mp4"]:
        manifest.write_text(json.dumps({"path": bad, "caption": "x"}) + "\n")
        with pytest.raises(UserError, match="escapes the manifest's folder"):
            read_manifest(manifest)
    with pytest.raises(UserError, match="escapes"):
        resolve(manifest, "../../etc/passwd")


def test_symlinks_that_point_outside_the_dataset_root_are_refused(tmp_path):
    root = tmp_path / "set"
    (root / "clips").mkdir(parents=True)
    outside = tmp_path / "private.mp4"
    outside.write_bytes(b"not yours")
    (root / "clips" / "inside.mp4").write_bytes(b"ok")
    os.symlink(outside, root / "clips" / "leak.mp4")
    os.symlink(tmp_path, root / "up")  # a linked folder: every file under it is outside
    os.symlink(root / "clips" / "inside.mp4", root / "alias.mp4")  # a link that stays inside is fine
    manifest = root / "manifest.jsonl"
    assert resolve(manifest, "clips/inside.mp4") == root / "clips" / "inside.mp4"
    assert resolve(manifest, "alias.mp4") == root / "alias.mp4"
    for bad in ["clips/leak.mp4", "up/private.mp4"]:
        with pytest.raises(UserError, match="outside the dataset root"):
            resolve(manifest, bad)


def test_checkpoints_and_training_state_load_without_unpickling(tmp_path, monkeypatch):
    """A pickle payload planted where weights belong is never executed: every loader reads
    safetensors or JSON, so an unpickler is never reached."""
    import pickle

    from vidtool.checkpoint import from_pretrained
    from vidtool.train.state import load_state

    class Boom:
        def __reduce__(self):
            return (os.system, (f"touch {tmp_path / 'pwned'}",))

    payload = pickle.dumps({"weights": Boom()})
    model = tmp_path / "model"
    model.mkdir()
    bundled = Path(__file__).parents[1] / "vidtool" / "defaults" / "movq-tiny" / "config.json"
    (model / "config.json").write_text(bundled.read_text())
    (model / "model.safetensors").write_bytes(payload)
    state = tmp_path / "train_state"
    state.mkdir()
    (state / "state.json").write_text(json.dumps({"version": 1, "tensors": "tensors.safetensors"}))
    (state / "tensors.safetensors").write_bytes(payload)

    def no_unpickling(*args, **kwargs):
        raise AssertionError("a loader reached pickle")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    monkeypatch.setattr(torch, "load", no_unpickling)
    for load in (lambda: from_pretrained(model), lambda: load_state(state)):
        with pytest.raises(UserError):
            load()
    assert not (tmp_path / "pwned").exists()


def test_a_stage_whose_reader_goes_away_exits_141_quietly(tmp_path):
    """`vidtool … | head -c 1`: the write to the closed pipe ends the stage with 128 + SIGPIPE (13),
    as Unix filters do, and no traceback (stages/cli.py)."""
    import subprocess

    import numpy as np

    from conftest import ROOT
    from vidtool.video import write_video

    clip = tmp_path / "clip.mp4"
    write_video(clip, np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8), 8.0)
    # 16 x 64 x 64 x 3 = 196 KB of video tensor, three times a Linux pipe buffer: the write must fail.
    script = f'"$0" -m stages.cli convert "{clip}" -o - | head -c 1 >/dev/null; echo "${{PIPESTATUS[0]}}" >&2'
    result = subprocess.run(["bash", "-c", script, __import__("sys").executable], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=120)
    lines = result.stderr.strip().splitlines()
    assert lines[-1] == "141" and "Traceback" not in result.stderr, result.stderr
