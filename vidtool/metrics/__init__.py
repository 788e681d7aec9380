"""Measuring generated and reconstructed video against a reference.

`frame_quality`: PSNR and SSIM per frame and per video, by the protocol of the common video-metrics
code (images scaled to [0, 1], per-frame scores averaged over a video's frames, and the per-video
means averaged over a dataset by the caller).
"""
