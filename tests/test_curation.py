"""Curation stages on footage with known defects (tests/curation_footage.py): `cut-scenes` finds the
hard cuts and cuts frame-exactly, `score` + `filter` keep the clean clips and drop each bad one for
its own reason, a killed shard reruns only what is missing, bad input is one line and exit 2."""

from __future__ import annotations

import json
import random
import shutil

import numpy as np
import pytest

import curation_footage as footage
from vidtool.curation.filtering import HashIndex, filter_records
from vidtool.curation.where import Where
from vidtool.data.manifest import read_manifest, resolve
from vidtool.errors import UserError
from vidtool.video import read_video

WHERE = "motion > 0.5 and sharpness > 15 and text_area < 0.02"


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    """The footage folder, cut into shots and scored once for the module (in process, --quiet)."""
    from stage_runner import run_stage

    root = tmp_path_factory.mktemp("curation")
    videos = footage.build(root / "videos")
    assert run_stage("cut-scenes", root / "videos", "-o", root / "shots") == 0
    assert run_stage("score", root / "shots" / "manifest.jsonl", "-o", root / "scored.jsonl") == 0
    return {"root": root, "videos": videos, "shots": root / "shots" / "manifest.jsonl", "scored": root / "scored.jsonl"}


def by_video(records: list[dict]) -> dict[str, list[dict]]:
    grouped: dict[str, list[dict]] = {}
    for record in records:
        grouped.setdefault(record["source"].rsplit("/", 1)[-1][: -len(".mp4")], []).append(record)
    return grouped


def test_cut_scenes_finds_the_three_hard_cuts_within_a_frame(curated):
    shots = by_video(read_manifest(curated["shots"]))
    starts = [shot["start_frame"] for shot in shots["long"]]
    assert len(starts) == 4 and starts[0] == 0
    assert all(abs(found - cut) <= 1 for found, cut in zip(starts[1:], footage.CUTS)), starts
    assert shots["long"][-1]["end_frame"] == sum(footage.SHOT_FRAMES)
    # Every other video is one shot: no cut inside a pan, a still, a blur or a captioned clip.
    assert {name: len(found) for name, found in shots.items() if name != "long"} == dict.fromkeys(
        ["blurred", "dup_a", "dup_b", "good", "static", "text"], 1)


def test_each_shot_clip_holds_exactly_its_frames_of_the_source(curated):
    source = read_video(curated["videos"]["long"]).frames
    for shot in by_video(read_manifest(curated["shots"]))["long"]:
        clip = read_video(resolve(curated["shots"], shot["path"])).frames
        assert len(clip) == shot["frames"] == shot["end_frame"] - shot["start_frame"]
        for k in (0, len(clip) - 1):  # first and last frame: the source's, not a neighbour (re-encoding adds a little error)
            errors = [np.abs(clip[k].astype(int) - source[shot["start_frame"] + k + d].astype(int)).mean()
                      for d in (-1, 0, 1) if 0 <= shot["start_frame"] + k + d < len(source)]
            assert np.argmin(errors) == (0 if shot["start_frame"] + k - 1 < 0 else 1) and min(errors) < 3


def test_score_and_filter_keep_the_clean_clips_and_drop_each_bad_one_for_its_reason(curated, stage):
    kept_path = curated["root"] / "kept.jsonl"
    assert stage("filter", curated["scored"], "--where", WHERE, "--dedup", "6", "-o", kept_path) == 0
    kept = by_video(read_manifest(kept_path))
    rejected = {name: records[0] for name, records in by_video(read_manifest(curated["root"] / "kept.rejected.jsonl")).items()}
    assert {name: len(records) for name, records in kept.items()} == {"long": 4, "good": 1, "dup_a": 1}
    assert {name: record["rejected_by"] for name, record in rejected.items()} == {
        "static": ["motion > 0.5"], "blurred": ["sharpness > 15"], "text": ["text_area < 0.02"], "dup_b": ["near-duplicate"]}
    assert "dup_a/0000.mp4" in rejected["dup_b"]["reason"] and "motion=" in rejected["static"]["reason"]
    # The kept manifest's paths are rebased for its folder and point at the shot clips.
    assert all(resolve(kept_path, r["path"]).is_file() for records in kept.values() for r in records)


def test_a_killed_score_shard_reruns_only_the_missing_clips(curated, stage, monkeypatch):
    out = curated["root"] / "score-parts"
    assert stage("score", curated["shots"], "--shard", "1/2", "-o", out) == 0
    stem = "score-shard-00001-of-00002"
    complete = (out / f"{stem}.jsonl").read_text()
    journal = out / f".{stem}.journal.jsonl"
    header, *entries = journal.read_text().splitlines()
    assert len(entries) == 5
    # What a kill -9 after two clips leaves: the journal's first two items and a torn third line.
    journal.write_text("\n".join([header, *entries[:2], entries[2][:30]]))
    for suffix in (".jsonl", ".stats.json"):
        (out / f"{stem}{suffix}").unlink()

    import vidtool.curation.scores as scores

    scored, real = [], scores.score_clip
    monkeypatch.setattr(scores, "score_clip", lambda path, *a, **k: scored.append(path.name) or real(path, *a, **k))
    assert stage("score", curated["shots"], "--shard", "1/2", "-o", out) == 0
    assert len(scored) == 3
    assert (out / f"{stem}.jsonl").read_text() == complete
    assert json.loads((out / f"{stem}.stats.json").read_text())["processed"] == 3


def test_a_killed_cut_scenes_run_cuts_only_the_videos_it_had_not_finished(curated, stage, monkeypatch):
    out = curated["root"] / "cut-resume"
    assert stage("cut-scenes", curated["root"] / "videos", "-o", out) == 0
    complete = (out / "manifest.jsonl").read_text()
    journal = out / ".manifest.journal.jsonl"
    header, *entries = journal.read_text().splitlines()
    journal.write_text("\n".join([header, *entries[:3]]) + "\n")  # killed after three of the seven videos
    (out / "manifest.stats.json").unlink()

    import vidtool.curation.shots as shots

    cut, real = [], shots.cut_video
    monkeypatch.setattr(shots, "cut_video", lambda source, *a, **k: cut.append(source.name) or real(source, *a, **k))
    assert stage("cut-scenes", curated["root"] / "videos", "-o", out) == 0
    assert sorted(cut) == sorted(json.loads(e)["key"] + ".mp4" for e in entries[3:])
    assert (out / "manifest.jsonl").read_text() == complete


def test_sharded_cut_scenes_merged_equals_one_run(curated, stage):
    out = curated["root"] / "cut-parts"
    for index in range(2):
        assert stage("cut-scenes", curated["root"] / "videos", "--shard", f"{index}/2", "-o", out) == 0
    assert stage("merge-shards", out) == 0
    merged, single = read_manifest(out / "manifest.jsonl"), read_manifest(curated["shots"])
    drop = ("path", "source")
    assert [{k: v for k, v in r.items() if k not in drop} for r in merged] == [{k: v for k, v in r.items() if k not in drop} for r in single]
    assert all(resolve(out / "manifest.jsonl", r["path"]).is_file() for r in merged)


def test_an_unreadable_clip_is_a_score_error_row_that_filter_drops(curated, stage, tmp_path):
    (tmp_path / "broken.mp4").write_bytes(b"not a video at all")
    shutil.copy(curated["videos"]["good"], tmp_path / "good.mp4")
    (tmp_path / "m.jsonl").write_text('{"path": "broken.mp4"}\n{"path": "good.mp4"}\n')
    assert stage("score", tmp_path / "m.jsonl", "-o", tmp_path / "scored.jsonl") == 0
    broken, good = read_manifest(tmp_path / "scored.jsonl")
    assert broken["score_error"] and "motion" not in broken and good["motion"] > 0.5
    assert [r["path"] for r in read_manifest(tmp_path / "scored.errors.jsonl")] == ["broken.mp4"]
    assert stage("filter", tmp_path / "scored.jsonl", "--where", "motion > 0.5", "-o", tmp_path / "kept.jsonl") == 0
    assert [r["rejected_by"] for r in read_manifest(tmp_path / "kept.rejected.jsonl")] == [["score error"]]


def test_data_stages_show_rate_failures_and_a_summary_table(curated, tmp_path, capsys):
    from stages.cli import main

    (tmp_path / "broken.mp4").write_bytes(b"junk")
    shutil.copy(curated["videos"]["good"], tmp_path / "good.mp4")
    (tmp_path / "m.jsonl").write_text('{"path": "broken.mp4"}\n{"path": "good.mp4"}\n')
    capsys.readouterr()
    main(["score", str(tmp_path / "m.jsonl"), "-o", str(tmp_path / "scored.jsonl")])
    err = capsys.readouterr().err
    # stderr is no terminal here, so the progress is a plain line: count, rate, failures so far.
    assert "score: 2/2 items" in err and "items/s" in err and "1 failed" in err
    assert "records written" in err and "failed" in err and "scored.errors.jsonl" in err
    main(["filter", str(tmp_path / "scored.jsonl"), "--where", "motion > 0.5", "-o", str(tmp_path / "kept.jsonl")])
    err = capsys.readouterr().err
    assert "kept" in err and "dropped: score error" in err


@pytest.mark.parametrize("args, message", [
    (["filter", "{scored}", "--where", "__import__('os').system('true')", "-o", "{out}"], "is not allowed"),
    (["filter", "{scored}", "--where", "motion ** 99 > 1", "-o", "{out}"], "is not allowed"),
    (["filter", "{scored}", "--where", "motion.real > 1", "-o", "{out}"], "is not allowed"),
    (["filter", "{scored}", "--where", "motion >", "-o", "{out}"], "not a valid expression"),
    (["filter", "{scored}", "--where", "-" * 500 + "motion > 0", "-o", "{out}"], "nests more than 100 levels"),
    (["filter", "{scored}", "--where", "motoin > 0.5", "-o", "{out}"], "unknown column(s) motoin"),
    (["filter", "{scored}", "--where", "phash > 1", "-o", "{out}"], "holds str values"),
    (["filter", "{missing}", "--where", "motion > 1", "-o", "{out}"], "no such file"),
    (["score", "{missing}", "-o", "{out}"], "no such file"),
    (["cut-scenes", "{missing_video}", "-o", "{folder}"], "no such video, folder or manifest"),
    (["cut-scenes", "{scored}", "-o", "{folder}", "--detector", "histogram"], "--detector must be one of"),
])
def test_bad_input_is_one_line_and_exit_2(curated, vidtool, tmp_path, args, message):
    fill = {"scored": curated["scored"], "out": tmp_path / "o.jsonl", "missing": tmp_path / "nope.jsonl",
            "missing_video": tmp_path / "nope.mp4",
            "folder": tmp_path / "shots"}
    result = vidtool(*[a.format(**fill) for a in args])
    err = result.stderr.decode()
    assert result.returncode == 2 and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o.jsonl").exists()


def test_where_evaluates_arithmetic_chains_and_boolean_logic():
    record = {"a": 2, "b": 0.5, "c": None}
    passes = ["a * b == 1", "1 < a <= 2", "not a < 1", "a - 3 < 0 or c > 1", "(a + 1) / 2 == 1.5", "a % 2 == 0",
              "a // 2 == 1", "-a < 0", "True"]
    fails = ["a > 2", "0 < b < 0.25", "not a", "a > 1 and b > 1"]
    assert [Where(text).failures(record) for text in passes] == [[]] * len(passes)
    assert all(Where(text).failures(record) for text in fails)
    assert Where("c > 1").failures(record) == [("no c value", "no c value")]
    assert Where("a / (b - 0.5) > 1").failures(record)[0][1].endswith("division by zero")


def test_filter_counts_every_failed_clause():
    records = [{"path": "x.mp4", "motion": 0.1, "text_area": 0.5}, {"path": "y.mp4", "motion": 1, "text_area": 0}]
    result = filter_records(records, Where("motion > 0.5 and text_area < 0.02"))
    assert [r["path"] for r in result.kept] == ["y.mp4"]
    assert result.rejected[0]["rejected_by"] == ["motion > 0.5", "text_area < 0.02"]
    with pytest.raises(UserError, match="--dedup"):
        filter_records([{"path": "x.mp4"}], dedup=3)


def test_hash_index_finds_the_same_nearest_hash_as_comparing_all():
    rng = random.Random(0)
    kept = [rng.getrandbits(64) for _ in range(300)]
    queries = [k ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)) for k in kept[:50]] + [rng.getrandbits(64) for _ in range(50)]
    for distance in (0, 3, 6, 10):
        index = HashIndex(distance)
        for i, value in enumerate(kept):
            index.add(value, str(i))
        for query in queries:
            best = min(bin(query ^ k).count("1") for k in kept)
            found = index.nearest(query)
            assert (found[0] if found else None) == (best if best <= distance else None)


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from tiny_clip import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("clip"), letters="abcdefghijklmnopqrstuvwxyz,.")


def test_aesthetic_is_clips_probability_on_the_positive_prompts(clip_dir, curated, stage):
    import torch
    from transformers import AutoTokenizer, CLIPModel

    from vidtool.curation.aesthetic import NEGATIVE, POSITIVE, AestheticScorer
    from vidtool.metrics.clipsim import preprocess_frames

    frames = read_video(curated["videos"]["good"]).frames[:3]
    # CLIPModel's own forward: logits_per_image = exp(logit_scale) * cosine(image, text).
    model = CLIPModel.from_pretrained(clip_dir).eval()
    tokens = AutoTokenizer.from_pretrained(clip_dir)(list(POSITIVE + NEGATIVE), padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(input_ids=tokens["input_ids"], attention_mask=tokens["attention_mask"],
                       pixel_values=preprocess_frames(frames, 32)).logits_per_image.double()
    expected = torch.softmax(logits, -1)[:, : len(POSITIVE)].sum(-1).mean().item()
    assert AestheticScorer(str(clip_dir))(frames) == pytest.approx(expected, abs=1e-5)

    out = curated["root"] / "aesthetic.jsonl"
    assert stage("score", curated["shots"], "-o", out, "--clip-model", clip_dir) == 0
    values = [r["aesthetic"] for r in read_manifest(out)]
    assert all(0 < v < 1 for v in values) and "aesthetic" not in read_manifest(curated["scored"])[0]



@pytest.mark.parametrize("stage,module", [("cut-scenes", "scenedetect"), ("score", "imagehash")])
def test_a_missing_curate_extra_is_one_line_naming_the_install(monkeypatch, capsys, tmp_path, stage, module):
    import importlib.util

    from stage_runner import run_stage

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    (tmp_path / "m.jsonl").write_text('{"path": "a.mp4"}\n')
    out = tmp_path / ("shots" if stage == "cut-scenes" else "s.jsonl")
    assert run_stage(stage, tmp_path / "m.jsonl", "-o", out) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and module in err and "pip install 'vidtool[curate]'" in err
    assert not out.exists()
