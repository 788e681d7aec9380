"""Sharded, resumable data stages: which items a shard owns, what is already done, and merging.

A data stage (`recaption`, `curate-sketch-dataset`, `encode`/`tokenize --manifest`, …) reads a
list of items (manifest records, videos of a data set) and turns each into output records. Run over
millions of clips, it is split into N shards, one per process or cluster job:

- Shard I of N owns the contiguous items [I·n/N, (I+1)·n/N) of the input order (`shard_range`),
  so concatenating the shards' outputs in shard order gives the output of one unsharded run.
  The shard comes from `--shard I/N`, else from a SLURM job array (SLURM_ARRAY_TASK_ID minus
  SLURM_ARRAY_TASK_MIN, and SLURM_ARRAY_TASK_COUNT).
- While it runs, a shard appends one line per finished item to a journal (flushed and fsynced per
  batch). A process killed halfway leaves the journal; the rerun reads it (a torn last line is
  dropped) and does only the items it lacks. A journal written with other settings is discarded.
- At the end the shard writes, each atomically: its output manifest, the failed items (records with
  an `error` field; bad input is data, not a crash) and last a stats file, whose presence marks the
  shard complete. A rerun of a complete shard with the same settings does nothing; with
  `retry_errors` it redoes the failed items only (the journal stays, as the per-item record).

Files, for a manifest path M = DIR/NAME.jsonl (sharded: NAME = STAGE-shard-0000I-of-0000N):

    DIR/NAME.jsonl              output records, in input order
    DIR/NAME.errors.jsonl       failed items with `error` (only when some failed)
    DIR/NAME.stats.json         stage, shard, settings, counts, seconds spent on items — written last
    DIR/.NAME.journal.jsonl     the outcome of every item, appended as they finish

`merge` joins the shards of one run (same stage, settings and input, every shard present) into one
manifest. Paths inside records are relative to the manifest that holds them (or absolute), as
`vidtool.data.manifest` reads them, and are rebased whenever records move to another folder.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

from vidtool.atomic import atomic_write_text
from vidtool.data.manifest import PATH_KEYS, read_manifest, resolve, write_manifest
from vidtool.errors import UserError

# Record fields holding paths, rebased when records move: the manifest's own and the clip a
# tensor file came from (encode/tokenize --manifest) or a restored clip was made from (restore).
REBASED_KEYS = PATH_KEYS + ("source", "restored_from")
SHARD_RE = re.compile(r"^(?P<stage>.+)-shard-(?P<index>\d{5})-of-(?P<count>\d{5})$")


@dataclass(frozen=True)
class Shard:
    index: int = 0
    count: int = 1

    def __post_init__(self):
        if not 0 <= self.index < self.count:
            raise UserError(f"shard {self.index}/{self.count}: need 0 <= I < N")

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"

    def range(self, items: int) -> range:
        return shard_range(items, self.index, self.count)

    def file_stem(self, stage: str) -> str:
        return f"{stage}-shard-{self.index:05d}-of-{self.count:05d}"


def shard_range(count: int, index: int, shards: int) -> range:
    """Items [index·count/shards, (index+1)·count/shards): contiguous, so shards concatenate in order."""
    return range(index * count // shards, (index + 1) * count // shards)


def parse_shard(text: str) -> tuple[int, int]:
    """'I/N' with 0 <= I < N."""
    try:
        index, shards = (int(part) for part in text.split("/"))
    except ValueError:
        raise UserError(f"--shard takes I/N (e.g. 0/8), got {text!r}") from None
    if not 0 <= index < shards:
        raise UserError(f"--shard {text}: need 0 <= I < N")
    return index, shards


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard | None:
    """The shard of a SLURM job array task, or None outside one (empty variables count as unset)."""
    env = os.environ if env is None else env
    task, count = env.get("SLURM_ARRAY_TASK_ID", ""), env.get("SLURM_ARRAY_TASK_COUNT", "")
    if not task and not count:
        return None
    try:
        # Arrays may start at 1 (--array=1-8); the first task is shard 0 whatever its number.
        index, total = int(task) - int(env.get("SLURM_ARRAY_TASK_MIN") or 0), int(count)
    except ValueError:
        raise UserError(f"SLURM_ARRAY_TASK_ID={task!r} / SLURM_ARRAY_TASK_COUNT={count!r} are not integers; "
                        "pass --shard I/N instead") from None
    if not 0 <= index < total:
        raise UserError(f"SLURM array task {task} (min {env.get('SLURM_ARRAY_TASK_MIN') or 0}) is not one of "
                        f"{total} tasks; pass --shard I/N instead")
    return Shard(index, total)


def resolve_shard(option: str | None, env: Mapping[str, str] | None = None) -> Shard | None:
    """`--shard I/N` when given, else the SLURM array task, else None (one unsharded run)."""
    if option:
        return Shard(*parse_shard(option))
    return shard_from_env(env)


@dataclass(frozen=True)
class Item:
    key: str  # unique within the input, safe as a relative file name (outputs are named by it)
    record: dict


def path_key(path: str) -> str:
    """An item key from a record path: the relative path without its suffix (`clips/000001`);
    an absolute path gives its file stem plus a digest of the whole path, so keys stay short."""
    normal = os.path.normpath(path)
    if os.path.isabs(normal):
        stem = Path(normal).stem or "item"
        return f"{stem}-{hashlib.sha256(normal.encode()).hexdigest()[:8]}"
    return Path(normal).with_suffix("").as_posix()


def keyed(records: Sequence[dict], key_of: Callable[[dict], str] = lambda r: path_key(r["path"])) -> list[Item]:
    """Items with unique keys, in input order; a repeated key gets `~2`, `~3`, … in order of appearance."""
    seen: dict[str, int] = {}
    items = []
    for record in records:
        key = key_of(record)
        seen[key] = seen.get(key, 0) + 1
        items.append(Item(key if seen[key] == 1 else f"{key}~{seen[key]}", record))
    return items


def rebase(record: dict, source_manifest: str | os.PathLike, target_folder: str | os.PathLike) -> dict:
    """`record` with its path fields made relative to `target_folder` (absolute where that would need '..')."""
    out = dict(record)
    target = Path(os.path.abspath(target_folder))
    for key in REBASED_KEYS:
        value = out.get(key)
        if isinstance(value, str) and value:
            absolute = Path(os.path.abspath(resolve(source_manifest, value)))
            try:
                out[key] = absolute.relative_to(target).as_posix()
            except ValueError:
                out[key] = str(absolute)
    return out


@dataclass
class Outcome:
    """What one item turned into: output records (paths relative to the output folder) and failures
    (records with an `error` field saying what went wrong and how to fix it)."""

    records: list[dict] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)


def failure(record: dict, error: str) -> Outcome:
    return Outcome(errors=[{**record, "error": error}])


@dataclass(frozen=True)
class OutputFiles:
    manifest: Path

    @property
    def stem(self) -> str:
        return self.manifest.name[: -len(".jsonl")] if self.manifest.name.endswith(".jsonl") else self.manifest.name

    @property
    def errors(self) -> Path:
        return self.manifest.with_name(self.stem + ".errors.jsonl")

    @property
    def stats(self) -> Path:
        return self.manifest.with_name(self.stem + ".stats.json")

    @property
    def journal(self) -> Path:
        return self.manifest.with_name("." + self.stem + ".journal.jsonl")


def output_files(out: str | os.PathLike, stage: str, shard: Shard | None, *, folder: bool) -> OutputFiles:
    """Where a run writes. Sharded: `out` is a folder holding STAGE-shard-I-of-N files. Unsharded:
    `out` is the manifest file itself, or, for stages that write a folder (`folder=True`), OUT/manifest.jsonl."""
    out = Path(out)
    if (shard is not None or folder) and out.exists() and not out.is_dir():
        raise UserError(f"-o {out} is a file; this stage writes a folder (its manifest.jsonl and files): name a folder")
    if shard is not None:
        if out.suffix == ".jsonl":
            raise UserError(f"with --shard (or a SLURM array) -o names a folder for the shard files, not {out}; "
                            "merge them afterwards with `vidtool merge-shards FOLDER`")
        return OutputFiles(out / f"{shard.file_stem(stage)}.jsonl")
    if folder:
        return OutputFiles(out / "manifest.jsonl")
    if out.suffix != ".jsonl":
        raise UserError(f"-o names the output manifest and must end in .jsonl, got {out}")
    return OutputFiles(out)


def items_digest(items: Sequence[Item]) -> str:
    """One digest of an input list (keys and records), so shards and reruns can tell they read the same input."""
    payload = json.dumps([[item.key, item.record] for item in items], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


@dataclass
class RunReport:
    files: OutputFiles
    shard: Shard | None
    items: int  # this shard's items
    resumed: int  # items found done in a journal
    processed: int  # items done in this call
    records: int
    errors: int
    already_done: bool = False


def run_stage(*, stage: str, items: Sequence[Item], shard: Shard | None, files: OutputFiles, settings: dict,
              process: Callable[[list[Item]], list[Outcome]], batch: int = 1, retry_errors: bool = False,
              progress: Callable[[int, int], None] | None = None, log: Callable[[str], None] | None = None) -> RunReport:
    """Run `process` over this shard's items that are not done yet, `batch` at a time, then write outputs.

    `progress(items done, items failed)` is called as batches finish, counting those found in the journal.

    `settings` holds everything the outputs depend on (model digests, prompts, options) as JSON
    values; with the input's digest it decides whether a journal or a finished shard can be reused.
    """
    log = log or (lambda message: None)
    shard_at = shard or Shard()
    mine = [items[i] for i in shard_at.range(len(items))]
    setup = {"settings": settings, "input": items_digest(items), "input_items": len(items)}
    # Through JSON once, so it compares equal to the copies read back from the journal and stats files.
    header = json.loads(json.dumps({"stage": stage, "shard": str(shard_at), "setup": setup}, ensure_ascii=False))
    if _finished(files, header) and not (retry_errors and _counts(files)[1]):
        log(f"{files.manifest} is already complete for these settings; nothing to do")
        return RunReport(files, shard, len(mine), len(mine), 0, *_counts(files), already_done=True)

    done = _read_journal(files.journal, header, log)
    if retry_errors:
        done = {key: outcome for key, outcome in done.items() if not outcome.errors}
    wanted = {item.key for item in mine}
    done = {key: outcome for key, outcome in done.items() if key in wanted}
    resumed = len(done)
    if resumed:
        log(f"resuming from {files.journal.name}: {resumed} of {len(mine)} items already done")
    pending = [item for item in mine if item.key not in done]

    fresh = not files.journal.exists()
    try:
        files.manifest.parent.mkdir(parents=True, exist_ok=True)
        opened = open(files.journal, "a", encoding="utf-8")
    except OSError as e:  # a read-only or missing destination, a file where a folder should be
        raise UserError(f"cannot write {files.journal}: {e.strerror or e}; choose another output folder") from e
    with opened as journal:
        if fresh:
            _append(journal, [header])
        failed = sum(1 for outcome in done.values() if outcome.errors)
        if progress:
            progress(resumed, failed)
        began = time.perf_counter()
        for start in range(0, len(pending), batch):
            chunk = pending[start : start + batch]
            outcomes = process(chunk)
            if len(outcomes) != len(chunk):
                raise RuntimeError(f"{stage}: process returned {len(outcomes)} outcomes for {len(chunk)} items")
            _append(journal, [{"key": item.key, "records": o.records, "errors": o.errors} for item, o in zip(chunk, outcomes)])
            done.update({item.key: o for item, o in zip(chunk, outcomes)})
            failed += sum(1 for o in outcomes if o.errors)
            if progress:
                progress(resumed + start + len(chunk), failed)

    records = [r for item in mine for r in done[item.key].records]
    errors = [e for item in mine for e in done[item.key].errors]
    _write_outputs(files, records, errors, {**header, "items": len(mine), "records": len(records), "errors": len(errors),
                                            "processed": len(pending), "seconds": round(time.perf_counter() - began, 3),
                                            "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return RunReport(files, shard, len(mine), resumed, len(pending), len(records), len(errors))


def _finished(files: OutputFiles, header: dict) -> bool:
    stats = _read_stats(files.stats)
    return (stats is not None and files.manifest.exists() and
            all(stats.get(k) == header[k] for k in ("stage", "shard", "setup")))


def _counts(files: OutputFiles) -> tuple[int, int]:
    stats = _read_stats(files.stats) or {}
    return int(stats.get("records", 0)), int(stats.get("errors", 0))


def _read_stats(path: Path) -> dict | None:
    try:
        stats = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return stats if isinstance(stats, dict) else None


def _append(journal, entries: list[dict]) -> None:
    journal.write("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
    journal.flush()
    os.fsync(journal.fileno())


def _read_journal(path: Path, header: dict, log: Callable[[str], None]) -> dict[str, Outcome]:
    if not path.exists():
        return {}
    lines = path.read_text(encoding="utf-8", errors="replace").split("\n")
    try:
        first = json.loads(lines[0])
    except json.JSONDecodeError:
        first = None
    if first != header:
        log(f"{path.name} was written by another run (other settings or input); starting this shard over")
        path.unlink()
        return {}
    done: dict[str, Outcome] = {}
    good = 1
    for line in lines[1:]:
        try:
            entry = json.loads(line)
            done[entry["key"]] = Outcome(entry["records"], entry["errors"])
        except (json.JSONDecodeError, KeyError, TypeError):
            break  # a kill mid-write leaves a torn last line; everything before it is complete
        good += 1
    if good < len([line for line in lines if line]):
        # Drop the torn tail so the lines appended next start on a line of their own.
        path.write_text("\n".join(lines[:good]) + "\n", encoding="utf-8")
    return done


def _write_outputs(files: OutputFiles, records: list[dict], errors: list[dict], stats: dict) -> None:
    write_manifest(files.manifest, records)
    if errors:
        write_manifest(files.errors, errors)
    else:
        files.errors.unlink(missing_ok=True)
    # Last: its presence says the manifest and errors beside it are complete.
    atomic_write_text(files.stats, json.dumps(stats, indent=2, ensure_ascii=False) + "\n")


def shard_stats_files(sources: Iterable[str | os.PathLike]) -> list[Path]:
    """The shard stats files named by `sources` (folders are searched; a shard's .jsonl names its stats)."""
    found: list[Path] = []
    for source in map(Path, sources):
        if source.is_dir():
            hits = sorted(p for p in source.glob("*-shard-*-of-*.stats.json") if SHARD_RE.match(p.name[: -len(".stats.json")]))
            if not hits:
                raise UserError(f"{source} holds no finished shards (*-shard-I-of-N.stats.json); run the stage with "
                                f"--shard I/N -o {source} first")
            found.extend(hits)
        elif source.name.endswith(".stats.json") and source.is_file():
            found.append(source)
        elif source.suffix == ".jsonl" and OutputFiles(source).stats.is_file():
            found.append(OutputFiles(source).stats)
        else:
            raise UserError(f"no finished shard at {source}: give a folder of shard files or a shard's .jsonl/.stats.json")
    return found


@dataclass
class MergeReport:
    files: OutputFiles
    stage: str
    shards: int
    records: int
    errors: int


def merge(sources: Iterable[str | os.PathLike], out: str | os.PathLike) -> MergeReport:
    """Join every shard of one run into `out` (a manifest path), with its errors and stats beside it."""
    shards: dict[int, tuple[Path, dict]] = {}
    reference: dict | None = None
    for stats_path in shard_stats_files(sources):
        stats = _read_stats(stats_path)
        if stats is None or not {"stage", "shard", "setup"} <= set(stats):
            raise UserError(f"{stats_path}: not a shard stats file written by a vidtool data stage")
        index, count = parse_shard(stats["shard"])
        if reference is None:
            reference = stats
        elif (stats["stage"], stats["setup"]) != (reference["stage"], reference["setup"]) or count != parse_shard(reference["shard"])[1]:
            raise UserError(f"{stats_path} belongs to another run ({stats['stage']} {stats['shard']}, other settings or "
                            f"input) than {reference['stage']} {reference['shard']}; merge only the shards of one run")
        if index in shards:
            raise UserError(f"shard {index}/{count} appears twice ({shards[index][0]} and {stats_path})")
        shards[index] = (stats_path, stats)
    assert reference is not None
    total = parse_shard(reference["shard"])[1]
    missing = sorted(set(range(total)) - set(shards))
    if missing:
        shown = ", ".join(map(str, missing[:20])) + (" …" if len(missing) > 20 else "")
        raise UserError(f"missing shard(s) {shown} of {total} for {reference['stage']}; rerun those jobs, then merge")
    target = OutputFiles(Path(out))
    records, errors = [], []
    for index in range(total):
        stats_path = shards[index][0]
        part = OutputFiles(stats_path.with_name(stats_path.name[: -len(".stats.json")] + ".jsonl"))
        records += [rebase(r, part.manifest, target.manifest.parent) for r in read_manifest(part.manifest)]
        if part.errors.exists():
            errors += [rebase(r, part.errors, target.manifest.parent) for r in read_manifest(part.errors)]
    _write_outputs(target, records, errors, {
        "stage": reference["stage"], "shard": "0/1", "merged_from": total, "setup": reference["setup"],
        "items": sum(s["items"] for _, s in shards.values()), "records": len(records), "errors": len(errors),
        "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
    return MergeReport(target, reference["stage"], total, len(records), len(errors))

