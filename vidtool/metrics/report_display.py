"""The `vidtool evaluate` report for people: the summary table printed on stderr and the PNG plots.

The JSON report (`vidtool.metrics.report.build_report`) is the record; the table shows each metric's
value with its sample counts, resolution, frame count and a short reminder of its protocol, and the
plots draw the per-frame curves the report carries.
"""

from __future__ import annotations

from pathlib import Path

_SHORT = {"generated": "gen", "reference": "ref", "pairs": "pairs"}

# (metric, report key, title, y label, first x) of every per-frame curve there is a plot for.
CURVES = [("psnr", "per_frame", "PSNR per frame (mean over videos)", "dB", 0),
          ("ssim", "per_frame", "SSIM per frame (mean over videos)", "SSIM", 0),
          ("lpips", "per_frame", "LPIPS per frame (mean over videos)", "LPIPS", 0),
          ("clipsim", "per_frame", "CLIPSIM per frame (mean over videos)", "cosine", 0),
          ("temporal-flickering", "per_transition_difference",
           "flicker over time: mean |frame[t] - frame[t-1]| (0..255)", "difference", 1)]


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 1000 else f"{value:.1f}"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_fmt(v)}" for k, v in value.items())
    if isinstance(value, list) and value and all(isinstance(v, int) for v in value) and len(value) == 2:
        return f"{value[1]}x{value[0]}"  # [H, W] shown as WxH
    return str(value)


def _short_note(name: str, entry: dict) -> str:
    """The table's reminder; the JSON holds the full protocol and notes."""
    if name == "psnr":
        return f"{entry['identical_frames']} identical frames counted as 100 dB" if entry["identical_frames"] else ""
    if name in ("dynamic-degree", "motion-smoothness"):
        return "classical (Farneback flow): not comparable with VBench"
    if name == "temporal-flickering":
        return "VBench formula"
    if name == "fvd":
        return f"StyleGAN-V {entry['frames']}-frame clips"
    if name == "cd-fvd":
        return f"VideoMAE {entry['frames']}-frame clips; not comparable with I3D FVD"
    return ""


def report_table(report: dict):
    """A rich `Table` of the report's metrics, one row each (plus rows for their sub-scores)."""
    from rich.table import Table

    table = Table(title="vidtool evaluate", caption="PSNR of identical frames is reported as 100 dB; "
                  "dynamic-degree and motion-smoothness are classical (Farneback), not comparable with VBench")
    for column in ("metric", "value"):
        table.add_column(column, no_wrap=True)
    for column in ("samples", "resolution", "frames", "note"):
        table.add_column(column)
    for name, entry in report["metrics"].items():
        if not entry.get("available", True):
            table.add_row(name, "unavailable", "", "", "", entry["reason"])
            continue
        resolution = entry.get("resolution")
        if isinstance(resolution, dict):
            shown = {_SHORT[k]: _fmt(v) for k, v in resolution.items()}
            resolution = next(iter(shown.values())) if len(set(shown.values())) == 1 else shown
        samples = ", ".join(f"{_SHORT.get(k, k)} {v}" for k, v in entry["samples"].items())
        note = _short_note(name, entry)
        value = _fmt(entry.get("value")) + (f" ± {entry['std']:.4f}" if "std" in entry else "")
        table.add_row(name, value, samples, _fmt(resolution), _fmt(entry.get("frames")), note)
        for extra in ("prompt_hits", "reconstruction_agreement"):
            if extra in entry:
                table.add_row(f"  {extra}", _fmt(entry[extra]), samples, "", "", "")
        if "perplexity" in entry:
            table.add_row("  perplexity", _fmt(entry["perplexity"]), samples, "", "",
                          f"{entry['codes_used']} of {entry['codebook_size']} codes used")
    return table


def write_plots(report: dict, folder: Path) -> list[Path]:
    """One PNG per per-frame curve the report holds (`CURVES`), in `folder`; returns their paths."""
    from vidtool.metrics.plots import line_plot

    metrics, written = report["metrics"], []
    for name, key, title, ylabel, x0 in CURVES:
        entry = metrics.get(name, {})
        if entry.get(key):
            path = folder / f"{name}.png"
            line_plot(path, {name: entry[key]}, title=title, xlabel="frame", ylabel=ylabel, x0=x0)
            written.append(path)
    return written
