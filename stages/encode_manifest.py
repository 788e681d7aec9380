"""`encode`/`tokenize --manifest`: every clip of a manifest → one tensor file, sharded and resumable.

The model is loaded once per process. Clip `clips/000001.mp4` of the manifest becomes
OUT/clips/000001.tokens.safetensors (`.latents.` for encode); the output manifest lists those files
as `path`, the clip as `source`, and keeps the caption and the other fields (paths rebased). A clip
that cannot be read or encoded (corrupt, too short, a --crop larger than it) is an `error` record, not a crash.
Sharding, the journal that makes a rerun skip finished clips, and merging are `vidtool.data.shards`.
"""

from __future__ import annotations

from pathlib import Path


def encode_manifest(manifest: str, out_dir: str, *, shard_option: str | None, retry_errors: bool, model: str | None,
                    fps: float | None, size: int | None, frames: int | None, chunk: int | None, role: str,
                    context: int | None, max_memory: str | None = None, crop: str | None = None) -> None:
    import numpy as np

    from stages.autoencode import load_encoder
    from stages.data_run import run_data_stage
    from stages.media_input import VideoInput, fit_frames, read_video_input
    from vidtool import checkpoint, tensorfile, video
    from vidtool.budget import parse_memory
    from vidtool.data import shards
    from vidtool.data.manifest import read_manifest, resolve
    from vidtool.errors import UserError

    shard = shards.resolve_shard(shard_option)
    files = shards.output_files(out_dir, role, shard, folder=True)
    out_folder = files.manifest.parent
    items = shards.keyed(read_manifest(manifest))
    encoder = load_encoder(model, role)
    budget = parse_memory(max_memory) if max_memory else None
    suffix = f".{encoder.kind}.safetensors"

    def read(record: dict) -> VideoInput:
        path = resolve(manifest, record["path"])
        if path.is_dir():
            # A frame folder has no rate of its own: it plays at the record's fps, and --fps then
            # keeps the nearest frames, as ClipDataset reads it for training.
            native = float(record.get("fps") or video.FOLDER_FPS)
            clip = fit_frames(video.read_video(path, fps=native, shrink_for=size, max_memory=budget).frames,
                              size=size, crop=crop, multiple=encoder.ae.spatial_factor)
            if fps:
                picks = np.round(np.arange(0, len(clip) * fps / native) * native / fps).astype(np.int64)
                clip = clip[np.minimum(picks, len(clip) - 1)]
            clip = clip[:frames] if frames else clip
            return VideoInput(clip[None], fps or native, path.name, record.get("caption"))
        clip = read_video_input(str(path), fps=fps, size=size, frames=frames, crop=crop,
                                multiple=encoder.ae.spatial_factor, max_memory=max_memory)
        clip.prompt = record.get("caption", clip.prompt)
        return clip

    def process(batch: list[shards.Item]) -> list[shards.Outcome]:
        outcomes = []
        for item in batch:
            base = shards.rebase(item.record, manifest, out_folder)
            try:
                clip = read(item.record)
                encoded = encoder.encode(clip, chunk, max_memory=max_memory, context=context)
            except UserError as e:
                outcomes.append(shards.failure(base, str(e)))
                continue
            target = out_folder / (item.key + suffix)
            tensorfile.save(encoded, target)
            # The clip's fields stay (caption, masks …); fps and the shape become those of the video
            # the tensor file holds (after --fps, --size, --frames), as vidtool.data.manifest reads them.
            frames, height, width = clip.frames.shape[1:4]
            outcomes.append(shards.Outcome(records=[{**base, "path": target.relative_to(out_folder).as_posix(),
                                                     "source": base["path"], "fps": encoded.fps, "frames": frames,
                                                     "height": height, "width": width}]))
        return outcomes

    settings = {"role": role, "model": checkpoint.model_tag(encoder.folder), "fps": fps, "size": size,
                "crop": crop, "frames": frames, "chunk": chunk, "context": context}
    run_data_stage(stage=role, items=items, shard=shard, files=files, settings=settings, process=process,
                   retry_errors=retry_errors)


def check_manifest_options(source: str, out: str, manifest: str | None, out_dir: str | None,
                           shard: str | None) -> None:
    """Manifest mode and single-clip mode take different outputs; mixing them is a user error."""
    from vidtool.errors import UserError

    if manifest is None:
        if out_dir or shard:
            raise UserError("--out-dir and --shard go with --manifest M.jsonl (a whole data set); "
                            "for one clip give SOURCE and -o")
        return
    if source != "-" or out != "-":
        raise UserError("with --manifest, outputs go to --out-dir DIR (one tensor file per clip); drop SOURCE and -o")
    if not out_dir:
        raise UserError("--manifest needs --out-dir DIR for the tensor files and their manifest")
    if not Path(manifest).is_file():
        raise UserError(f"manifest not found: {manifest}")
