"""`vidtool recaption`: rewrite a manifest's captions with a local VLM or LLM (MotionAura App. C.2)."""

from __future__ import annotations

from typing import Optional

import typer

app = typer.Typer(add_completion=False)

HELP = """Rewrite every clip's caption with a vision-language model (MotionAura App. C.2).

--model is a local transformers folder (nothing is downloaded):
  video VLM (LLaVA-NeXT-Video, Video-LLaVA, LLaVA-OneVision): sees --frames
  frames spread over the clip as a video (needs torchvision, as transformers'
  video processors do);
  image VLM (LLaVA, other image-text-to-text models): sees them as images;
  causal LM (--mode text): sees only the old caption and expands it.
--mode auto picks from the folder's config. The default prompt is the paper's
(App. C.2); --prompt-file replaces it (in text mode, {caption} marks where the
old caption goes). Greedy decoding, --batch clips at a time, at most
--max-new-tokens tokens (256, MotionAura's text length).

The output is the input manifest with `caption` replaced and the old one kept
as `caption_original` (paths rewritten for the output's folder). Clips that
cannot be read go to OUT.errors.jsonl with an `error` field. --shard I/N (or a
SLURM array) does shard I only and -o is then a folder: join the shards with
`vidtool merge-shards DIR -o OUT.jsonl`. A rerun skips finished clips.

Examples:

  vidtool recaption data/shapes/manifest.jsonl -o recaptioned.jsonl --model LLaVA-NeXT-Video-7B-hf/

  vidtool recaption data/shapes/manifest.jsonl -o parts/ --model llava-1.5-7b-hf/ --frames 4 --shard 3/16

  vidtool recaption data/shapes/manifest.jsonl -o longer.jsonl --model Qwen2.5-1.5B-Instruct/ --mode text"""


@app.command("recaption", help=HELP)
def recaption(
    manifest: str = typer.Argument(..., help="Input manifest.jsonl (records with path and caption)."),
    out: str = typer.Option(..., "--out", "-o", help="Output manifest .jsonl; with --shard, a folder for shard files."),
    model: str = typer.Option(..., "--model", "-m", help="Local transformers folder of the VLM or LLM."),
    mode: str = typer.Option("auto", "--mode", help="auto, video, image or text."),
    prompt_file: Optional[str] = typer.Option(None, "--prompt-file", help="A text file with the prompt (default: the paper's)."),
    frames: int = typer.Option(8, "--frames", min=1, max=256, help="Frames per clip shown to a VLM."),
    batch: int = typer.Option(4, "--batch", min=1, help="Clips per generate call."),
    max_new_tokens: int = typer.Option(256, "--max-new-tokens", min=1, max=8192, help="Maximum caption length in tokens."),
    dtype: str = typer.Option("auto", "--dtype", help="auto (bfloat16 on CUDA, float32 on CPU), float32, bfloat16, float16."),
    shard: Optional[str] = typer.Option(None, "--shard", help="I/N: do shard I of N (default: the SLURM array task)."),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="Redo clips that failed before."),
) -> None:
    from pathlib import Path

    from stages.context import check_output, resolve_device
    from stages.data_run import run_data_stage
    from vidtool.data import shards
    from vidtool.data.manifest import read_manifest, resolve
    from vidtool.errors import UserError
    from vidtool.recaption import CaptionInput, Captioner, read_clip_frames

    prompt = None
    if prompt_file:
        try:
            prompt = Path(prompt_file).read_text(encoding="utf-8").strip()
        except OSError as e:
            raise UserError(f"cannot read --prompt-file {prompt_file}: {e.strerror}") from None
        if not prompt:
            raise UserError(f"--prompt-file {prompt_file} is empty")
    shard_at = shards.resolve_shard(shard)
    if shard_at is None:
        check_output(out, inputs=[manifest, prompt_file], suffixes=(".jsonl",))
    files = shards.output_files(out, "recaption", shard_at, folder=False)
    items = shards.keyed(read_manifest(manifest))
    captioner = Captioner(model, mode=mode, prompt=prompt, max_new_tokens=max_new_tokens, frames=frames,
                          device=resolve_device(), dtype=dtype)
    out_folder = files.manifest.parent
    side = captioner.input_side  # frames are decoded no larger than the model looks at them

    def process(batch_items: list[shards.Item]) -> list[shards.Outcome]:
        outcomes: list[shards.Outcome | None] = [None] * len(batch_items)
        ready: list[tuple[int, dict, CaptionInput]] = []
        for i, item in enumerate(batch_items):
            base = shards.rebase(item.record, manifest, out_folder)
            old = item.record.get("caption")
            if captioner.mode == "text" and not old:
                outcomes[i] = shards.failure(base, "no caption to expand in text mode; give the clip a caption or use a VLM")
                continue
            try:
                clip = None if captioner.mode == "text" else read_clip_frames(
                    resolve(manifest, item.record["path"]), frames, fps=item.record.get("fps"), side=side)
            except UserError as e:
                outcomes[i] = shards.failure(base, str(e))
                continue
            ready.append((i, base, CaptionInput(old, clip)))
        if ready:
            for (i, base, given), text in zip(ready, captioner.caption([r[2] for r in ready])):
                if not text:
                    outcomes[i] = shards.failure(base, "the model returned an empty caption")
                    continue
                # A second recaption keeps the first original: it is the data set's own caption.
                original = base.get("caption_original", given.caption)
                outcomes[i] = shards.Outcome(records=[{**base, "caption": text, "caption_original": original}])
        return outcomes

    run_data_stage(stage="recaption", items=items, shard=shard_at, files=files, settings=captioner.settings(),
                   process=process, batch=batch, retry_errors=retry_errors)
