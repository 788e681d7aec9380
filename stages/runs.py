"""`vidtool runs`: a training run at a glance, its metrics drawn into a PNG."""

from __future__ import annotations

import json
from pathlib import Path

import typer

app = typer.Typer(add_completion=False)

HELP = """Show a training run folder (train-vae or train-denoiser -o): its sessions (git commit, package
versions, data digests from run.json), the last metrics record, the validation sample steps, and
draw every quantity of metrics.jsonl against the update into a PNG (default RUN/metrics.png) for
people without TensorBoard (--log tensorboard writes event files for those with it).

Examples:

  vidtool runs runs/t2i

  vidtool runs runs/t2i -o t2i-curves.png --json"""


@app.command("runs", help=HELP)
def runs(
    run: Path = typer.Argument(..., help="Training run folder."),
    out: Path = typer.Option(None, "--out", "-o", help="PNG to draw the metrics into (default RUN/metrics.png)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON on stdout."),
) -> None:
    from vidtool.run_plot import plot_metrics, read_records
    from vidtool.train.loop import METRICS_NAME
    from vidtool.train.run_log import RUN_RECORD

    records = read_records(run / METRICS_NAME)
    picture = out or run / "metrics.png"
    drawn = plot_metrics(records, picture)
    record = run / RUN_RECORD
    sessions = json.loads(record.read_text())["sessions"] if record.is_file() else []
    samples = sorted(int(p.name.split("-")[1]) for p in (run / "samples").glob("step-*"))
    summary = {"run": str(run), "last": records[-1], "sessions": sessions, "sample_steps": samples,
               "plot": str(picture), "plotted": drawn}
    if as_json:
        print(json.dumps(summary, indent=2))
        return
    last = ", ".join(f"{k} {v:.4g}" for k, v in records[-1].items() if k != "step")
    lines = [f"{run}: step {records[-1]['step']}: {last}"]
    for session in sessions:
        git = session.get("git") or {}
        commit = f"{git['commit'][:10]}{' (modified)' if git.get('dirty') else ''}" if git else "not a git checkout"
        data = ", ".join(f"{Path(d['manifest']).name} {d['sha256'][:12]}" for d in session["data"]) or "a cached set"
        lines.append(f"  session {session['started']}: code {commit}; torch {session['versions']['torch']}; data {data}")
    if samples:
        lines.append(f"  samples at steps {', '.join(map(str, samples))} in {run / 'samples'}")
    lines.append(f"  metrics drawn into {picture}")
    print("\n".join(lines))
