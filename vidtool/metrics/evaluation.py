"""What `vidtool evaluate` runs: which metrics apply, the setup every shard must share, and the
per-video rows each metric needs (reduced to numbers by `vidtool.metrics.report`).

Metrics and what they need:

| metric | sets | extra input |
|---|---|---|
| psnr, ssim | generated paired with --ref (same order, same size) | |
| lpips | paired | --lpips-backbone (+ --lpips-heads or an installed lpips package) |
| fvd | generated and --ref, ≥ 2 videos each, ≥ 16 frames | --i3d |
| cd-fvd | generated and --ref, ≥ 2 videos each, ≥ num_frames (16) frames | --videomae |
| isv | generated, ≥ splits videos, ≥ 16 frames | --c3d |
| clipsim | generated, with prompts | --clip |
| temporal-flickering, dynamic-degree, motion-smoothness | generated | |
| shapes-probe | generated with shapes-grammar prompts, and/or --ref (reconstruction mode) | |
| codebook | a `tokens` set | --codebook-size or --model |

Without `--metric`, every metric the given sets and files allow is computed; ones that would need
weights that were not given are listed as unavailable, never approximated. Asking for a metric
explicitly whose inputs are missing is an error.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Callable

import numpy as np

from vidtool.errors import UserError
from vidtool.metrics import shapes_probe
from vidtool.metrics.rows import Rows
from vidtool.data.shards import shard_range
from vidtool.metrics.video_sets import Clip, VideoSet, describe_digests, set_description

PAIRED = ("psnr", "ssim", "lpips")
VIDEO_ONLY = ("temporal-flickering", "dynamic-degree", "motion-smoothness")
METRICS = ("psnr", "ssim", "lpips", "fvd", "cd-fvd", "isv", "clipsim", *VIDEO_ONLY, "shapes-probe", "codebook")
PROTOCOL_OPTIONS = ("fvd_variant", "fvd_videos", "isv_videos", "isv_splits", "clip_x100")
DISTRIBUTION = ("fvd", "cd-fvd")  # metrics that read the reference set as a distribution
DEFAULT_FPS = 8.0  # a clip that records no frame rate (a frame folder, a bare tensor file)
# Metrics measured on the frames as they are (compared pixel by pixel, flow at full size): clips are
# decoded at their own size when one of them runs. The others feed networks that resize the frames
# themselves, to these short sides (StyleGAN-V's I3D: 224; C3D: 112; VideoMAE and CLIP: their config).
NATIVE = (*PAIRED, *VIDEO_ONLY, "shapes-probe", "codebook")
I3D_SIDE, C3D_SIDE = 224, 112


@dataclass(frozen=True)
class EvaluateConfig:
    metrics: tuple[str, ...] = ()  # empty: everything the inputs allow
    i3d: str | None = None
    fvd_variant: str = "16f"
    fvd_videos: int = 2048
    videomae: str | None = None
    c3d: str | None = None
    isv_videos: int = 2048
    isv_splits: int = 10
    clip: str | None = None
    clip_x100: bool = False
    lpips_backbone: str | None = None
    lpips_heads: str | None = None
    codebook_size: int | None = None
    model: str | None = None
    cache: str | None = None
    batch: int = 8
    device: str = "cpu"
    # The LPIPS, CLIP and VideoMAE networks run in it; TorchScript files (I3D, C3D) in float32 always,
    # as their graphs and the published numbers are float32.
    dtype: str = "float32"


@dataclass(frozen=True)
class Plan:
    metrics: tuple[str, ...]
    unavailable: dict[str, str]
    probe_prompts: bool  # shapes-probe scores against prompts
    probe_reconstruction: bool  # shapes-probe compares with the --ref clip


def plan_metrics(config: EvaluateConfig, generated: VideoSet, reference: VideoSet | None) -> Plan:
    unknown = [m for m in config.metrics if m not in METRICS]
    if unknown:
        raise UserError(f"unknown metric {unknown[0]!r}; choose from {', '.join(METRICS)}")
    if reference is not None and reference.kind != generated.kind:
        raise UserError(f"--ref is a {reference.kind} set but GENERATED is a {generated.kind} set; compare like with like")
    prompts = generated.has_prompts and all(shapes_probe.parse_prompt(i.prompt) for i in generated.items)
    missing = {
        "lpips": None if config.lpips_backbone else "no LPIPS weights: pass --lpips-backbone (torchvision alexnet/vgg16 .pth)",
        "fvd": None if config.i3d else "no I3D weights: pass --i3d i3d_torchscript.pt",
        "cd-fvd": None if config.videomae else "no VideoMAE weights: pass --videomae DIR (a local transformers VideoMAE folder)",
        "isv": None if config.c3d else "no C3D weights: pass --c3d c3d_ucf101.pt",
        "clipsim": None if config.clip else "no CLIP model: pass --clip DIR (a local transformers CLIP folder)",
        "codebook": None if config.codebook_size or config.model else "no codebook size: pass --codebook-size or --model",
    }
    needs = {
        **{m: None if reference is not None else f"{m} compares frame by frame with a reference: pass --ref" for m in PAIRED},
        "fvd": None if reference is not None else "fvd compares two sets: pass --ref REFERENCE",
        "cd-fvd": None if reference is not None else "cd-fvd compares two sets: pass --ref REFERENCE",
        "clipsim": None if generated.has_prompts else "clipsim needs a prompt per video (tensor-file metadata or a manifest caption)",
        "shapes-probe": None if prompts or reference is not None else
        "shapes-probe needs shapes-grammar prompts ('a red circle moving left') or --ref for reconstruction mode",
    }
    kind_ok = {m: (generated.kind == "tokens") == (m == "codebook") for m in METRICS}
    if config.metrics:
        for m in config.metrics:
            if not kind_ok[m]:
                raise UserError(f"{m} applies to {'token' if m == 'codebook' else 'video'} sets; {generated.source} "
                                f"is a {generated.kind} set")
            reason = needs.get(m) or missing.get(m)
            if reason:
                raise UserError(reason)
        chosen, unavailable = tuple(dict.fromkeys(config.metrics)), {}
    else:
        chosen, unavailable = [], {}
        for m in METRICS:
            if not kind_ok[m] or needs.get(m) or (m == "shapes-probe" and not prompts):
                continue
            if missing.get(m):
                unavailable[m] = missing[m]
            else:
                chosen.append(m)
        chosen = tuple(chosen)
    probe = "shapes-probe" in chosen
    plan = Plan(chosen, unavailable, probe and prompts, probe and reference is not None)
    _check_counts(config, plan, generated, reference)
    return plan


def _check_counts(config: EvaluateConfig, plan: Plan, generated: VideoSet, reference: VideoSet | None) -> None:
    """Refuse sets that cannot give the asked number, before any video is read."""
    from vidtool.metrics.fvd import FVDConfig, check_fvd_counts

    if any(m in plan.metrics for m in PAIRED) or plan.probe_reconstruction:
        if len(generated) != len(reference):
            raise UserError(f"paired metrics compare video i of GENERATED with video i of --ref, but the sets hold "
                            f"{len(generated)} and {len(reference)} videos")
    if "fvd" in plan.metrics:
        FVDConfig(config.fvd_variant, config.fvd_videos)  # refuses an unknown variant or too small a count
        check_fvd_counts(len(generated), len(reference))
    if "cd-fvd" in plan.metrics:
        from vidtool.metrics.cdfvd import check_videos

        check_videos(config.fvd_videos)
        check_fvd_counts(len(generated), len(reference))
    if "isv" in plan.metrics:
        if config.isv_splits < 1:
            raise UserError(f"--isv-splits must be at least 1, got {config.isv_splits}")
        if min(len(generated), config.isv_videos) < config.isv_splits:
            raise UserError(f"isv splits the videos into {config.isv_splits} parts but the set has {len(generated)}; "
                            "pass more videos or a smaller --isv-splits")


@dataclass
class Networks:
    """The networks a plan needs, each loaded once, and what the report says about their files."""

    i3d: object = None  # TorchScriptDetector
    c3d: object = None  # TorchScriptDetector
    videomae: object = None  # cdfvd.VideoMAEDetector
    lpips: object = None  # lpips.LPIPS
    clip: object = None  # clipsim.CLIPScorer
    files: dict = field(default_factory=dict)  # name -> {"path", "sha256", …}


def load_networks(config: EvaluateConfig, plan: Plan) -> Networks:
    nets = Networks()
    if "fvd" in plan.metrics or "isv" in plan.metrics:
        from vidtool.metrics.fvd import I3D_CALL
        from vidtool.metrics.video_detectors import TorchScriptDetector
        from vidtool.metrics.video_inception_score import C3D_CALL

        if "fvd" in plan.metrics:
            nets.i3d = TorchScriptDetector(config.i3d, name="I3D", call_kwargs=I3D_CALL, device=config.device)
            nets.files["i3d"] = {"path": nets.i3d.path, "sha256": nets.i3d.digest}
        if "isv" in plan.metrics:
            nets.c3d = TorchScriptDetector(config.c3d, name="C3D", call_kwargs=C3D_CALL, device=config.device)
            nets.files["c3d"] = {"path": nets.c3d.path, "sha256": nets.c3d.digest}
    if "cd-fvd" in plan.metrics:
        from vidtool.metrics.cdfvd import VideoMAEDetector

        nets.videomae = VideoMAEDetector(config.videomae, config.device, dtype=config.dtype)
        nets.files["videomae"] = {"path": nets.videomae.path, "sha256": nets.videomae.digest,
                                  "image_size": nets.videomae.image_size, "frames": nets.videomae.frames,
                                  "pooling": nets.videomae.pooling}
    if "lpips" in plan.metrics:
        from vidtool.metrics.lpips import load_lpips

        nets.lpips, weights = load_lpips(config.lpips_backbone, config.lpips_heads, config.device, dtype=config.dtype)
        nets.files["lpips"] = {"path": weights.backbone, "sha256": weights.digests["backbone"], "net": weights.net,
                               "heads": {"path": weights.heads, "sha256": weights.digests["heads"]}}
    if "clipsim" in plan.metrics:
        from vidtool.metrics.clipsim import CLIPScorer

        nets.clip = CLIPScorer(config.clip, config.device, dtype=config.dtype)
        nets.files["clip"] = {"path": nets.clip.path, "sha256": nets.clip.digest}
    if config.dtype != "float32":  # the report says which numbers come from lower-precision networks
        for name in ("videomae", "lpips", "clip"):
            if name in nets.files:
                nets.files[name]["dtype"] = config.dtype
    return nets


def read_side(plan: Plan, nets: Networks) -> int | None:
    """The short side clips are read at: None (their own size) when a metric measures the frames as
    they are, else the largest input of the networks that resize them, so a 4K clip is decoded small
    (vidtool.video shrinks while decoding) instead of whole."""
    if not plan.metrics or any(m in NATIVE for m in plan.metrics):
        return None
    sides = {"fvd": I3D_SIDE, "isv": C3D_SIDE, "cd-fvd": getattr(nets.videomae, "image_size", None),
             "clipsim": getattr(nets.clip, "size", None)}
    wanted = [sides.get(m) for m in plan.metrics]
    return None if any(side is None for side in wanted) else int(max(wanted))


def build_setup(config: EvaluateConfig, plan: Plan, generated: VideoSet, reference: VideoSet | None,
                nets: Networks) -> dict:
    """Everything the numbers depend on; a shard's setup must equal every other shard's to merge."""
    codebook = None
    if "codebook" in plan.metrics:
        from vidtool.metrics.codebook import codebook_size_from_model

        codebook = config.codebook_size or codebook_size_from_model(config.model)
        if codebook < 1:
            raise UserError(f"--codebook-size must be at least 1, got {codebook}")
    sets = {"generated": {**set_description(generated), "digest": describe_digests(generated)}}
    if reference is not None:
        sets["reference"] = {**set_description(reference), "digest": describe_digests(reference)}
    # the protocol knobs; weight files enter through their digests in "models"
    options = {k: v for k, v in asdict(config).items() if k in PROTOCOL_OPTIONS}
    options["codebook_size"] = codebook
    options["read_side"] = read_side(plan, nets)  # clips decoded at about twice this short side (None: own size)
    return {"metrics": list(plan.metrics), "unavailable": plan.unavailable, "probe_prompts": plan.probe_prompts,
            "probe_reconstruction": plan.probe_reconstruction, "sets": sets, "models": nets.files, "options": options}


def prepare(config: EvaluateConfig, generated: VideoSet, reference: VideoSet | None) -> tuple[Plan, Networks, dict]:
    """The metrics to run, their loaded networks, and the setup (`build_setup`) of this run."""
    plan = plan_metrics(config, generated, reference)
    nets = load_networks(config, plan)
    return plan, nets, build_setup(config, plan, generated, reference, nets)


class RowComputer:
    """Turns batches of videos into rows with the loaded networks."""

    def __init__(self, config: EvaluateConfig, setup: dict, nets: Networks):
        self.config, self.setup, self.nets = config, setup, nets
        self.side = setup["options"].get("read_side")
        self.metrics = set(setup["metrics"])
        self.jobs = []  # (field, detector, clip protocol, cache, videos used), for the detector metrics
        if nets.i3d is not None:
            from vidtool.metrics.fvd import FVDConfig

            fvd = FVDConfig(config.fvd_variant, config.fvd_videos)
            self.jobs.append(("fvd", nets.i3d, fvd.clip, self._cache(nets.i3d, fvd.clip), fvd.max_videos))
        if nets.videomae is not None:
            clip = nets.videomae.clip
            self.jobs.append(("cd-fvd", nets.videomae, clip, self._cache(nets.videomae, clip), config.fvd_videos))
        if nets.c3d is not None:
            from vidtool.metrics.video_inception_score import C3D_CLIP

            self.jobs.append(("isv", nets.c3d, C3D_CLIP, self._cache(nets.c3d, C3D_CLIP), config.isv_videos))

    def load(self, item) -> Clip:
        """An item's frames, decoded at the run's read side (`read_side`)."""
        return item.load(short_side=self.side)

    def _cache(self, detector, clip):
        from vidtool.metrics.feature_cache import FeatureCache

        if not self.config.cache:
            return None
        precision = getattr(detector, "dtype", "float32")  # features of another precision are other features
        suffix = "" if precision == "float32" else f"-{precision}"
        return FeatureCache(self.config.cache, f"{detector.name.lower()}-{detector.digest}-{clip.name}{suffix}")

    def generated_rows(self, items, indices: list[int], refs) -> list[dict[str, np.ndarray]]:
        """Rows of generated videos `items` (set positions `indices`); `refs` their paired clips or None."""
        clips = [self.load(item) for item in items]
        rows = [{"shape": np.array([c.frames.shape[:3]])} for c in clips]
        if self.setup["sets"]["generated"]["kind"] == "tokens":
            size = self.setup["options"]["codebook_size"]
            for item, clip, row in zip(items, clips, rows):
                row.update(_code_rows(clip.frames, size, item.key))
            return rows
        for k, (item, clip, row) in enumerate(zip(items, clips, rows)):
            ref = refs[k] if refs else None
            if ref is not None:
                row["ref_shape"] = np.array([ref.frames.shape[:3]])
            row.update(self._single_video(item, clip, ref))
        self._detector_rows(items, indices, clips, rows, "generated")
        return rows

    def reference_rows(self, items, indices: list[int]) -> list[dict[str, np.ndarray]]:
        """Reference-set rows: only what a distribution metric (FVD, cd-FVD) needs from each video."""
        clips = [self.load(item) for item in items]
        rows = [{"shape": np.array([c.frames.shape[:3]])} for c in clips]
        self._detector_rows(items, indices, clips, rows, "reference")
        return rows

    def _single_video(self, item, clip, ref) -> dict[str, np.ndarray]:
        from vidtool.metrics import vbench_classical as vb
        from vidtool.metrics.frame_quality import psnr_frames, ssim_frames

        frames, row = clip.frames, {}
        if any(m in self.metrics for m in PAIRED):
            _check_pair(item.key, frames, ref)
            if "psnr" in self.metrics:
                row["psnr"] = psnr_frames(frames, ref.frames)
            if "ssim" in self.metrics:
                row["ssim"] = ssim_frames(frames, ref.frames)
            if "lpips" in self.metrics:
                from vidtool.metrics.lpips import lpips_frames

                row["lpips"] = lpips_frames(self.nets.lpips, frames, ref.frames)
        if "clipsim" in self.metrics:
            row["clipsim"] = self.nets.clip.frame_scores(frames, item.prompt)
        if "temporal-flickering" in self.metrics and len(frames) > 1:
            row["flicker"] = vb.frame_differences(frames)
        if "dynamic-degree" in self.metrics:
            fps = clip.fps or DEFAULT_FPS
            peaks = vb.flow_peaks(frames, fps)
            sampled = vb.sampled_count(len(frames), fps)
            row["dynamic"] = np.array([int(vb.is_dynamic(peaks, sampled, *frames.shape[1:3]))])
        if "motion-smoothness" in self.metrics:
            score = vb.motion_smoothness(frames)
            if score is not None:
                row["smoothness"] = np.array([score])
        if "shapes-probe" in self.metrics:
            reading = shapes_probe.read_clip(frames)
            row["probe"] = reading.as_indices()[None]
            if self.setup["probe_prompts"]:
                row["probe_target"] = shapes_probe.prompt_target(item.prompt)[None]
            if self.setup["probe_reconstruction"]:
                row["probe_source"] = shapes_probe.read_clip(ref.frames).as_indices()[None]
        return row

    def _detector_rows(self, items, indices, clips, rows, role: str) -> None:
        from vidtool.metrics.video_detectors import clip_outputs

        for name, detector, protocol, cache, limit in self.jobs:
            if name == "isv" and role != "generated":
                continue  # the inception score judges the generated set alone
            chosen = [k for k, index in enumerate(indices) if index < limit]
            videos = [(items[k].key, items[k].digest, clips[k].frames) for k in chosen]
            for k, out in zip(chosen, clip_outputs(detector, protocol, videos, cache)):
                rows[k][name] = out[None]


def _check_pair(key: str, frames: np.ndarray, ref) -> None:
    if frames.shape != ref.frames.shape:
        t, h, w = frames.shape[:3]
        rt, rh, rw = ref.frames.shape[:3]
        raise UserError(f"{key} is {t} frames of {w}x{h} but its reference is {rt} frames of {rw}x{rh}; paired metrics "
                        "compare frame by frame and never resize: bring both sets to one size and length "
                        "(vidtool convert --size S --frames T)")


def _code_rows(tokens: np.ndarray, size: int, key: str) -> dict[str, np.ndarray]:
    """The codes a token clip uses with their counts, [U, 2] — compact where the codebook is large."""
    from vidtool.metrics.codebook import code_counts

    counts = code_counts(tokens, size, key)
    used = np.flatnonzero(counts)
    return {"codes": np.stack([used, counts[used]], axis=1)}


def compute_rows(config: EvaluateConfig, setup: dict, nets: Networks, generated: VideoSet, reference: VideoSet | None,
                 shard: tuple[int, int] = (0, 1), progress: Callable[[int], None] | None = None) -> Rows:
    """Rows for this shard's slice of each set, in set order."""
    computer = RowComputer(config, setup, nets)
    rows = Rows()
    paired = any(m in setup["metrics"] for m in PAIRED) or setup["probe_reconstruction"]
    gen_range = shard_range(len(generated), *shard)
    distribution = reference is not None and any(m in setup["metrics"] for m in DISTRIBUTION)
    ref_range = shard_range(len(reference), *shard) if distribution else range(0)
    done = 0
    step = max(1, config.batch)
    for start in range(gen_range.start, gen_range.stop, step):
        indices = list(range(start, min(start + step, gen_range.stop)))
        items = [generated.items[i] for i in indices]
        refs = [computer.load(reference.items[i]) for i in indices] if paired else None
        for item, row in zip(items, computer.generated_rows(items, indices, refs)):
            rows.add("generated", item.key, row)
        done += len(indices)
        if progress:
            progress(done)
    for start in range(ref_range.start, ref_range.stop, step):
        indices = list(range(start, min(start + step, ref_range.stop)))
        items = [reference.items[i] for i in indices]
        for item, row in zip(items, computer.reference_rows(items, indices)):
            rows.add("reference", item.key, row)
        done += len(indices)
        if progress:
            progress(done)
    return rows


def work_count(setup: dict, generated: VideoSet, reference: VideoSet | None, shard: tuple[int, int]) -> int:
    """How many videos this shard reads, for a progress bar."""
    count = len(shard_range(len(generated), *shard))
    if reference is not None and any(m in setup["metrics"] for m in DISTRIBUTION):
        count += len(shard_range(len(reference), *shard))
    return count
