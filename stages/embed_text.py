"""`vidtool embed-text`: prompts or captions → a text-embedding cache."""

from __future__ import annotations

from pathlib import Path

import typer

app = typer.Typer(add_completion=False)

HELP = """Encode the prompts of a prompt file (one per line) or the captions of a manifest (.jsonl) once,
into an 'embeddings' tensor file, so training and sampling never load the text encoder.

Rows are the distinct prompts plus the empty prompt (for classifier-free guidance). Pass the cache
to `vidtool generate --embeddings FILE` or `vidtool train-denoiser --embeddings FILE`.

Examples:

  vidtool embed-text prompts.txt -o prompts.emb.safetensors

  vidtool embed-text data/shapes/manifest.jsonl --text-encoder models/flan-t5-xl -o shapes.t5.safetensors

  vidtool generate --prompts prompts.txt --embeddings prompts.emb.safetensors | vidtool interpolate | vidtool decode -o out.mp4

Sharded (one task of a job array each; in a SLURM array the shard comes from SLURM_ARRAY_TASK_ID):
shard I of N encodes its slice of the distinct prompts into DIR/embed-text-shard-I-of-N.safetensors;
a finished shard is skipped on rerun; the folder DIR is itself a cache (every file in it is read).

  vidtool embed-text data/shapes/manifest.jsonl --shard 0/4 -o cache/"""


@app.command("embed-text", help=HELP)
def embed_text(
    sources: list[Path] = typer.Argument(..., help="Prompt files (.txt, one per line) or manifests (.jsonl, captions)."),
    out: Path = typer.Option(..., "--out", "-o", help="Cache file (or, with --shard, the folder for shard files)."),
    text_encoder: Path = typer.Option(None, help="Local transformers text-encoder folder: T5/Flan-T5 (encoder part), "
                                                 "CLIP text, MiniLM (default all-MiniLM-L6-v2), an SDXL pipeline "
                                                 "root (both encoders and the pooled projection)."),
    max_length: int = typer.Option(32, min=1, max=4096, help="Tokens per prompt (padding/truncation length)."),
    batch_size: int = typer.Option(64, min=1, help="Prompts per encoder call."),
    shard: str = typer.Option(None, help="I/N: encode shard I of N of the distinct prompts (default: the SLURM array task)."),
) -> None:
    import hashlib
    import json

    from stages.context import check_output, console, progress_bar, resolve_device
    from vidtool.data.shards import resolve_shard
    from vidtool.errors import UserError
    from vidtool.tensorfile import load, save
    from vidtool.text import TextEncoder
    from vidtool.text_cache import embed, unique_prompts

    given = [p for source in sources for p in _read(source)]
    if not given:
        raise UserError(f"no prompts in {', '.join(map(str, sources))}: write one per line (or captions in a manifest)")
    prompts = unique_prompts(given)
    part = resolve_shard(shard)
    if part is None:
        check_output(out, inputs=sources)
    digest = hashlib.sha256(json.dumps(prompts).encode()).hexdigest()[:16]
    settings = {"text_encoder": str(text_encoder) if text_encoder else None, "max_length": max_length, "prompts": digest}
    if part is not None:
        if out.suffix == ".safetensors":
            raise UserError(f"with --shard (or a SLURM array) -o names a folder for the shard files, not {out}")
        rows = part.range(len(prompts))
        prompts = prompts[rows.start : rows.stop]
        out = out / f"{part.file_stem('embed-text')}.safetensors"
        if out.is_file() and json.loads(load(out, kinds=["embeddings"]).extra.get("settings", "null")) == settings:
            console().print(f"shard {part} already done: {out}")
            return
    if not prompts:  # more shards than prompts: nothing to do is not a failure
        console().print(f"shard {part} owns none of the prompts; nothing to write")
        return
    encoder = TextEncoder(text_encoder, device=resolve_device(), max_length=max_length)
    with progress_bar("embedding prompts", total=len(prompts)) as done:
        tf = embed(prompts, encoder, batch_size=batch_size, progress=done)
    tf.extra["settings"] = json.dumps(settings, sort_keys=True)
    save(tf, out)
    n, length, dim = tf.main.shape
    console().print(f"[green]embeddings[/] {n} prompts × {length} tokens × {dim} ({encoder.name}) → {out}")


def _read(source: Path) -> list[str]:
    from vidtool.data.manifest import read_manifest, read_prompt_lines

    if source.suffix == ".jsonl":
        return [r["caption"] for r in read_manifest(source) if r.get("caption")]
    return read_prompt_lines(source)
