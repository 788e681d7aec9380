"""The tensor-file contract: metadata round trip, validation, atomic writes."""

from __future__ import annotations

import json
import struct

import pytest
import torch
from safetensors.torch import save

from vidtool import tensorfile
from vidtool.errors import UserError
from vidtool.tensorfile import TensorFile


def video_file(**kw) -> TensorFile:
    frames = torch.randint(0, 256, (2, 4, 8, 8, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    return TensorFile(kind="video", tensors={"video": frames}, fps=8.0, prompt="a red circle moving right", seed=3,
                      params={"steps": 10}, parents=["abc"], model="mbq-vae@0123", **kw)


def test_metadata_and_tensors_survive_a_round_trip(tmp_path):
    path = tmp_path / "v.safetensors"
    written = tensorfile.save(video_file(), path)
    back = tensorfile.load(path, kinds=["video"])
    assert torch.equal(back["video"], video_file()["video"])
    assert (back.kind, back.fps, back.prompt, back.seed, back.model) == ("video", 8.0, "a red circle moving right", 3, "mbq-vae@0123")
    assert back.params == {"steps": 10} and back.parents == ["abc"]
    assert back.digest == written


def test_serialisation_is_deterministic():
    assert tensorfile.to_bytes(video_file()) == tensorfile.to_bytes(video_file())


def test_truncated_file_is_named_truncated(tmp_path):
    data = tensorfile.to_bytes(video_file())
    path = tmp_path / "cut.safetensors"
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(UserError, match="truncated"):
        tensorfile.load(path)


def test_foreign_file_is_refused(tmp_path):
    path = tmp_path / "notes.safetensors"
    path.write_text("this is not a tensor file at all, just some words\n" * 3)
    with pytest.raises(UserError, match="not a safetensors file|truncated"):
        tensorfile.load(path)


def test_plain_safetensors_without_kind_is_refused(tmp_path):
    path = tmp_path / "plain.safetensors"
    path.write_bytes(save({"x": torch.zeros(1, 2)}))
    with pytest.raises(UserError, match="not a vidtool tensor file"):
        tensorfile.load(path)


def test_wrong_kind_names_what_the_stage_takes(tmp_path):
    path = tmp_path / "v.safetensors"
    tensorfile.save(video_file(), path)
    with pytest.raises(UserError, match="takes latents or tokens, not 'video'"):
        tensorfile.load(path, kinds=["latents", "tokens"])


@pytest.mark.parametrize(
    "kind,tensors,message",
    [
        ("video", {"video": torch.zeros(1, 4, 8, 8, 3)}, "dtype F32"),
        ("video", {"video": torch.zeros(4, 8, 8, 3, dtype=torch.uint8)}, "rank 5"),
        ("video", {"video": torch.zeros(1, 4, 8, 8, 4, dtype=torch.uint8)}, "RGB"),
        ("tokens", {"tokens": torch.zeros(1, 2, 4, 4)}, "dtype F32"),
        ("latents", {"lat": torch.zeros(1, 4, 2, 4, 4)}, "tensor named 'latents'"),
        ("latents", {"latents": torch.zeros(1, 4, 2, 4, 4), "fps": torch.zeros(2)}, "leading batch"),
    ],
)
def test_dtype_rank_and_batch_rules_are_enforced_on_write(kind, tensors, message):
    with pytest.raises(UserError, match=message):
        tensorfile.to_bytes(TensorFile(kind=kind, tensors=tensors))


def test_newer_format_version_asks_for_an_upgrade(tmp_path):
    path = tmp_path / "future.safetensors"
    path.write_bytes(save({"video": torch.zeros(1, 1, 2, 2, 3, dtype=torch.uint8)},
                          metadata={"vidtool.kind": "video", "vidtool.version": "99"}))
    with pytest.raises(UserError, match="upgrade vidtool"):
        tensorfile.load(path)


def test_a_lying_header_length_is_not_trusted(tmp_path):
    path = tmp_path / "huge.safetensors"
    path.write_bytes(struct.pack("<Q", 1 << 62) + b"{}")
    with pytest.raises(UserError, match="not a safetensors file"):
        tensorfile.load(path)


def test_failed_write_leaves_the_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "v.safetensors"
    tensorfile.save(video_file(), path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr("vidtool.atomic.os.replace", boom)
    with pytest.raises(OSError):
        tensorfile.save(TensorFile(kind="video", tensors={"video": torch.zeros(1, 1, 2, 2, 3, dtype=torch.uint8)}), path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["v.safetensors"]


def test_header_can_be_read_without_loading_tensors(tmp_path):
    path = tmp_path / "v.safetensors"
    tensorfile.save(video_file(), path)
    header, _ = tensorfile.read_header_file(path)
    assert header["video"]["shape"] == [2, 4, 8, 8, 3]
    assert json.loads(header["__metadata__"]["vidtool.params"]) == {"steps": 10}
