"""Does sampling a video by latent motion diffusion cost about as much as sampling one image?
(LaMD §3.2 Fig. 4, §4.4.1 Table 11.)

    python benchmarks/lamd_sampling.py                    # tiny widths, K = 20 steps, on CPU
    python benchmarks/lamd_sampling.py --preset bair --steps 200 --device cuda

Three samplers with the same U-Net width (the DMG preset's block_out_channels, layers per block,
heads and conditioning width), the same K steps and the same conditioning tokens (content + text),
random weights (cost does not depend on them), batch 1, timed side by side in one run:

- DMG: LaMD's 2D U-Net on the motion latent z_m [d, h, w]; the MCD-VAE folds all L frames into
  channels (r_t = L), so its input is the same for 16 and 128 frames;
- latent video diffusion: diffusers' `UNet3DConditionModel` (LVDM/VDM-style 3D U-Net) on video
  latents [4, L / r_t, h, w] of an autoencoder with the same r_s and r_t = --video-rt (default 4);
- image diffusion: the 2D U-Net on one image latent [4, h, w] (LDM, Table 11's first row).

Each configuration runs the full K-step DDPM loop (`DMGModel.generate` for the DMG, the same
scheduler loop for the others) --repeats times, taking turns; the median is reported. Goals (the
shape of Table 11, not its seconds): DMG / image ≈ 1 at any length (10.7 s for 128 frames vs
LDM's 9.8 s for one image), DMG(128) / DMG(16) ≈ 1, latent-video / DMG growing with L.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def timed(runs: dict, repeats: int) -> dict:
    """Median seconds of each callable; the callables take turns in every round, so a machine
    that gets busier or quieter during the run shifts all of them alike."""
    for fn in runs.values():
        fn()  # warm-up: allocator and kernel selection
    times = {name: [] for name in runs}
    for _ in range(repeats):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


def main() -> None:
    from diffusers import UNet2DConditionModel, UNet3DConditionModel

    from vidtool.generators.dmg import DMGModel, preset
    from vidtool.pipelines import lamd as lamd_pipeline

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="tiny", help="DMG preset whose widths all three samplers use")
    parser.add_argument("--steps", type=int, default=20, help="K sampling steps (Table 11: 200)")
    parser.add_argument("--frames", type=int, nargs="+", default=[16, 128])
    parser.add_argument("--video-rt", type=int, default=4, help="temporal factor of the latent-video autoencoder")
    parser.add_argument("--text-tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device(args.device)

    config = preset(args.preset, text_dim=384)
    dmg = DMGModel(config).to(device).eval()
    width = dict(block_out_channels=tuple(config.block_out_channels), layers_per_block=config.layers_per_block,
                 attention_head_dim=config.attention_head_dim, cross_attention_dim=config.cross_attention_dim,
                 norm_num_groups=config.norm_num_groups)
    levels = len(config.block_out_channels)
    image_unet = UNet2DConditionModel(sample_size=config.sample_size, in_channels=4, out_channels=4,
                                      down_block_types=("CrossAttnDownBlock2D",) * levels,
                                      up_block_types=("CrossAttnUpBlock2D",) * levels, **width).to(device).eval()
    video_unet = UNet3DConditionModel(sample_size=config.sample_size, in_channels=4, out_channels=4,
                                      down_block_types=("CrossAttnDownBlock3D",) * levels,
                                      up_block_types=("CrossAttnUpBlock3D",) * levels, **width).to(device).eval()

    h = config.sample_size
    content = torch.randn(1, config.content_channels, h, h, device=device)
    text = torch.randn(1, args.text_tokens, 384, device=device)
    text_mask = torch.ones(1, args.text_tokens, dtype=torch.bool, device=device)
    tokens = torch.randn(1, h * h + args.text_tokens, config.cross_attention_dim, device=device)

    def unet_loop(unet, shape):
        def run():
            scheduler = config.schedule.sampler("ddpm")
            scheduler.set_timesteps(args.steps)
            x = torch.randn(shape, device=device)
            for t in scheduler.timesteps:
                eps = unet(x, t.to(device), encoder_hidden_states=tokens).sample
                x = scheduler.step(eps, t, x).prev_sample
        return run

    def dmg_run():
        lamd_pipeline.sample_motion(dmg, content, text=text, text_mask=text_mask, steps=args.steps, guidance_scale=1.0)

    params = {name: sum(p.numel() for p in m.parameters()) / 1e6
              for name, m in (("dmg", dmg), ("image", image_unet), ("video", video_unet))}
    print(f"preset {args.preset}, K = {args.steps} steps, latent {h}x{h}, device {device}; parameters (M): "
          + ", ".join(f"{k} {v:.1f}" for k, v in params.items()))
    runs = {"image": unet_loop(image_unet, (1, 4, h, h))}
    for frames in args.frames:
        runs[f"dmg{frames}"] = dmg_run  # z_m [d, h, w] whatever L is: the same work for every length
        runs[f"video{frames}"] = unet_loop(video_unet, (1, 4, max(frames // args.video_rt, 1), h, h))
    with torch.inference_mode():
        seconds = timed(runs, args.repeats)
    image_s = seconds["image"]
    rows = [(f, seconds[f"dmg{f}"], seconds[f"video{f}"], max(f // args.video_rt, 1)) for f in args.frames]
    print(f"{'frames':>6} {'DMG s':>8} {'latent-video s':>15} {'latent frames':>14} {'video/DMG':>10}")
    for frames, dmg_s, video_s, latent_frames in rows:
        print(f"{frames:>6} {dmg_s:>8.2f} {video_s:>15.2f} {latent_frames:>14} {video_s / dmg_s:>10.2f}")
    first, last = rows[0], rows[-1]
    print(f"image diffusion (one latent image): {image_s:.2f} s")
    print(f"ratios: DMG({last[0]}) / DMG({first[0]}) = {last[1] / first[1]:.2f}; DMG({last[0]}) / image = "
          f"{last[1] / image_s:.2f} (Table 11: LaMD at 128 frames / LDM one image = 10.7 / 9.8 = 1.09); "
          f"latent-video / DMG = {first[2] / first[1]:.2f} at {first[0]} frames, {last[2] / last[1]:.2f} at {last[0]} "
          f"(Table 11, LVDM / LaMD at 128 frames: 26.6 / 10.7 = 2.5, with LVDM's separate interpolation model)")


if __name__ == "__main__":
    main()
