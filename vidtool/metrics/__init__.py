"""Measuring generated and reconstructed video against a reference (`vidtool evaluate`).

Metrics, one module each, by the protocol named in its docstring:
`frame_quality` (PSNR, SSIM), `lpips`, `fvd` (with `frechet`, `video_detectors`, `feature_cache`),
`video_inception_score`, `clipsim`, `vbench_classical` (flickering, dynamic degree, motion
smoothness), `shapes_probe` (the project's prompt-alignment probe), `codebook`.

The stage's machinery: `video_sets` (folders, manifests, tensor files as item lists), `evaluation`
(which metrics apply; per-video rows), `rows` (rows in memory and in shard files, merging),
`report` (rows → numbers with their protocol, models, counts, resolution and frames), `plots`.
"""
