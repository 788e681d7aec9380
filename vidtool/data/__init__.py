"""Datasets: JSONL manifests, a clip loader for training, and the offline `shapes` and `photos` makers."""
