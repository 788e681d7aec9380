"""Does sharded tokenize scale with processes? Clips/s of one process vs two shard processes side by side.

    python benchmarks/tokenize_throughput.py                       # 40 shapes clips, bundled mbq-vae-tiny
    python benchmarks/tokenize_throughput.py --clips 200 --manifest data/manifest.jsonl --model runs/mbq

The same N clips are tokenized (CPU, OMP_NUM_THREADS=1 per process) by `vidtool tokenize --manifest
--shard 0/1` in one process, and by `--shard 0/2` and `--shard 1/2` as two processes at once, each
into a fresh output folder; the times are wall clock from launch to the last process's exit (Python
start, model load and writing included, as a job array pays them), and "on clips" from the slowest
shard's stats file (seconds spent on its clips, start-up excluded). Runs alternate (one, two, one,
two, …) and the median of each is reported, then the ratio two/one: 2.0 is perfect scaling, and it
can only approach that on a machine with two idle cores. The processes' CPU seconds per clip show
what sharding itself costs, whatever else the machine runs. The two-process outputs are merged with
`vidtool merge-shards` and checked against the one-process run (same manifest, same tensor bytes).

Results go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def tokenize(manifest: Path, out: Path, shards: int, model: str | None) -> tuple[float, float, float]:
    """(wall seconds from launch to the last exit, seconds the slowest shard spent on its clips,
    CPU seconds of all the processes together)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "SLURM_ARRAY_TASK_ID": "", "SLURM_ARRAY_TASK_COUNT": ""}
    base = [sys.executable, "-m", "stages.cli", "--quiet", "--device", "cpu", "tokenize", "--manifest", str(manifest),
            "--out-dir", str(out)] + (["--model", model] if model else [])
    cpu_before = _children_cpu()
    start = time.perf_counter()
    jobs = [subprocess.Popen(base + ["--shard", f"{i}/{shards}"], env=env, stderr=subprocess.PIPE) for i in range(shards)]
    for job in jobs:
        _, err = job.communicate()
        if job.returncode:
            raise SystemExit(f"tokenize failed ({job.returncode}): {err.decode()}")
    wall = time.perf_counter() - start
    busy = max(json.loads(p.read_text())["seconds"] for p in out.glob("tokenize-shard-*.stats.json"))
    return wall, busy, _children_cpu() - cpu_before


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def merged_equals(one: Path, two: Path) -> bool:
    subprocess.run([sys.executable, "-m", "stages.cli", "--quiet", "merge-shards", str(two)], check=True,
                   env={**os.environ, "PYTHONPATH": str(ROOT)})
    single = (one / "tokenize-shard-00000-of-00001.jsonl").read_text()
    if (two / "manifest.jsonl").read_text() != single:
        return False
    return all((one / r["path"]).read_bytes() == (two / r["path"]).read_bytes()
               for r in map(json.loads, single.splitlines()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", default="/work/data/shapes/manifest.jsonl", help="clips to tokenize (the first --clips)")
    parser.add_argument("--clips", type=int, default=40)
    parser.add_argument("--model", default=None, help="tokenizer folder (default: the bundled mbq-vae-tiny)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs of each setting")
    args = parser.parse_args()

    from vidtool.data.manifest import read_manifest
    from vidtool.data.shards import rebase

    source = Path(args.manifest)
    if not source.is_file():
        raise SystemExit(f"no manifest at {source}; make one with `vidtool make-dataset shapes -n 200 -o DIR`")
    with tempfile.TemporaryDirectory(prefix="tokenize-bench-") as tmp:
        tmp = Path(tmp)
        records = [rebase(r, source, tmp) for r in read_manifest(source)[: args.clips]]
        manifest = tmp / "clips.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in records))
        times: dict[int, list[float]] = {1: [], 2: []}
        busy: dict[int, list[float]] = {1: [], 2: []}
        cpu: dict[int, list[float]] = {1: [], 2: []}
        for repeat in range(args.repeats):
            for shards in (1, 2):
                out = tmp / f"out-{shards}-{repeat}"
                log(f"run {repeat + 1}/{args.repeats}: {len(records)} clips in {shards} process(es)…")
                wall, work, seconds = tokenize(manifest, out, shards, args.model)
                times[shards].append(wall)
                busy[shards].append(work)
                cpu[shards].append(seconds)
                log(f"  {wall:.2f} s wall, {work:.2f} s on clips, {seconds:.2f} CPU s")
        same = merged_equals(tmp / "out-1-0", tmp / "out-2-0")
    n = len(records)
    one, two = statistics.median(times[1]), statistics.median(times[2])
    work_one, work_two = statistics.median(busy[1]), statistics.median(busy[2])
    print(f"tokenize {n} clips ({source.name}), CPU, OMP_NUM_THREADS=1 per process, "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"1 process : {one:6.2f} s wall {n / one:6.2f} clips/s | on clips {work_one:6.2f} s {n / work_one:6.2f} clips/s")
    print(f"2 shards  : {two:6.2f} s wall {n / two:6.2f} clips/s | on clips {work_two:6.2f} s {n / work_two:6.2f} clips/s")
    cpu_one, cpu_two = statistics.median(cpu[1]), statistics.median(cpu[2])
    print(f"CPU seconds, all processes, start-up included: 1 process {cpu_one:.2f} ({cpu_one / n:.3f} per clip), "
          f"2 shards {cpu_two:.2f} ({cpu_two / n:.3f} per clip), difference {cpu_two - cpu_one:+.2f}")
    print(f"throughput ratio 2 shards / 1 process: {one / two:.2f} wall, {work_one / work_two:.2f} on clips "
          "(2.0 = perfect scaling; wall includes each process's start and model load)")
    print(f"merged shards equal the single run (manifest and tensor bytes): {same}")


if __name__ == "__main__":
    main()
