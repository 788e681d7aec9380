"""Generators: the frozen text-to-image base and the video families built on it."""
