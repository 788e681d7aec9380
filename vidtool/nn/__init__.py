"""Shared neural-network layers: attention, RoPE, AdaLN, LoRA, temporal blocks, quantizers."""
