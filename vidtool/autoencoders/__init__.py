"""Video autoencoders, one model per file.

Every autoencoder takes video as float [B, 3, T, H, W] in [-1, 1] and exposes:
`encode(video) -> EncoderOutput`, `decode(latents) -> video`, `temporal_factor`, `spatial_factor`,
`latent_channels`, and `training_losses(batch, *, step, total_steps) -> dict` whose "loss" entry is
optimised (the other entries are detached terms for logging).
Quantized families also expose `tokenize(video) -> LongTensor [B, t, h, w]` and
`decode_tokens(tokens) -> video`, `indices_to_latents(tokens) -> latents` and `codebook_size`.
"""
