"""`vidtool encode`: video → latents with a video autoencoder."""

from __future__ import annotations

import typer

from stages import coding_options as opt

app = typer.Typer(add_completion=False)

HELP = """Encode a video into latents with a video autoencoder.

Input: mp4/webm/mov/gif, a folder of frames, or a 'video' tensor file (path or - for stdin).
Output: a 'latents' tensor file that records the model, so `vidtool decode` finds the decoder.
The clip keeps its own size: --size N resizes its short side to N with the aspect kept (both sides
rounded to multiples of the model's spatial factor), --crop centre-crops only when asked. A clip
whose length or size is not a multiple of the model's factors is padded with its last frame, row
and column, and decode trims it back to the input's length, height and width; a clip shorter than
the temporal factor is refused.

Examples:

  vidtool encode in.mp4 -o z.safetensors

  vidtool encode in.mp4 | vidtool decode -o rec.mp4

  vidtool encode in.mp4 --model runs/cm --fps 8 --size 64 -o z.safetensors   # short side 64, aspect kept

  vidtool encode in.mp4 --size 64 --crop 64 | vidtool decode -o square.mp4

  vidtool encode long.mp4 --max-memory 6G --compile -o z.safetensors

  vidtool encode in.mp4 --family mcd-vae --fps 4 -o motion.safetensors   # LaMD motion latent + first frame

A whole data set: --manifest M.jsonl --out-dir DIR writes DIR/<clip>.latents.safetensors per clip
and DIR/manifest.jsonl listing them (failed clips in DIR/manifest.errors.jsonl). With --shard I/N
(or in a SLURM job array) it does shard I only and writes DIR/encode-shard-I-of-N.jsonl; join the
shards with `vidtool merge-shards DIR`. A rerun skips the clips already done.

  vidtool encode --manifest data/shapes/manifest.jsonl --out-dir latents/ --shard 0/4"""


def encoder_command(role: str, model_help: str):
    """The shared options of `encode` and `tokenize`; `role` picks the output kind and default model."""

    def command(
        source: str = typer.Argument("-", help="Video file, frame folder, 'video' tensor file, or - for stdin."),
        out: str = typer.Option("-", "--out", "-o", help="Output tensor file, or - for stdout."),
        model: str = typer.Option(None, "--model", "-m", help=model_help),
        family: str = typer.Option(None, help="Without --model: the bundled model of this family (mcd-vae: LaMD "
                                              "motion latents, a 'motion' file)."),
        fps: float = typer.Option(None, min=0.1, max=240, help="Resample the input to this frame rate."),
        size: opt.Size = None,
        crop: opt.Crop = None,
        frames: int = typer.Option(None, min=1, help="Use at most this many frames."),
        chunk: opt.Chunk = None,
        context: opt.Context = None,
        manifest: str = typer.Option(None, "--manifest", help="A data set manifest.jsonl: encode every clip (with --out-dir)."),
        out_dir: str = typer.Option(None, "--out-dir", help="With --manifest: folder for one tensor file per clip and the manifest."),
        shard: str = typer.Option(None, "--shard", help="With --manifest: I/N, do shard I of N (default: the SLURM array task)."),
        retry_errors: bool = typer.Option(False, "--retry-errors", help="With --manifest: redo clips that failed before."),
        max_memory: str = typer.Option(None, "--max-memory", help="Memory budget (e.g. 6G, 512M, or auto = from the "
                                                                  "device): picks the --chunk size that fits under it."),
    ) -> None:
        from stages.encode_manifest import check_manifest_options, encode_manifest

        if family is not None:
            model = _model_of_family(family, model)
        check_manifest_options(source, out, manifest, out_dir, shard)
        if manifest is None:
            from stages.context import check_output

            check_output(out, inputs=[source])
        if manifest is not None:
            encode_manifest(manifest, out_dir, shard_option=shard, retry_errors=retry_errors, model=model, fps=fps,
                            size=size, crop=crop, frames=frames, chunk=chunk, role=role,
                            max_memory=max_memory, context=context)
            return
        from stages.autoencode import encode_video

        encode_video(source, out, model=model, fps=fps, size=size, crop=crop, frames=frames, chunk=chunk, role=role,
                     max_memory=max_memory, context=context)

    return command


app.command("encode", help=HELP)(encoder_command("encode", "Model folder; default: the bundled cm-vae-tiny."))


def _model_of_family(family: str, model: str | None) -> str:
    """`--family F`: the bundled default of F, unless --model names a folder (which must be of family F)."""
    from vidtool import checkpoint, model_store
    from vidtool.errors import UserError

    if model is None:
        return str(model_store.default_model(family))
    found = checkpoint.read_config(model)["family"]
    if found != family:
        raise UserError(f"--model {model} is a {found} model, not {family}; drop --family or pass a {family} folder")
    return model
