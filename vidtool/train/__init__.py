"""Training: one loop for every trainable family.

`train(model, dataset, collate_fn, TrainConfig(...), out_dir)` runs AdamW with warm-up and decay,
gradient accumulation and clipping, an optional EMA, mixed precision on CUDA and DDP under torchrun.
The model supplies its losses (`training_losses`); the loop knows none. `out_dir` ends up a model
folder (`from_pretrained` reads it) with the resume state in `out_dir/train_state/` and the metrics
in `out_dir/metrics.jsonl`.
"""
