"""`vidtool index`: a folder of a user's videos becomes a manifest with probed metadata; bad files are data."""

from __future__ import annotations

import json

import numpy as np
import pytest

from vidtool.data.clips import ClipDataset
from vidtool.data.manifest import read_manifest, resolve
from vidtool.video import read_video, write_video

# (height, width, frames, fps): a 16:9 clip, a portrait one and a GIF, written by the project's own writer.
CLIPS = {"wide.mp4": (72, 128, 12, 24.0), "phone/portrait.MP4": (112, 64, 9, 30.0), "anim.gif": (32, 48, 5, 10.0)}


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "videos"
    rng = np.random.default_rng(0)
    for name, (h, w, t, fps) in CLIPS.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        # Random frames: no two alike, so the GIF writer merges none and every frame stays a frame.
        write_video(root / name, rng.integers(0, 256, (t, h, w, 3), dtype=np.uint8), fps)
    (root / "wide.txt").write_text("a wide shot of a street\n", encoding="utf-8")
    (root / "phone" / "portrait.json").write_text(json.dumps({"caption": "a person waving"}), encoding="utf-8")
    (root / "empty.mp4").touch()
    (root / "phone" / "notes.mp4").write_text("this is a text file, not a video\n", encoding="utf-8")
    (root / "readme.md").write_text("not a video suffix: ignored\n", encoding="utf-8")
    return root


def test_index_writes_a_record_per_readable_video_and_an_error_per_unreadable_one(stage, folder, tmp_path):
    out = folder / "manifest.jsonl"
    assert stage("index", folder, "-o", out) == 0
    records = {r["path"]: r for r in read_manifest(out)}
    assert sorted(records) == sorted(CLIPS)  # relative to the manifest's folder, suffix case kept
    for name, (h, w, t, fps) in CLIPS.items():
        r = records[name]
        assert (r["height"], r["width"], r["frames"]) == (h, w, t)
        assert r["fps"] == pytest.approx(fps)
        assert r["duration"] == pytest.approx(t / fps, abs=0.01)
    assert {r["codec"] for r in records.values()} == {"h264", "gif"}
    assert records["wide.mp4"]["caption"] == "a wide shot of a street"
    assert records["phone/portrait.MP4"]["caption"] == "a person waving"
    assert "caption" not in records["anim.gif"]
    errors = {r["path"]: r["error"] for r in read_manifest(tmp_path / "videos" / "manifest.errors.jsonl")}
    assert set(errors) == {"empty.mp4", "phone/notes.mp4"}
    assert "empty" in errors["empty.mp4"] and "Invalid data" in errors["phone/notes.mp4"]


def test_indexed_metadata_is_what_the_reader_decodes(stage, folder, tmp_path):
    out = tmp_path / "elsewhere" / "m.jsonl"
    assert stage("index", folder, "-o", out) == 0
    for record in read_manifest(out):
        frames = read_video(resolve(out, record["path"])).frames
        assert frames.shape == (record["frames"], record["height"], record["width"], 3), record["path"]


def test_the_training_reader_takes_an_indexed_manifest(stage, folder):
    out = folder / "manifest.jsonl"
    assert stage("index", folder, "-o", out) == 0
    data = ClipDataset(out, frames=4, size=32)
    item = data[[r["path"] for r in data.records].index("wide.mp4")]
    assert item["video"].shape == (4, 32, 32, 3) and item["caption"] == "a wide shot of a street"


def test_a_truncated_file_is_an_error_record(stage, folder):
    whole = (folder / "wide.mp4").read_bytes()
    # The writer puts the index first (faststart), so a cut file still opens but lacks frames.
    (folder / "cut.mp4").write_bytes(whole[: len(whole) // 2])
    assert stage("index", folder, "-o", folder / "m.jsonl") == 0
    errors = {r["path"]: r["error"] for r in read_manifest(folder / "m.errors.jsonl")}
    assert "truncated" in errors["cut.mp4"]


def test_sharded_index_merges_into_the_unsharded_manifest_and_a_rerun_skips_done_videos(stage, folder, tmp_path, monkeypatch):
    whole = tmp_path / "whole" / "m.jsonl"
    assert stage("index", folder, "-o", whole) == 0
    for i in range(2):
        assert stage("index", folder, "-o", tmp_path / "parts", "--shard", f"{i}/2") == 0
    assert stage("merge-shards", tmp_path / "parts", "-o", tmp_path / "whole" / "merged.jsonl") == 0
    assert read_manifest(tmp_path / "whole" / "merged.jsonl") == read_manifest(whole)
    assert read_manifest(tmp_path / "whole" / "merged.errors.jsonl") == read_manifest(tmp_path / "whole" / "m.errors.jsonl")

    import vidtool.data.index as index_module

    def no_probe(path):
        raise AssertionError(f"probed {path} again")

    monkeypatch.setattr(index_module, "probe", no_probe)
    assert stage("index", folder, "-o", whole) == 0


def test_a_folder_without_videos_exits_2(vidtool, tmp_path):
    (tmp_path / "notes.txt").write_text("no videos here", encoding="utf-8")
    result = vidtool("index", str(tmp_path), "-o", str(tmp_path / "m.jsonl"))
    assert result.returncode == 2 and b"no videos in" in result.stderr
