"""Rows → the numbers `vidtool evaluate` reports, each with its context.

Every metric entry carries the protocol it follows, the digests of the model files behind it, the
sample counts, and the resolution and frame count of the videos it measured, so a number copied
into a table can always be traced back. The report is plain JSON-ready data.
"""

from __future__ import annotations

import numpy as np

from vidtool.metrics import shapes_probe
from vidtool.metrics.frame_quality import PSNR_IDENTICAL, SSIM_K1, SSIM_K2, SSIM_SIGMA, SSIM_WINDOW
from vidtool.metrics.rows import Rows
from vidtool.metrics.vbench_classical import CLASSICAL_NOTE, FLICKER_NOTE, flicker_score

PSNR_NOTE = f"identical frames (MSE 0) are reported as {PSNR_IDENTICAL:g} dB"


def _distinct(values: list) -> object:
    """One value when all agree, else the sorted distinct values."""
    unique = sorted({tuple(v) if isinstance(v, list) else v for v in values})
    unique = [list(u) if isinstance(u, tuple) else u for u in unique]
    return unique[0] if len(unique) == 1 else unique


def _geometry(rows: Rows, role: str, names: list[str] | None = None) -> dict:
    """Resolution [H, W] and frame count of the items of `role` that have field(s) `names`."""
    shapes, columns = rows.fields[role].get("shape", []), [rows.fields[role].get(n, []) for n in names or []]
    chosen = [s[0] for i, s in enumerate(shapes) if s is not None and all(i < len(c) and c[i] is not None for c in columns)]
    if not chosen:
        return {"resolution": None, "frames": None}
    return {"resolution": _distinct([[int(s[1]), int(s[2])] for s in chosen]), "frames": _distinct([int(s[0]) for s in chosen])}


def mean_curve(curves: list[np.ndarray]) -> list[float]:
    """Mean over videos at each frame index (videos shorter than an index do not count there)."""
    if not curves:
        return []
    length = max(len(c) for c in curves)
    return [float(np.mean([c[t] for c in curves if len(c) > t])) for t in range(length)]


def build_report(rows: Rows, setup: dict) -> dict:
    models, options = setup["models"], setup["options"]
    report: dict = {"sets": {}, "metrics": {}}
    for role, described in setup["sets"].items():
        geometry = _geometry(rows, role)
        if role == "reference" and geometry["frames"] is None:
            # paired metrics read the reference clips while measuring the generated ones
            shapes = [s[0] for s in rows.fields["generated"].get("ref_shape", []) if s is not None]
            if shapes:
                geometry = {"resolution": _distinct([[int(s[1]), int(s[2])] for s in shapes]),
                            "frames": _distinct([int(s[0]) for s in shapes])}
        report["sets"][role] = {**described, **geometry}
        if options.get("read_side"):  # clips decoded small for networks that resize them anyway
            report["sets"][role]["decoded_for_short_side"] = options["read_side"]
    builders = {
        "psnr": _psnr, "ssim": _ssim, "lpips": _lpips, "fvd": _fvd, "cd-fvd": _cdfvd, "isv": _isv, "clipsim": _clipsim,
        "temporal-flickering": _flicker, "dynamic-degree": _dynamic, "motion-smoothness": _smoothness,
        "shapes-probe": _probe, "codebook": _codebook,
    }
    for name in setup["metrics"]:
        report["metrics"][name] = builders[name](rows, setup, models, options)
    for name, reason in setup["unavailable"].items():
        report["metrics"][name] = {"available": False, "reason": reason}
    return report


def _paired(rows: Rows, field: str, **entry) -> dict:
    curves = rows.column("generated", field)
    per_video = [float(c.mean()) for c in curves]
    return {"value": float(np.mean(per_video)), **entry, "samples": {"pairs": len(per_video)},
            **_geometry(rows, "generated", [field]), "per_frame": mean_curve(curves)}


def _psnr(rows, setup, models, options):
    entry = _paired(rows, "psnr", unit="dB", protocol="PSNR per frame with data range 1 (frames scaled to [0, 1]); "
                    "mean over frames, then over videos")
    frames = rows.column("generated", "psnr")
    identical = int(sum((c == PSNR_IDENTICAL).sum() for c in frames))
    entry["identical_frames"] = identical
    entry["notes"] = [f"{PSNR_NOTE}; {identical} of {sum(len(c) for c in frames)} frames were identical"]
    return entry


def _ssim(rows, setup, models, options):
    return _paired(rows, "ssim", unit="", protocol=(
        f"SSIM (Wang et al. 2004): {SSIM_WINDOW}x{SSIM_WINDOW} Gaussian window, sigma {SSIM_SIGMA}, K1 {SSIM_K1}, "
        f"K2 {SSIM_K2}, data range 1, per channel over the valid region; mean over frames, then over videos"))


def _lpips(rows, setup, models, options):
    net = models["lpips"]["net"]
    entry = _paired(rows, "lpips", unit="", protocol=f"LPIPS v0.1 ({net} backbone, linear heads), inputs in [-1, 1], "
                    "per frame; mean over frames, then over videos")
    return {**entry, "models": {"lpips": models["lpips"]}}


def _fvd(rows, setup, models, options):
    from vidtool.metrics.fvd import FVDConfig, fvd

    config = FVDConfig(options["fvd_variant"], options["fvd_videos"])
    gen = np.concatenate(rows.column("generated", "fvd"))
    ref = np.concatenate(rows.column("reference", "fvd"))
    geometry = {role: _geometry(rows, role, ["fvd"]) for role in ("generated", "reference")}
    return {"value": fvd(gen, ref), "unit": "", "protocol": config.protocol,
            "samples": {"generated": len(gen), "reference": len(ref)},
            "resolution": {role: g["resolution"] for role, g in geometry.items()},
            "frames": config.clip.frames, "video_frames": {role: g["frames"] for role, g in geometry.items()},
            "models": {"i3d": models["i3d"]}, "notes": ["I3D resizes every frame to 224x224 inside the TorchScript module"]}


def _cdfvd(rows, setup, models, options):
    from vidtool.metrics.cdfvd import cd_fvd, protocol

    model = models["videomae"]
    gen = np.concatenate(rows.column("generated", "cd-fvd"))
    ref = np.concatenate(rows.column("reference", "cd-fvd"))
    geometry = {role: _geometry(rows, role, ["cd-fvd"]) for role in ("generated", "reference")}
    return {"value": cd_fvd(gen, ref), "unit": "",
            "protocol": protocol(options["fvd_videos"], model["frames"], model["image_size"], model["pooling"]),
            "samples": {"generated": len(gen), "reference": len(ref)},
            "resolution": {role: g["resolution"] for role, g in geometry.items()},
            "frames": model["frames"], "video_frames": {role: g["frames"] for role, g in geometry.items()},
            "models": {"videomae": model},
            "notes": [f"VideoMAE resizes every frame to {model['image_size']}x{model['image_size']} (bilinear, "
                      "aspect not kept); not comparable with I3D FVD numbers"]}


def _isv(rows, setup, models, options):
    from vidtool.metrics.video_inception_score import C3D_CLIP, inception_score

    probs = np.concatenate(rows.column("generated", "isv"))
    score = inception_score(probs, options["isv_splits"])
    geometry = _geometry(rows, "generated", ["isv"])
    return {"value": score.mean, "std": score.std, "unit": "",
            "protocol": f"StyleGAN-V isv{options['isv_videos']}_ucf: C3D (UCF-101) on the first {C3D_CLIP.frames} frames, "
                        f"{score.splits} splits after RandomState(42) shuffle; mean (std beside it)",
            "samples": {"generated": len(probs)}, "resolution": geometry["resolution"], "frames": C3D_CLIP.frames,
            "video_frames": geometry["frames"], "models": {"c3d": models["c3d"]}}


def _clipsim(rows, setup, models, options):
    scale = 100.0 if options["clip_x100"] else 1.0
    curves = rows.column("generated", "clipsim")
    per_video = [float(c.mean()) * scale for c in curves]
    return {"value": float(np.mean(per_video)), "unit": "x100 cosine" if scale != 1 else "cosine",
            "protocol": "CLIPSIM: mean over frames of cos(CLIP image embedding, CLIP text embedding of the prompt), "
                        "OpenAI preprocessing (bicubic short-side resize, centre crop, CLIP mean/std); mean over videos",
            "samples": {"generated": len(per_video)}, **_geometry(rows, "generated", ["clipsim"]),
            "models": {"clip": models["clip"]}, "per_frame": [v * scale for v in mean_curve(curves)]}


def _mean(values: list[float]) -> float | None:
    """None (not NaN) when no video could be scored, so the JSON says so plainly."""
    return float(np.mean(values)) if values else None


def _flicker(rows, setup, models, options):
    curves = rows.column("generated", "flicker")
    per_video = [flicker_score(float(c.mean())) for c in curves]
    skipped = len(rows.keys["generated"]) - len(per_video)
    notes = ["VBench-style (classical) dimension"] + ([f"{skipped} single-frame videos have no score"] if skipped else [])
    return {"value": _mean(per_video), "unit": "", "protocol": FLICKER_NOTE + "; mean over videos",
            "samples": {"generated": len(per_video)}, **_geometry(rows, "generated", ["flicker"]),
            "per_transition_difference": mean_curve(curves), "notes": notes}


def _dynamic(rows, setup, models, options):
    moving = rows.column("generated", "dynamic")
    return {"value": float(np.mean([int(m[0]) for m in moving])), "unit": "fraction of videos",
            "protocol": "VBench dynamic degree with Farneback flow: mean of the top 5% flow magnitudes per frame pair at "
                        "~8 fps; a video is dynamic when round(4n/16) pairs exceed 6·min(H, W)/256",
            "samples": {"generated": len(moving)}, **_geometry(rows, "generated", ["dynamic"]), "notes": [CLASSICAL_NOTE]}


def _smoothness(rows, setup, models, options):
    scores = [float(s[0]) for s in rows.column("generated", "smoothness")]
    skipped = len(rows.keys["generated"]) - len(scores)
    notes = [CLASSICAL_NOTE] + ([f"{skipped} videos under 3 frames have no score"] if skipped else [])
    return {"value": _mean(scores), "unit": "",
            "protocol": "VBench motion smoothness with a Farneback-flow midpoint instead of AMT: odd frames predicted "
                        "from their even neighbours, (255 - mean |predicted - real|) / 255",
            "samples": {"generated": len(scores)}, **_geometry(rows, "generated", ["smoothness"]), "notes": notes}


def _hit_rates(readings: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    rates = shapes_probe.hits(readings, targets).mean(axis=0)
    return dict(zip(shapes_probe.HIT_NAMES, map(float, rates)))


def _probe(rows, setup, models, options):
    readings = np.concatenate(rows.column("generated", "probe"))
    entry = {"unit": "fraction of videos", "samples": {"generated": len(readings)},
             **_geometry(rows, "generated", ["probe"]), "detected": float((readings[:, 0] == 1).mean()),
             "protocol": "shapes probe: dominant palette colour (background = border colour), bounding-box fill of its "
                         "largest blob (circle pi/4, square 1, triangle 1/2), centroid displacement for direction"}
    if setup["probe_prompts"]:
        entry["prompt_hits"] = _hit_rates(readings, np.concatenate(rows.column("generated", "probe_target")))
        entry["value"] = entry["prompt_hits"]["all"]
    if setup["probe_reconstruction"]:
        source = np.concatenate(rows.column("generated", "probe_source"))
        # a source clip the probe cannot read gives no target: -1 never counts as agreement
        targets = np.where(source[:, :1] == 1, source[:, 1:], -1)
        entry["reconstruction_agreement"] = _hit_rates(readings, targets)
        entry.setdefault("value", entry["reconstruction_agreement"]["all"])
    return entry


def _codebook(rows, setup, models, options):
    from vidtool.metrics.codebook import codebook_stats

    size = options["codebook_size"]
    counts = np.zeros(size, dtype=np.int64)
    for pairs in rows.column("generated", "codes"):
        np.add.at(counts, pairs[:, 0], pairs[:, 1])
    stats = codebook_stats(counts)
    return {"value": stats.utilisation, "perplexity": stats.perplexity, "codes_used": stats.used, "codebook_size": size,
            "tokens": stats.tokens, "unit": "fraction of codes",
            "protocol": "utilisation = codes used / codebook size; perplexity = exp(entropy of code frequencies, nats)",
            "samples": {"generated": len(rows.keys["generated"])}, **_geometry(rows, "generated", ["codes"])}
