"""vidtool: composable text-to-video stages over safetensors tensor files.

Importing the package is cheap; heavy libraries (torch, transformers, diffusers) are imported by the
modules that need them.
"""

__version__ = "0.1.0"
