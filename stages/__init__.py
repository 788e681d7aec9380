"""Command-line stages of vidtool, one module per subcommand.

`STAGES` is the explicit table the `vidtool` command reads: stage name → the module holding its typer
`app`. A stage module imports only typer and the standard library at module level (heavy imports
live inside the command function), so `vidtool --help` can list every stage without loading torch.
"""

STAGES: dict[str, str] = {
    "convert": "stages.convert",
    "decode": "stages.decode",
    "encode": "stages.encode",
    "info": "stages.info",
    "make-dataset": "stages.make_dataset",
    "train-vae": "stages.train_vae",
    "tokenize": "stages.tokenize",
}
