"""Mutation fuzzing of every reader a user's file reaches, through the real stages where they are
cheap to run: tensor files through `info` and `decode`, .npz masks through the mask reader,
config.json through the model loader. Every mutant ends in success or the documented user error
(exit 2, one line), and nothing is left beside the output. A few hundred mutants run in the default
suite; `-m slow` runs 10,000 (1,500 tensor files through both stages, 8,500 masks). Configs stay at
the default suite's 150: a byte-mutated layer count (e.g. layers_per_block 1 → 17000) builds for
minutes even on the meta device, which needs per-family bounds that the configs do not yet carry."""

from __future__ import annotations

import io
import json
import random
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from stage_runner import run_stage

from vidtool.errors import UserError

BUNDLED = Path(__file__).parents[1] / "vidtool" / "defaults"
# Values that have broken readers before: wrong types, non-finite numbers, huge and deep values.
NASTY = [None, True, 0, -1, 2**70, 1e308, float("nan"), float("inf"), "", "x", "\x1b]0;t\x07", "[" * 50,
         [], [1, "a"], {}, {"frames": "x"}, {"height": -3}, {"a": {"b": {"c": []}}}, "9" * 100, 0.5]


def _mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    data = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.random()
        at = rng.randrange(len(data)) if data else 0
        if choice < 0.5 and data:
            data[at] = rng.randrange(256)
        elif choice < 0.7:
            data[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
        elif choice < 0.85:
            del data[at : at + rng.randint(1, 16)]
        else:
            data = data[: rng.randrange(len(data) + 1)]
    return bytes(data)


def _mutate_header(data: bytes, rng: random.Random) -> bytes:
    """A structured mutant: one metadata value or tensor entry field replaced, framing kept valid."""
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header["__metadata__"]
    if rng.random() < 0.6:
        key = rng.choice([*meta, "vidtool.fps", "vidtool.seed", "vidtool.params", "vidtool.parents", "vidtool.prompts"])
        value = rng.choice(NASTY)
        meta[key] = value if isinstance(value, str) and rng.random() < 0.5 else json.dumps(value)
    else:
        name = rng.choice([k for k in header if k != "__metadata__"])
        field = rng.choice(["dtype", "shape", "data_offsets"])
        header[name][field] = rng.choice([*NASTY, "F32", "U8", "I64", [1, 0, 2, 2], [0, 8]])
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + data[8 + n :]


def _leftovers(folder: Path, keep: set[str]) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in keep)


def _one_line_or_success(status: int, err: str) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 0 or (status == 2 and len(lines) == 1 and lines[0].startswith("vidtool: error:")), (status, err)


@pytest.fixture(scope="module")
def seeds(tmp_path_factory):
    """The valid files mutants start from: latents and tokens of a short clip."""
    from vidtool.video import write_video

    folder = tmp_path_factory.mktemp("fuzz-seeds")
    write_video(folder / "clip.mp4", np.random.default_rng(0).integers(0, 256, (4, 16, 16, 3), dtype=np.uint8), 8.0)
    for stage, name in (("encode", "z"), ("tokenize", "t")):
        assert run_stage(stage, folder / "clip.mp4", "-o", folder / f"{name}.safetensors") == 0
    return [(folder / f"{name}.safetensors").read_bytes() for name in "zt"]


def _fuzz_tensor_files(seeds, folder: Path, capsys, count: int, seed: int) -> dict[int, int]:
    rng = random.Random(seed)
    source, out = folder / "in.safetensors", folder / "out.safetensors"
    statuses = {0: 0, 2: 0}
    for _ in range(count):
        data = rng.choice(seeds)
        source.write_bytes(_mutate_header(data, rng) if rng.random() < 0.5 else _mutate_bytes(data, rng))
        for args in (["info", source, "--json"], ["decode", source, "-o", out]):
            capsys.readouterr()
            status = run_stage(*args)
            _one_line_or_success(status, capsys.readouterr().err)
            statuses[status] += 1
            assert _leftovers(folder, {"in.safetensors", "out.safetensors"}) == []
        out.unlink(missing_ok=True)
    return statuses


def _fuzz_masks(folder: Path, count: int, seed: int) -> dict[str, int]:
    from vidtool.data.tokens import read_mask

    rng = random.Random(seed)
    path = folder / "mask.npz"
    valid = io.BytesIO()
    np.savez(valid, mask=np.ones((4, 16, 16), dtype=np.uint8))
    outcomes = {"read": 0, "refused": 0}
    for _ in range(count):
        if rng.random() < 0.5:
            path.write_bytes(_mutate_bytes(valid.getvalue(), rng))
        else:
            dtype = rng.choice([np.uint8, np.float32, np.bool_, np.int64, object, "U3", np.complex64])
            shape = tuple(rng.randint(0, 5) for _ in range(rng.randint(0, 4)))
            values = np.zeros(shape, dtype=dtype) if dtype is not object else np.empty(shape, dtype=object)
            if values.size and dtype == np.float32 and rng.random() < 0.5:
                values.flat[0] = float("nan")
            np.savez(path, **{rng.choice(["mask", "sketch", "x"]): values})
        try:
            read_mask(path, 4, (16, 16))
            outcomes["read"] += 1
        except UserError as e:
            assert "\n" not in str(e)
            outcomes["refused"] += 1
    return outcomes


def _fuzz_configs(folder: Path, count: int, seed: int) -> dict[str, int]:
    from vidtool.checkpoint import from_pretrained

    rng = random.Random(seed)
    model = folder / "model"
    shutil.copytree(BUNDLED / "movq-tiny", model)
    config = (model / "config.json").read_bytes()
    outcomes = {"loaded": 0, "refused": 0}
    for _ in range(count):
        if rng.random() < 0.3:
            (model / "config.json").write_bytes(_mutate_bytes(config, rng))
        else:
            doc = json.loads(config)
            key = rng.choice([*doc["config"], "family", "extra"])
            value = rng.choice(NASTY + [1, 2, 4, 3.0, "image", [1, 2, 4, 8], [1, 2]])
            if key in ("family", "extra"):
                doc[key] = value
            else:
                doc["config"][key] = value
            (model / "config.json").write_text(json.dumps(doc))
        try:
            from_pretrained(model)
            outcomes["loaded"] += 1
        except UserError as e:
            assert "\n" not in str(e)
            outcomes["refused"] += 1
    return outcomes


def test_fuzzed_tensor_files_through_info_and_decode_end_in_0_or_2(seeds, tmp_path, capsys):
    statuses = _fuzz_tensor_files(seeds, tmp_path, capsys, count=40, seed=0)
    assert statuses[0] > 0 and statuses[2] > 0  # both outcomes were reached


def test_fuzzed_npz_masks_are_read_or_refused_in_one_line(tmp_path):
    outcomes = _fuzz_masks(tmp_path, count=200, seed=0)
    assert outcomes["read"] > 0 and outcomes["refused"] > 0


def test_fuzzed_model_configs_load_or_are_refused_in_one_line(tmp_path):
    outcomes = _fuzz_configs(tmp_path, count=150, seed=0)
    assert outcomes["loaded"] > 0 and outcomes["refused"] > 0


@pytest.mark.slow
def test_thousands_of_fuzzed_files_end_in_0_or_2(seeds, tmp_path, capsys):
    for folder in ("t", "m"):
        (tmp_path / folder).mkdir()
    _fuzz_tensor_files(seeds, tmp_path / "t", capsys, count=1500, seed=1)
    _fuzz_masks(tmp_path / "m", count=8500, seed=1)
