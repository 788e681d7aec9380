"""recipes/tiny/ keeps each training run's options in recipes/tiny/configs/RUN.yaml (issue 32, item 2).

The scripts run with `vidtool`, `torchrun` and `python` replaced by stubs that record their arguments;
every `train-*` command they issue must resolve, through the stage's own click command and --config
the way `vidtool` applies it, to the options of the flag list it replaced. OLD holds those flag lists
as `git show e3c8a23:recipes/tiny/SCRIPT` issued them with DATA=data RUNS=runs VAE=vae DEST=dest: one
command a line, indented lines continue it.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
from pathlib import Path

import click
import pytest
import typer

from conftest import ROOT
from stages.cli import app
from stages.run_config import apply, resolved
from vidtool.options_file import read_options_file

TINY = ROOT / "recipes" / "tiny"
SCRIPTS = ["fusionframes.sh", "harivo.sh", "lamd.sh", "motionaura.sh", "motionaura_fft.sh", "train_vae.sh"]
ENV = {"DATA": "data", "RUNS": "runs", "VAE": "vae", "DEST": "dest"}
STUB = "#!/bin/sh\nprintf '%s\\037' \"$(basename \"$0\")\" \"$@\" >> \"$RECORD\"\nprintf '\\036' >> \"$RECORD\"\n"

OLD = {
    "fusionframes.sh": """\
vidtool --quiet train-denoiser --family t2i --data data/shapes/manifest.jsonl --data data/photos/manifest.jsonl
    --vae vae -o runs/t2i-short --latent-set runs/latent-set.safetensors --steps 1500 --batch-size 16 --lr 3e-4
    --warmup 100
vidtool --quiet train-denoiser --family t2i --init runs/t2i-short --latent-set runs/latent-set.safetensors -o runs/t2i
    --steps 4000 --batch-size 16 --lr 3e-4 --warmup 50 --ema 0.999
vidtool --quiet train-denoiser --family keyframes --base runs/t2i --latent-set runs/latent-set.safetensors -o runs/keyframes
    --steps 2400 --batch-size 8 --lr 3e-4 --warmup 50 --ema 0.995
vidtool --quiet train-denoiser --family interp --base runs/t2i-short --latent-set runs/latent-set.safetensors
    -o runs/interp-short --steps 800 --batch-size 8 --lr 3e-4 --warmup 50 --ema 0.995
vidtool --quiet train-denoiser --family interp --base runs/t2i-short --latent-set runs/latent-set.safetensors
    -o runs/interp-short --steps 1600 --batch-size 8 --lr 3e-4 --warmup 50 --ema 0.995 --resume
vidtool --quiet train-denoiser --family interp --base runs/t2i --init runs/interp-short --latent-set runs/latent-set.safetensors
    -o runs/interp --steps 3000 --batch-size 8 --lr 3e-4 --warmup 50 --ema 0.995
""",
    "harivo.sh": """\
vidtool --quiet train-denoiser --family harivo --base runs/t2i-short --latent-set runs/latent-set.safetensors
    -o runs/harivo --steps 3000 --batch-size 4 --lr 3e-4 --warmup 50 --ema 0.995
""",
    "lamd.sh": """\
vidtool --quiet train-vae --family mcd-vae --data data/shapes/manifest.jsonl -o runs/mcd-vae --frames 8 --fps 4
    --steps 1800 --batch-size 4 --lr 1e-3 --warmup 100 --ema 0.995 --seed 0
vidtool --quiet train-denoiser --family dmg --vae runs/bundled/mcd-vae-tiny --data data/shapes/manifest.jsonl
    --fps 4 -o runs/dmg --steps 2000 --batch-size 32 --lr 5e-4 --warmup 100 --ema 0.995 --seed 0
""",
    "motionaura.sh": """\
vidtool --quiet train-denoiser --family spectral --no-fft --data data/shapes/manifest.jsonl --tokenizer vidtool/defaults/mbq-vae-tiny-v1
    --size 64 --frames 16 -o runs/spectral --batch-size 8 --lr 5e-4 --warmup 50 --schedule constant --ema 0.998
    --checkpoint-every 100 --steps 4000 --seed 0
vidtool --quiet train-denoiser --family spectral-inpaint --base dest/motionaura-tiny --token-set runs/spectral/token-set.safetensors
    -o runs/inpaint --set rank=16 --batch-size 4 --lr 1e-3 --warmup 20 --checkpoint-every 100 --steps 400
vidtool --quiet train-denoiser --family spectral-inpaint --base dest/motionaura-tiny --token-set runs/spectral/token-set.safetensors
    -o runs/inpaint --set rank=16 --batch-size 4 --lr 1e-3 --warmup 20 --checkpoint-every 100 --steps 1200
    --resume
""",
    "motionaura_fft.sh": """\
vidtool --quiet train-denoiser --family spectral --data data/shapes/manifest.jsonl --tokenizer vidtool/defaults/mbq-vae-tiny-v1
    --size 64 --batch-size 8 --ema 0.998 --frames 8 -o runs/spectral-fft-8 --lr 1e-3 --warmup 100
    --checkpoint-every 200 --steps 1600
vidtool --quiet train-denoiser --family spectral --data data/shapes/manifest.jsonl --tokenizer vidtool/defaults/mbq-vae-tiny-v1
    --size 64 --batch-size 8 --ema 0.998 --frames 8 -o runs/spectral-fft-8 --lr 1e-3 --warmup 100
    --checkpoint-every 200 --steps 2800 --resume
vidtool --quiet train-denoiser --family spectral --data data/shapes/manifest.jsonl --tokenizer vidtool/defaults/mbq-vae-tiny-v1
    --size 64 --batch-size 8 --ema 0.998 --frames 16 --init runs/spectral-fft-8 -o runs/spectral-fft --lr 5e-4
    --warmup 50 --schedule constant --checkpoint-every 100 --steps 5100
""",
    "train_vae.sh": """\
vidtool --quiet train-vae --family cm-vae --preset tiny-footage --data data/scenes/manifest.jsonl --data data/shapes-1k/manifest.jsonl
    -o runs/cm-vae-footage --steps 1500 --stop-at 514 --batch-size 8 --frames 1 --lr 1e-3 --warmup 50 --ema 0.995
    --seed 0 --checkpoint-every 150
vidtool --quiet train-vae --family movq-temporal --data data/shapes/manifest.jsonl --data data/photos/manifest.jsonl
    -o runs/movq-image --steps 2000 --batch-size 4 --lr 1e-3 --warmup 100 --ema 0.995 --seed 0
vidtool --quiet train-vae --family movq-temporal --init runs/bundled/movq-tiny --set stage=video --set temporal=conv1x1x3
    --data data/shapes/manifest.jsonl --data data/photos/manifest.jsonl -o runs/movq-video --steps 2400
    --batch-size 4 --frames 8 --lr 5e-4 --warmup 50 --ema 0.995 --seed 0
vidtool --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl --data data/photos/manifest.jsonl
    -o runs/mbq-vae-tiny --steps 1500 --batch-size 4 --lr 1e-3 --warmup 100 --ema 0.995 --seed 0 --set 'patch_mask_ratio=[0.1,0.3]'
    --set 'frame_mask_ratio=[0.05,0.2]'
vidtool --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl --data data/photos/manifest.jsonl
    --seed 0 --ema 0.995 --lr 1e-3 --set codebook_size=65536 --set window_frames=16 --checkpoint-every 500 -o runs/mbq16-stage1
    --steps 700 --batch-size 8 --warmup 50 --schedule constant --set 'train_crop=[8,32]' --set 'patch_mask_ratio=[0.1,0.3]'
    --set 'frame_mask_ratio=[0.05,0.2]'
torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl
    --data data/photos/manifest.jsonl --seed 0 --ema 0.995 --lr 1e-3 --set codebook_size=65536 --set window_frames=16
    --checkpoint-every 500 --set 'patch_mask_ratio=[0,0]' --set 'frame_mask_ratio=[0,0]' --warmup 100
    --schedule cosine --init runs/mbq16-stage1 -o runs/mbq16-stage2 --steps 10000 --stop-at 2255 --batch-size 4
    --set 'train_crop=[8,32]'
torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl
    --data data/photos/manifest.jsonl --seed 0 --ema 0.995 --lr 1e-3 --set codebook_size=65536 --set window_frames=16
    --checkpoint-every 500 --set 'patch_mask_ratio=[0,0]' --set 'frame_mask_ratio=[0,0]' --warmup 100
    --schedule cosine --init runs/mbq16-stage2 -o runs/mbq16-stage3 --steps 9000 --stop-at 4340 --batch-size 2
    --set 'train_crop=[16,32]'
torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl
    --data data/photos/manifest.jsonl --seed 0 --ema 0.995 --lr 1e-3 --set codebook_size=65536 --set window_frames=16
    --checkpoint-every 500 --set 'patch_mask_ratio=[0,0]' --set 'frame_mask_ratio=[0,0]' --warmup 100
    --schedule cosine --init runs/mbq16-stage3 -o runs/mbq16-stage4 --steps 1300 --batch-size 1 --lr 5e-4
    --warmup 20 --checkpoint-every 250
vidtool --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl --data data/photos/manifest.jsonl
    --seed 0 --ema 0.995 --lr 1e-3 --set codebook_size=65536 --set window_frames=16 --checkpoint-every 500
    --set 'patch_mask_ratio=[0,0]' --set 'frame_mask_ratio=[0,0]' --warmup 100 --schedule cosine --batch-size 2
    --checkpoint-every 400 --set l1_weight=0 --set l2_weight=5 --init runs/bundled/mbq-vae-tiny-run4 -o runs/mbq16-stage5
    --steps 3200 --stop-at 1200 --lr 3e-4 --warmup 50
vidtool --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl --data data/photos/manifest.jsonl
    --seed 0 --ema 0.995 --lr 1e-3 --set codebook_size=65536 --set window_frames=16 --checkpoint-every 500
    --set 'patch_mask_ratio=[0,0]' --set 'frame_mask_ratio=[0,0]' --warmup 100 --schedule cosine --batch-size 2
    --checkpoint-every 400 --set l1_weight=0 --set l2_weight=5 --set entropy_weight=0.02 --init runs/mbq16-stage5
    -o runs/mbq16-stage6 --seed 1 --steps 2000 --lr 2e-4 --warmup 20
vidtool --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl --data data/photos/manifest.jsonl
    --seed 0 --ema 0.995 --lr 1e-3 --set codebook_size=65536 --set window_frames=16 --checkpoint-every 500
    --set 'patch_mask_ratio=[0,0]' --set 'frame_mask_ratio=[0,0]' --warmup 100 --schedule cosine --batch-size 2
    --checkpoint-every 400 --set l1_weight=0 --set l2_weight=5 --set entropy_weight=0.02 --init runs/bundled/mbq-vae-tiny-run6
    -o runs/mbq16-stage7 --seed 2 --steps 4000 --stop-at 1250 --lr 2e-4 --warmup 20
torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl
    --data data/photos/manifest.jsonl --seed 0 --ema 0.995 --lr 1e-3 --set codebook_size=65536 --set window_frames=16
    --checkpoint-every 500 --set 'patch_mask_ratio=[0,0]' --set 'frame_mask_ratio=[0,0]' --warmup 100
    --schedule cosine --batch-size 2 --checkpoint-every 400 --set l1_weight=0 --set l2_weight=5 --set entropy_weight=0.02
    --init runs/mbq16-stage7 -o runs/mbq16-stage8 --seed 3 --steps 2900 --lr 3e-4 --warmup 50
torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl
    --data data/photos/manifest.jsonl --seed 0 --ema 0.995 --lr 1e-3 --set codebook_size=65536 --set window_frames=16
    --checkpoint-every 500 --set 'patch_mask_ratio=[0,0]' --set 'frame_mask_ratio=[0,0]' --warmup 100
    --schedule cosine --batch-size 2 --checkpoint-every 400 --set l1_weight=0 --set l2_weight=5 --set entropy_weight=0.02
    --init runs/bundled/mbq-vae-tiny-run8 -o runs/mbq16-stage9 --seed 4 --steps 4200 --lr 2.5e-4 --warmup 50
torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl
    --data data/photos/manifest.jsonl --seed 0 --ema 0.995 --lr 1e-3 --set codebook_size=65536 --set window_frames=16
    --checkpoint-every 500 --set 'patch_mask_ratio=[0,0]' --set 'frame_mask_ratio=[0,0]' --warmup 100
    --schedule cosine --batch-size 2 --checkpoint-every 400 --set l1_weight=0 --set l2_weight=5 --set entropy_weight=0.02
    --set trainable=decoder --checkpoint-every 250 --init runs/bundled/mbq-vae-tiny-run9 -o runs/mbq16-stage10
    --seed 6 --steps 2000 --lr 2.5e-4 --warmup 50
torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl
    --data data/photos/manifest.jsonl --seed 0 --ema 0.995 --lr 1e-3 --set codebook_size=65536 --set window_frames=16
    --checkpoint-every 500 --set 'patch_mask_ratio=[0,0]' --set 'frame_mask_ratio=[0,0]' --warmup 100
    --schedule cosine --batch-size 2 --checkpoint-every 400 --set l1_weight=0 --set l2_weight=5 --set entropy_weight=0.02
    --set trainable=decoder --checkpoint-every 250 --init runs/mbq16-stage10 -o runs/mbq16-stage11 --seed 7
    --steps 3000 --stop-at 2512 --lr 3e-4 --warmup 50
torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl
    --data data/photos/manifest.jsonl --seed 0 --ema 0.995 --lr 1e-3 --set codebook_size=65536 --set window_frames=16
    --checkpoint-every 500 --set 'patch_mask_ratio=[0,0]' --set 'frame_mask_ratio=[0,0]' --warmup 100
    --schedule cosine --batch-size 2 --checkpoint-every 400 --set l1_weight=0 --set l2_weight=5 --set entropy_weight=0.02
    --set trainable=decoder --checkpoint-every 250 --init runs/mbq16-stage11 -o runs/mbq16-stage12 --seed 9
    --steps 4000 --lr 3e-4 --warmup 50
torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl
    --data data/photos/manifest.jsonl --seed 0 --ema 0.995 --lr 1e-3 --set codebook_size=65536 --set window_frames=16
    --checkpoint-every 500 --set 'patch_mask_ratio=[0,0]' --set 'frame_mask_ratio=[0,0]' --warmup 100
    --schedule cosine --batch-size 2 --checkpoint-every 400 --set l1_weight=0 --set l2_weight=5 --set entropy_weight=0.02
    --set trainable=decoder --checkpoint-every 250 --set l2_weight=0 --set psnr_weight=0.005 --steps 6000 --lr 3e-4
    --warmup 50 --init runs/mbq16-stage12 -o runs/mbq16-stage13 --seed 10
torchrun --standalone --nproc-per-node 2 -m stages.cli --quiet train-vae --family mbq-vae --data data/shapes/manifest.jsonl
    --data data/photos/manifest.jsonl --seed 0 --ema 0.995 --lr 1e-3 --set codebook_size=65536 --set window_frames=16
    --checkpoint-every 500 --set 'patch_mask_ratio=[0,0]' --set 'frame_mask_ratio=[0,0]' --warmup 100
    --schedule cosine --batch-size 2 --checkpoint-every 400 --set l1_weight=0 --set l2_weight=5 --set entropy_weight=0.02
    --set trainable=decoder --checkpoint-every 250 --set l2_weight=0 --set psnr_weight=0.005 --steps 6000 --lr 3e-4
    --warmup 50 --init runs/mbq16-stage13 -o runs/mbq16-stage14 --seed 11
""",
}

# The same scripts with their environment switches, old commands of the runs they change.
VARIANTS = {
    ("lamd.sh", "VAE_STEPS=30 DMG_STEPS=40"): """\
vidtool --quiet train-vae --family mcd-vae --data data/shapes/manifest.jsonl -o runs/mcd-vae --frames 8 --fps 4
    --steps 30 --batch-size 4 --lr 1e-3 --warmup 100 --ema 0.995 --seed 0
vidtool --quiet train-denoiser --family dmg --vae runs/bundled/mcd-vae-tiny --data data/shapes/manifest.jsonl --fps 4
    -o runs/dmg --steps 40 --batch-size 32 --lr 5e-4 --warmup 100 --ema 0.995 --seed 0
""",
    ("train_vae.sh", "MOVQ_CODEBOOK=fixed"): """\
vidtool --quiet train-vae --family movq-temporal --data data/shapes/manifest.jsonl --data data/photos/manifest.jsonl
    --set codebook_init=kmeans --set dead_code_steps=20 -o runs/movq-image --steps 2000 --batch-size 4 --lr 1e-3
    --warmup 100 --ema 0.995 --seed 0
""",
}


def commands(text: str) -> list[list[str]]:
    """OLD's text: one command a line, indented lines continue the one above."""
    lines: list[str] = []
    for line in text.splitlines():
        if line.startswith(" "):
            lines[-1] += line
        elif line:
            lines.append(line)
    return [shlex.split(line) for line in lines]


def recorded(script: str, tmp_path: Path, **env: str) -> list[list[str]]:
    """The `train-*` commands `bash recipes/tiny/SCRIPT` issues, run from the repository's root."""
    stubs = tmp_path / "bin"
    stubs.mkdir(exist_ok=True)
    for name in ("vidtool", "torchrun", "python"):
        (stubs / name).write_text(STUB)
        (stubs / name).chmod(0o755)
    log = tmp_path / f"{script}.record"
    log.unlink(missing_ok=True)
    subprocess.run(["bash", f"recipes/tiny/{script}"], cwd=ROOT, check=True, timeout=60,
                   env={"PATH": f"{stubs}{os.pathsep}{os.environ['PATH']}", "RECORD": str(log), **ENV, **env})
    calls = [call.split("\x1f")[:-1] for call in log.read_text().split("\x1e")[:-1]]
    return [call for call in calls if any(arg.startswith("train-") for arg in call)]


def options(argv: list[str]) -> dict:
    """What the stage named in `argv` would run with: vidtool's group takes --config off the arguments
    and makes it the stage's default_map (stages.cli StageGroup.resolve_command); the stage's click
    command then parses the rest. The stage itself does not run."""
    group = typer.main.get_command(app)
    start = next(i for i, arg in enumerate(argv) if arg.startswith("train-"))
    ctx = click.Context(group, info_name="vidtool")
    name, command, rest = group.resolve_command(ctx, argv[start:])
    with command.make_context(name, rest, parent=ctx) as stage:
        values = resolved(stage)
    values["set"] = _set_values(values["set"])
    return values


def _set_values(entries: list[str]) -> dict:
    """--set entries as the model builders read them (vidtool.autoencoders.build.parse_overrides):
    KEY=JSON, a bare word a string, the last entry of a key wins."""
    values = {}
    for entry in entries:
        key, _, raw = entry.partition("=")
        try:
            values[key] = json.loads(raw)
        except json.JSONDecodeError:
            values[key] = raw
    return values


def _config(argv: list[str]) -> str | None:
    return argv[argv.index("--config") + 1] if "--config" in argv else None


@pytest.mark.parametrize("script", SCRIPTS)
def test_every_training_command_of_a_recipe_resolves_to_its_old_flag_list(script, tmp_path):
    old, new = commands(OLD[script]), recorded(script, tmp_path)
    assert len(new) == len(old)
    for before, after in zip(old, new):
        assert _config(after) is not None, f"{shlex.join(after)} has no --config"
        assert options(after) == options(before), shlex.join(after)


@pytest.mark.parametrize("script, env", list(VARIANTS))
def test_a_recipes_environment_switches_still_reach_the_runs(script, env, tmp_path):
    new = recorded(script, tmp_path, **dict(pair.split("=") for pair in env.split()))
    by_output = {argv[argv.index("-o") + 1]: argv for argv in new}
    for before in commands(VARIANTS[script, env]):
        after = by_output[before[before.index("-o") + 1]]
        assert options(after) == options(before), shlex.join(after)


def test_the_config_holds_the_runs_options_not_the_command_line():
    """A config value changed is a run changed: the comparison above sees the configs' contents."""
    argv = ["train-denoiser", "--config", str(TINY / "configs" / "harivo.yaml"), "-o", "runs/harivo"]
    assert options(argv)["steps"] == 3000 and options(argv)["family"] == "harivo"
    assert options([*argv, "--steps", "7"])["steps"] == 7  # and the command line wins


def test_every_config_file_is_used_by_a_recipe_and_loads(tmp_path):
    group = typer.main.get_command(app)
    used = {}
    for script in SCRIPTS:
        for argv in recorded(script, tmp_path):
            stage = next(arg for arg in argv if arg.startswith("train-"))
            used[(ROOT / _config(argv)).resolve()] = stage
    files = sorted((TINY / "configs").iterdir())
    assert files and {path.resolve() for path in files} == set(used)
    for path in files:
        assert path.suffix == ".yaml" and read_options_file(path)
        stage = used[path.resolve()]
        apply(group.get_command(None, stage), stage, str(path), [])  # every key is an option of its stage
