"""Diffusion machinery shared by the generators: Gaussian schedules (diffusers' schedulers) and guidance."""
