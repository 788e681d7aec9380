"""Pipelines: one module per published pipeline. Each takes loaded models and tensors and returns a
small dataclass (`outputs.py`); samplers come from `vidtool.diffusion`, networks from
`vidtool.generators` / `vidtool.autoencoders`. Stages, benchmarks and tests call these.

    fusionframes  text → keyframes → interpolation (FusionFrames §4)
    harivo        text → video latents on a frozen T2I model, MG sampling (HARIVO §3.7)
    motionaura    text → token ids by masked diffusion; sketch-guided inpainting (MotionAura §3-4)
    lamd          image (+ text/label) → motion latent → video; motion transfer (LaMD §4)
"""
