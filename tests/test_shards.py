"""The shared sharding of data stages: assignment, SLURM arrays, journals after a crash, merging."""

from __future__ import annotations

import pytest

from vidtool.data import shards
from vidtool.data.manifest import read_manifest, resolve
from vidtool.errors import UserError


def _items(n: int) -> list[shards.Item]:
    return shards.keyed([{"path": f"clips/{i:03d}.mp4", "caption": f"clip {i}"} for i in range(n)])


class Doubler:
    """A toy stage: one output record per item (a path in the output folder), item 7 fails; counts calls."""

    def __init__(self, crash_after: int | None = None):
        self.seen: list[str] = []
        self.crash_after = crash_after

    def __call__(self, batch: list[shards.Item]) -> list[shards.Outcome]:
        if self.crash_after is not None and len(self.seen) >= self.crash_after:
            raise KeyboardInterrupt  # what a killed job looks like from inside: the batch never finishes
        self.seen += [item.key for item in batch]
        return [shards.failure({"path": item.record["path"]}, "cannot decode") if item.key.endswith("007")
                else shards.Outcome(records=[{"path": f"{item.key}.out", "caption": item.record["caption"] * 2}])
                for item in batch]


def _run(tmp_path, out, shard, process, items=None, settings=None, **kw):
    files = shards.output_files(tmp_path / out, "double", shard, folder=True)
    return shards.run_stage(stage="double", items=items or _items(10), shard=shard, files=files,
                            settings=settings or {"factor": 2}, process=process, **kw)


def test_shards_are_contiguous_and_cover_every_item_once():
    for count in (0, 1, 7, 10, 101):
        for n in (1, 2, 3, 8):
            ranges = [shards.Shard(i, n).range(count) for i in range(n)]
            assert [i for r in ranges for i in r] == list(range(count))
            assert max(map(len, ranges)) - min(map(len, ranges)) <= 1


def test_shard_comes_from_the_option_else_the_slurm_array():
    assert shards.resolve_shard("2/5", env={}) == shards.Shard(2, 5)
    assert shards.resolve_shard(None, env={}) is None
    assert shards.resolve_shard(None, env={"SLURM_ARRAY_TASK_ID": "3", "SLURM_ARRAY_TASK_COUNT": "4"}) == shards.Shard(3, 4)
    # --array=1-4: task ids 1..4 are shards 0..3.
    env = {"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "4", "SLURM_ARRAY_TASK_MIN": "1"}
    assert shards.resolve_shard(None, env=env) == shards.Shard(0, 4)
    assert shards.resolve_shard("1/2", env=env) == shards.Shard(1, 2)  # the option wins
    for bad in ("3/3", "-1/2", "a/b", "2"):
        with pytest.raises(UserError, match="--shard"):
            shards.resolve_shard(bad, env={})
    with pytest.raises(UserError, match="not one of 2 tasks"):
        shards.resolve_shard(None, env={"SLURM_ARRAY_TASK_ID": "5", "SLURM_ARRAY_TASK_COUNT": "2"})


def test_three_shards_merged_equal_one_unsharded_run(tmp_path):
    one = _run(tmp_path, "one", None, Doubler())
    assert (one.records, one.errors) == (9, 1)
    for i in range(3):
        _run(tmp_path, "parts", shards.Shard(i, 3), Doubler())
    merged = shards.merge([tmp_path / "parts"], tmp_path / "parts" / "manifest.jsonl")
    assert (merged.shards, merged.records, merged.errors) == (3, 9, 1)
    for name in ("manifest.jsonl", "manifest.errors.jsonl"):
        assert (tmp_path / "parts" / name).read_text() == (tmp_path / "one" / name).read_text()
    assert read_manifest(tmp_path / "one" / "manifest.errors.jsonl")[0]["error"] == "cannot decode"


def test_merging_elsewhere_rebases_the_paths(tmp_path):
    for i in range(2):
        _run(tmp_path, "parts", shards.Shard(i, 2), Doubler())
    shards.merge([tmp_path / "parts"], tmp_path / "elsewhere" / "all.jsonl")
    records = read_manifest(tmp_path / "elsewhere" / "all.jsonl")
    assert resolve(tmp_path / "elsewhere" / "all.jsonl", records[0]["path"]) == tmp_path / "parts" / "clips/000.out"


def test_a_crashed_shard_reruns_only_the_missing_items(tmp_path):
    shard = shards.Shard(0, 1)
    crashing = Doubler(crash_after=4)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "out", shard, crashing, batch=2)
    files = shards.output_files(tmp_path / "out", "double", shard, folder=True)
    assert files.journal.exists() and not files.stats.exists() and not files.manifest.exists()
    rerun = Doubler()
    report = _run(tmp_path, "out", shard, rerun, batch=2)
    assert crashing.seen == [f"clips/{i:03d}" for i in range(4)]
    assert rerun.seen == [f"clips/{i:03d}" for i in range(4, 10)]  # none of the first four again
    assert (report.resumed, report.processed) == (4, 6) and files.stats.exists()
    _run(tmp_path, "whole", shard, Doubler())
    assert files.manifest.read_text() == (tmp_path / "whole" / files.manifest.name).read_text()


def test_a_torn_last_journal_line_is_dropped_and_redone(tmp_path):
    shard = shards.Shard(1, 2)
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "out", shard, Doubler(crash_after=3))
    files = shards.output_files(tmp_path / "out", "double", shard, folder=True)
    with open(files.journal, "a") as journal:
        journal.write('{"key": "clips/008", "reco')  # killed in the middle of a write
    rerun = Doubler()
    _run(tmp_path, "out", shard, rerun)
    assert rerun.seen == ["clips/008", "clips/009"]
    assert [r["path"] for r in read_manifest(files.manifest)] == [f"clips/{i:03d}.out" for i in (5, 6, 8, 9)]


def test_a_finished_shard_is_not_redone_but_other_settings_redo_it(tmp_path):
    _run(tmp_path, "out", None, Doubler())
    again = Doubler()
    assert _run(tmp_path, "out", None, again).already_done and again.seen == []
    other = Doubler()
    _run(tmp_path, "out", None, other, settings={"factor": 3})
    assert len(other.seen) == 10


def test_a_journal_of_other_settings_is_discarded(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        _run(tmp_path, "out", None, Doubler(crash_after=2))
    rerun = Doubler()
    report = _run(tmp_path, "out", None, rerun, settings={"factor": 3})
    assert report.resumed == 0 and len(rerun.seen) == 10


def test_retry_errors_redoes_only_the_failed_items(tmp_path):
    _run(tmp_path, "out", None, Doubler())
    rerun = Doubler()
    report = _run(tmp_path, "out", None, rerun, retry_errors=True)
    assert rerun.seen == ["clips/007"] and (report.resumed, report.records, report.errors) == (9, 9, 1)


def test_merge_refuses_missing_or_foreign_shards(tmp_path):
    _run(tmp_path, "parts", shards.Shard(0, 3), Doubler())
    _run(tmp_path, "parts", shards.Shard(2, 3), Doubler())
    with pytest.raises(UserError, match=r"missing shard\(s\) 1 of 3"):
        shards.merge([tmp_path / "parts"], tmp_path / "m.jsonl")
    _run(tmp_path, "parts", shards.Shard(1, 3), Doubler(), settings={"factor": 3})
    with pytest.raises(UserError, match="another run"):
        shards.merge([tmp_path / "parts"], tmp_path / "m.jsonl")
    with pytest.raises(UserError, match="no finished shards"):
        shards.merge([tmp_path], tmp_path / "m.jsonl")


def test_repeated_paths_get_distinct_keys_and_absolute_paths_short_ones():
    items = shards.keyed([{"path": "a/x.mp4"}, {"path": "a/x.mp4"}, {"path": "/data/y.mp4"}])
    assert [i.key for i in items][:2] == ["a/x", "a/x~2"]
    assert items[2].key.startswith("y-") and "/" not in items[2].key


def test_sharded_output_must_be_a_folder(tmp_path):
    with pytest.raises(UserError, match="names a folder"):
        shards.output_files(tmp_path / "out.jsonl", "recaption", shards.Shard(0, 2), folder=False)
    assert shards.output_files(tmp_path / "o.jsonl", "recaption", None, folder=False).manifest == tmp_path / "o.jsonl"
