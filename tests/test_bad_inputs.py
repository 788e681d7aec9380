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
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from vidtool import tensorfile
from vidtool.data.manifest import read_manifest, resolve
from vidtool.errors import UserError

# 1,000 generated files of each kind in the default suite, 10,000 with `-m slow`.
CASES = [1_000, pytest.param(10_000, marks=pytest.mark.slow)]


def fuzz(cases: int):
    return settings(max_examples=cases, deadline=None, derandomize=True, database=None,
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


@pytest.mark.parametrize("cases", CASES)
def test_tensor_file_reader_survives_fuzzed_files(scratch, cases):
    path = scratch / "fuzz.safetensors"
    outcomes = {"loaded": 0, "refused": 0}

    @fuzz(cases)
    @given(tensor_files)
    @example(VALID)  # the accepting path, whatever the derandomized draws (they differ with the collection)
    @example(b"")  # and the refusing one
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
    assert sum(outcomes.values()) >= cases
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


@pytest.mark.parametrize("cases", CASES)
def test_manifest_reader_survives_fuzzed_manifests(scratch, cases):
    path = scratch / "manifest.jsonl"
    outcomes = {"read": 0, "refused": 0}

    @fuzz(cases)
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
    assert sum(outcomes.values()) >= cases
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


# --- The bad-input matrix: what a user (or a hostile file) can hand each stage ends in exit 2, one
# line on stderr, and the folder exactly as it was (no output, no temp file).

def _header_edit(src, dest, **meta):
    """A copy of tensor file `src` with metadata keys replaced by hand, as an editor would."""
    data = src.read_bytes()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    header["__metadata__"].update(meta)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    dest.write_bytes(struct.pack("<Q", len(text)) + text + data[8 + n :])
    return dest


def _raw_tensor_file(dest, kind, tensors, **meta):
    """Bytes the writer would refuse to produce (empty axes, NaN), written around its checks."""
    tf = tensorfile.TensorFile(kind=kind, tensors=tensors, **meta)
    header = {"__metadata__": tf.metadata()}
    blobs, offset = [], 0
    for name, t in sorted(tensors.items()):
        blob = t.contiguous().numpy().tobytes()
        header[name] = {"dtype": tensorfile._dtype_code(t), "shape": list(t.shape), "data_offsets": [offset, offset + len(blob)]}
        blobs.append(blob)
        offset += len(blob)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    dest.write_bytes(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    return dest


def _model_copy(folder, name, edit):
    import shutil

    bundled = Path(__file__).parents[1] / "vidtool" / "defaults" / "movq-tiny"
    shutil.copytree(bundled, folder / name)
    config = folder / name / "config.json"
    config.write_bytes(edit(config.read_bytes()))
    return folder / name


def _config_edit(key, value):
    def edit(data: bytes) -> bytes:
        doc = json.loads(data)
        doc["config"][key] = value
        return json.dumps(doc).encode()

    return edit


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Valid inputs (a clip, its video file, latents, tokens, LaMD motion) and broken variants of them."""
    import numpy as np

    from stage_runner import run_stage
    from vidtool.video import write_video

    w = tmp_path_factory.mktemp("bad-inputs")
    write_video(w / "clip.mp4", np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), dtype=np.uint8), 8.0)
    for args in (["convert", w / "clip.mp4", "-o", w / "video.safetensors"],
                 ["encode", w / "clip.mp4", "-o", w / "z.safetensors"],
                 ["tokenize", w / "clip.mp4", "-o", w / "t.safetensors"],
                 ["encode", w / "clip.mp4", "--family", "mcd-vae", "--fps", "4", "-o", w / "m.safetensors"]):
        assert run_stage(*args) == 0, args
    z, t, m = (tensorfile.load(w / f"{name}.safetensors") for name in "ztm")
    edits = {
        "params-not-json": {"vidtool.params": "{steps"}, "params-deep": {"vidtool.params": "[" * 100_000},
        "parents-not-list": {"vidtool.parents": '{"a": 1}'}, "frames-x": {"vidtool.params": '{"frames": "x"}'},
        "frames-0": {"vidtool.params": '{"frames": 0}'}, "height-negative": {"vidtool.params": '{"height": -3}'},
        "width-bool": {"vidtool.params": '{"width": true}'}, "fps-nan": {"vidtool.fps": "nan"},
        "fps-inf": {"vidtool.fps": "inf"}, "fps-0": {"vidtool.fps": "0"}, "seed-huge": {"vidtool.seed": "9" * 5000},
        "seed-129-bit": {"vidtool.seed": str(2**128)}, "version-future": {"vidtool.version": "99"},
        "kind-unknown": {"vidtool.kind": "hologram"}, "kind-tokens-as-latents": {"vidtool.kind": "tokens"},
        "tag-unknown": {"vidtool.model": "movq-temporal@0000000000000000"},
        "tag-generator": {"vidtool.model": "t2i@" + __import__("vidtool.checkpoint").checkpoint.digest(
            Path(__file__).parents[1] / "vidtool" / "defaults" / "t2i-tiny")},
        "prompts-not-list": {"vidtool.prompts": '"one"'},
    }
    for name, meta in edits.items():
        _header_edit(w / "z.safetensors", w / f"{name}.safetensors", **meta)
    del m.tensors["content"]
    tensorfile.save(m, w / "motion-no-content.safetensors")
    m = tensorfile.load(w / "m.safetensors")
    _raw_tensor_file(w / "motion-float-content.safetensors", "motion",
                     {"motion": m["motion"], "content": m["content"].float()}, model=m.model, params=m.params)
    for name, shape in (("zero-batch", (0, *z.main.shape[1:])), ("zero-time", (1, z.main.shape[1], 0, *z.main.shape[3:]))):
        _raw_tensor_file(w / f"{name}.safetensors", "latents", {"latents": torch.zeros(shape)}, model=z.model)
    _raw_tensor_file(w / "latents-nan.safetensors", "latents", {"latents": torch.full(z.main.shape, float("nan"))},
                     model=z.model)
    tensorfile.save(tensorfile.TensorFile(kind="tokens", tensors={"tokens": torch.full(t.main.shape, 1 << 30, dtype=torch.int32)},
                                          model=t.model), w / "tokens-past-codebook.safetensors")
    tensorfile.save(tensorfile.TensorFile(kind="latents", tensors={"latents": z.main[:, :3].contiguous()}, model=z.model),
                    w / "latents-3-channels.safetensors")
    (w / "truncated.safetensors").write_bytes((w / "z.safetensors").read_bytes()[:-7])
    (w / "empty.safetensors").write_bytes(b"")
    (w / "not-a-video.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    (w / "prompts-latin1.txt").write_bytes("un caf\xe9 rouge\n".encode("latin-1"))
    (w / "prompts-blank.txt").write_text("\n \n")
    (w / "manifest-bad.jsonl").write_text('{"path": "clips/a.mp4", "fps": 1e999}\n')
    np.savez(w / "mask-object.npz", mask=np.array([object()], dtype=object))
    np.savez(w / "mask-strings.npz", mask=np.array(["a", "b"]))
    np.savez(w / "mask-1d.npz", mask=np.ones(5))
    np.savez(w / "mask-empty.npz", mask=np.ones((0, 64, 64)))
    (w / "mask-not-zip.npz").write_bytes(b"PK\x03\x04 not really")
    np.savez(w / "sketch-object.npz", sketch=np.array([object()], dtype=object))
    np.savez(w / "mask-ok.npz", mask=np.ones((16, 64, 64)))
    _model_copy(w, "model-channels-string", _config_edit("channels", "64"))
    _model_copy(w, "model-channels-negative", _config_edit("channels", -64))
    _model_copy(w, "model-width-nan", _config_edit("commitment_weight", float("nan")))
    _model_copy(w, "model-unknown-key", _config_edit("colour", 3))
    _model_copy(w, "model-config-deep", lambda data: b"[" * 100_000)
    _model_copy(w, "model-config-binary", lambda data: b"\xff\xfe\x00\x01")
    _model_copy(w, "model-family-list", lambda data: json.dumps({"family": ["x"], "config": {}}).encode())
    (w / "model-no-weights").mkdir()
    (w / "model-no-weights" / "config.json").write_bytes((_model_copy(w, "_src", lambda d: d) / "config.json").read_bytes())
    (w / "readonly").mkdir()
    return w


def _decode(name):
    return ["decode", "{w}/" + name, "-o", "{w}/out.mp4"]


BAD_INPUTS = {
    # tensor-file metadata
    "params not JSON": _decode("params-not-json.safetensors"),
    "params nested 100k deep": _decode("params-deep.safetensors"),
    "parents not a list": _decode("parents-not-list.safetensors"),
    "frames 'x'": _decode("frames-x.safetensors"),
    "frames 0": _decode("frames-0.safetensors"),
    "height negative": _decode("height-negative.safetensors"),
    "width a boolean": _decode("width-bool.safetensors"),
    "fps NaN": _decode("fps-nan.safetensors"),
    "fps infinite": _decode("fps-inf.safetensors"),
    "fps 0": _decode("fps-0.safetensors"),
    "seed of 5000 digits": _decode("seed-huge.safetensors"),
    "seed past 64 bits": _decode("seed-129-bit.safetensors"),
    "format version from the future": _decode("version-future.safetensors"),
    "unknown kind": _decode("kind-unknown.safetensors"),
    "latents labelled tokens": _decode("kind-tokens-as-latents.safetensors"),
    "model tag no folder has": _decode("tag-unknown.safetensors"),
    "model tag naming a generator": _decode("tag-generator.safetensors"),
    "prompts not a list": ["interpolate", "{w}/prompts-not-list.safetensors", "--steps", "1", "-o", "{w}/out.safetensors"],
    # tensor contents
    "zero-size batch": _decode("zero-batch.safetensors"),
    "zero-size time axis": _decode("zero-time.safetensors"),
    "NaN latents": _decode("latents-nan.safetensors"),
    "token ids past the codebook": _decode("tokens-past-codebook.safetensors"),
    "latents with the wrong channel count": _decode("latents-3-channels.safetensors"),
    "motion without its content image": _decode("motion-no-content.safetensors"),
    "motion with a float content image": _decode("motion-float-content.safetensors"),
    "motion sent to a latent decoder": ["decode", "{w}/m.safetensors", "--model", "{defaults}/movq-tiny", "-o", "{w}/out.mp4"],
    "truncated tensor file": _decode("truncated.safetensors"),
    "empty tensor file": _decode("empty.safetensors"),
    "video tensor to decode": _decode("video.safetensors"),
    "corrupt mp4": ["encode", "{w}/not-a-video.mp4", "-o", "{w}/out.safetensors"],
    "missing input": ["encode", "{w}/nope.mp4", "-o", "{w}/out.safetensors"],
    # command line
    "--seed past 64 bits": ["generate", "a red circle", "--seed", str(2**70), "-o", "{w}/out.safetensors"],
    "--seed negative": ["generate", "a red circle", "--seed", "-1", "-o", "{w}/out.safetensors"],
    "--cfg nan": ["generate", "a red circle", "--cfg", "nan", "-o", "{w}/out.safetensors"],
    "--cfg inf": ["generate", "a red circle", "--cfg", "inf", "-o", "{w}/out.safetensors"],
    "--steps a billion": ["generate", "a red circle", "--steps", "1000000000", "-o", "{w}/out.safetensors"],
    "harivo --frames 2 with MG guidance": ["generate", "a red circle", "--family", "harivo", "--frames", "2", "--steps", "1",
                                            "-o", "{w}/out.safetensors"],
    "--frames 0": ["generate", "a red circle", "--frames", "0", "-o", "{w}/out.safetensors"],
    "--batch-size 0": ["generate", "a red circle", "--batch-size", "0", "-o", "{w}/out.safetensors"],
    "--guidance nan": ["interpolate", "{w}/z.safetensors", "--guidance", "nan", "-o", "{w}/out.safetensors"],
    "--fps nan": ["convert", "{w}/clip.mp4", "--fps", "nan", "-o", "{w}/out.safetensors"],
    "--crop garbage": ["convert", "{w}/clip.mp4", "--crop", "64y", "-o", "{w}/out.safetensors"],
    "unknown option": ["decode", "{w}/z.safetensors", "--colour", "red", "-o", "{w}/out.mp4"],
    "prompts file not UTF-8": ["generate", "--prompts", "{w}/prompts-latin1.txt", "-o", "{w}/out.safetensors"],
    "prompts file blank": ["generate", "--prompts", "{w}/prompts-blank.txt", "-o", "{w}/out.safetensors"],
    "manifest with an infinite fps": ["encode", "--manifest", "{w}/manifest-bad.jsonl", "--out-dir", "{w}/enc"],
    # model folders
    "config channel count a string": ["encode", "{w}/clip.mp4", "--model", "{w}/model-channels-string", "-o", "{w}/out.safetensors"],
    "config channel count negative": ["encode", "{w}/clip.mp4", "--model", "{w}/model-channels-negative", "-o", "{w}/out.safetensors"],
    "config weight NaN": ["encode", "{w}/clip.mp4", "--model", "{w}/model-width-nan", "-o", "{w}/out.safetensors"],
    "config unknown key": ["encode", "{w}/clip.mp4", "--model", "{w}/model-unknown-key", "-o", "{w}/out.safetensors"],
    "config nested 100k deep": ["info", "{w}/model-config-deep"],
    "config not UTF-8": ["encode", "{w}/clip.mp4", "--model", "{w}/model-config-binary", "-o", "{w}/out.safetensors"],
    "config family a list": ["encode", "{w}/clip.mp4", "--model", "{w}/model-family-list", "-o", "{w}/out.safetensors"],
    "model folder without weights": ["encode", "{w}/clip.mp4", "--model", "{w}/model-no-weights", "-o", "{w}/out.safetensors"],
    # npz masks and sketches (never unpickled)
    "mask of objects": ["inpaint", "{w}/clip.mp4", "--mask", "{w}/mask-object.npz", "--sketch", "{w}/mask-ok.npz", "--prompt", "x", "-o", "{w}/out.mp4"],
    "mask of strings": ["inpaint", "{w}/clip.mp4", "--mask", "{w}/mask-strings.npz", "--sketch", "{w}/mask-ok.npz", "--prompt", "x", "-o", "{w}/out.mp4"],
    "mask of rank 1": ["inpaint", "{w}/clip.mp4", "--mask", "{w}/mask-1d.npz", "--sketch", "{w}/mask-ok.npz", "--prompt", "x", "-o", "{w}/out.mp4"],
    "mask with no frames": ["inpaint", "{w}/clip.mp4", "--mask", "{w}/mask-empty.npz", "--sketch", "{w}/mask-ok.npz", "--prompt", "x", "-o", "{w}/out.mp4"],
    "mask not a zip": ["inpaint", "{w}/clip.mp4", "--mask", "{w}/mask-not-zip.npz", "--sketch", "{w}/mask-ok.npz", "--prompt", "x", "-o", "{w}/out.mp4"],
    "sketch of objects": ["inpaint", "{w}/clip.mp4", "--mask", "{w}/mask-ok.npz", "--sketch", "{w}/sketch-object.npz", "--prompt", "x", "-o", "{w}/out.mp4"],
    # outputs
    "-o the input itself": ["convert", "{w}/video.safetensors", "-o", "{w}/video.safetensors"],
    "-o the input through ./": ["decode", "{w}/z.safetensors", "-o", "{w}/./z.safetensors"],
    "-o .avi": ["convert", "{w}/video.safetensors", "-o", "{w}/out.avi"],
    "-o .webm from encode": ["encode", "{w}/clip.mp4", "-o", "{w}/out.webm"],
    "-o without an extension": ["generate", "a red circle", "-o", "{w}/out"],
    "-o a folder": ["convert", "{w}/video.safetensors", "-o", "{w}/readonly"],
    "-o under a file": ["convert", "{w}/video.safetensors", "-o", "{w}/clip.mp4/out.mp4"],
}


def _listing(folder: Path) -> dict[str, int]:
    return {str(p.relative_to(folder)): p.stat().st_size for p in folder.rglob("*") if p.is_file()}


@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_bad_input_is_exit_2_one_line_and_leaves_nothing(case, world, capsys):
    from stage_runner import run_stage

    defaults = Path(__file__).parents[1] / "vidtool" / "defaults"
    args = [a.format(w=world, defaults=defaults) for a in BAD_INPUTS[case]]
    before = _listing(world)
    capsys.readouterr()
    status = run_stage(*args)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and len(lines) == 1 and lines[0].startswith("vidtool: error: "), (status, err)
    assert _listing(world) == before


def test_the_bad_input_matrix_has_at_least_40_cases():
    assert len(BAD_INPUTS) >= 40
