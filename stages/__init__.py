"""Command-line stages of vidtool, one module per subcommand.

`STAGES` is the explicit table the `vidtool` command reads: stage name → the module holding its typer
`app` (two names may share a module: an alias). A stage module imports only typer and the standard
library at module level (heavy imports live inside the command function), so `vidtool --help` can
list every stage without loading torch.
"""

STAGES: dict[str, str] = {
    "convert": "stages.convert",
    "curate-sketch-dataset": "stages.curate_sketch_dataset",
    "cut-scenes": "stages.cut_scenes",
    "decode": "stages.decode",
    "embed-text": "stages.embed_text",
    "encode": "stages.encode",
    "evaluate": "stages.evaluate",
    "filter": "stages.filter",
    "generate": "stages.generate",
    "import-weights": "stages.import_weights",
    "index": "stages.index",
    "info": "stages.info",
    "inpaint": "stages.inpaint",
    "interpolate": "stages.interpolate",
    "make-dataset": "stages.make_dataset",
    "merge-shards": "stages.merge_shards",
    "recaption": "stages.recaption",
    "restore": "stages.restore",
    "runs": "stages.runs",
    "score": "stages.score",
    "sample-keyframes": "stages.generate",  # the FusionFrames name of `generate`
    "train-denoiser": "stages.train_denoiser",
    "train-vae": "stages.train_vae",
    "tokenize": "stages.tokenize",
}

# Stages that run networks for inference: they take --dtype after their name too.
PRECISION_STAGES = {"decode", "encode", "evaluate", "generate", "inpaint", "interpolate", "sample-keyframes", "tokenize"}
# Stages whose networks run many steps or chunks: they take --compile after their name.
COMPILE_STAGES = {"decode", "encode", "generate", "interpolate", "sample-keyframes", "tokenize"}
