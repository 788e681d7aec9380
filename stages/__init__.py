"""Command-line stages of vidtool, one module per subcommand.

`STAGES` is the explicit table the `vidtool` command reads: stage name → the module holding its typer
`app` (two names may share a module: an alias). A stage module imports only typer and the standard
library at module level (heavy imports live inside the command function), so `vidtool --help` can
list every stage without loading torch.
"""

STAGES: dict[str, str] = {
    "convert": "stages.convert",
    "decode": "stages.decode",
    "encode": "stages.encode",
    "evaluate": "stages.evaluate",
    "generate": "stages.generate",
    "info": "stages.info",
    "interpolate": "stages.interpolate",
    "make-dataset": "stages.make_dataset",
    "sample-keyframes": "stages.generate",  # the FusionFrames name of `generate`
    "train-denoiser": "stages.train_denoiser",
    "train-vae": "stages.train_vae",
    "tokenize": "stages.tokenize",
}
