"""The shell recipes: every one parses (`bash -n`), names no cluster path, and the single-machine
pipelines run end to end on the bundled tiny models (slow), keeping each step's file so a rerun
redoes only what is missing."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT

RECIPES = ROOT / "recipes"
SCRIPTS = sorted([*RECIPES.glob("*.sh"), *RECIPES.glob("slurm/*.sbatch"), *RECIPES.glob("tiny/*.sh")])
PIPELINES = ["t2v_fusionframes.sh", "t2v_motionaura.sh", "t2v_harivo.sh", "i2v_lamd.sh", "inpaint_sketch.sh"]
PROMPTS = ["a red circle moving right", "a blue square moving up"]


def test_every_pipeline_recipe_and_slurm_template_exists():
    assert {p.name for p in RECIPES.glob("*.sh")} >= set(PIPELINES)
    assert {p.name for p in RECIPES.glob("slurm/*.sbatch")} == {"train.sbatch", "data-array.sbatch"}


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(RECIPES)))
def test_recipe_parses_with_bash_n_and_names_no_cluster_path(script):
    result = subprocess.run(["bash", "-n", str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    text = script.read_text()
    # Paths come from variables: no absolute path other than the shebang and /dev/null-style devices.
    absolute = [m for m in re.findall(r"(?<![\w$}])/(?:[a-z]+/)+[\w.-]*", text)
                if not m.startswith(("/usr/bin/", "/dev/"))]
    assert not absolute, absolute


def _vidtool_env(tmp_path: Path) -> dict:
    """`vidtool` on PATH as this interpreter's stages.cli, one thread, CPU."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    shim = bin_dir / "vidtool"
    shim.write_text(f'#!/usr/bin/env bash\nexec "{sys.executable}" -m stages.cli "$@"\n')
    shim.chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "PYTHONPATH": str(ROOT),
            "OMP_NUM_THREADS": "1", "DEVICE": "cpu"}


def _run(recipe: str, *args, env: dict, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(RECIPES / recipe), *map(str, args)], capture_output=True, text=True,
                          env=env, timeout=timeout)


# What each pipeline recipe runs with no settings: its stages, and the model families whose bundled
# default it loads (vidtool.families); the autoencoder each family's data lives in (its `data_model`,
# which `decode` finds by tag) must be bundled too.
RECIPE_NEEDS = {
    "t2v_fusionframes.sh": (("embed-text", "generate", "interpolate", "decode"), ("keyframes", "interp")),
    "t2v_harivo.sh": (("embed-text", "generate", "decode"), ("harivo",)),
    "t2v_motionaura.sh": (("embed-text", "generate", "decode"), ("spectral",)),
    "i2v_lamd.sh": (("generate", "decode"), ("dmg",)),
    "inpaint_sketch.sh": (("inpaint",), ("spectral-inpaint",)),
}


def _missing(recipe: str) -> list[str]:
    """What `recipe` needs that this tree lacks: stages not registered, bundled models not installed."""
    from stages import STAGES
    from vidtool.errors import UserError
    from vidtool.families import family
    from vidtool.model_store import bundled

    stages, families = RECIPE_NEEDS[recipe]
    missing = [f"the `{stage}` stage (not in stages.STAGES)" for stage in stages if stage not in STAGES]
    for name in families:
        try:
            entry = family(name)
        except UserError as e:
            missing.append(str(e))
            continue
        if entry.default is None:
            missing.append(f"a bundled default for {name} (vidtool.families names none)")
        for folder in filter(None, (entry.default, entry.data_model)):
            try:
                bundled(folder)
            except UserError as e:
                missing.append(str(e))
    return missing


def _require(recipe: str) -> None:
    """Fail, never skip, when a stage or bundled model the recipe runs is missing: a recipe that cannot
    run on a fresh install is a bug, not an environment without optional parts."""
    missing = _missing(recipe)
    if missing:
        pytest.fail(f"{recipe} cannot run on this install; missing: " + "; ".join(missing), pytrace=False)


def test_every_pipeline_recipe_has_a_needs_entry():
    assert set(RECIPE_NEEDS) == set(PIPELINES)


@pytest.mark.parametrize("recipe", PIPELINES)
def test_the_stages_and_bundled_models_a_pipeline_recipe_runs_are_installed(recipe):
    _require(recipe)


def _check_videos(out: Path, count: int) -> None:
    from vidtool.video import read_video

    videos = sorted(out.glob("video*.mp4"))
    assert len(videos) == count, sorted(p.name for p in out.iterdir())
    for path in videos:
        clip = read_video(path)
        frames = clip.frames if hasattr(clip, "frames") else clip[0]
        assert frames.shape[0] >= 2 and frames.shape[-1] == 3 and frames.std() > 0


@pytest.mark.slow  # four vidtool processes; ~30 s on a shared 2-core machine
def test_t2v_fusionframes_recipe_makes_one_mp4_per_prompt_and_reruns_only_missing_steps(tmp_path):
    _require("t2v_fusionframes.sh")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    env = {**_vidtool_env(tmp_path), "STEPS": "2", "INTERP_STEPS": "2", "FRAMES": "2"}
    out = tmp_path / "out"
    result = _run("t2v_fusionframes.sh", prompts, out, env=env)
    assert result.returncode == 0, result.stderr
    kept = {"prompts.emb.safetensors", "keyframes.safetensors", "latents.safetensors"}
    assert kept <= {p.name for p in out.iterdir()}
    _check_videos(out, len(PROMPTS))
    # A failed step is rerun alone: remove the interpolation output, and only it and decode run again.
    (out / "latents.safetensors").unlink()
    before = (out / "keyframes.safetensors").stat().st_mtime_ns
    again = _run("t2v_fusionframes.sh", prompts, out, env={**env, "FORCE": "decode"})
    assert again.returncode == 0, again.stderr
    assert "generate: " in again.stderr and "skipped" in again.stderr
    assert (out / "keyframes.safetensors").stat().st_mtime_ns == before
    assert (out / "latents.safetensors").is_file()


@pytest.mark.slow
def test_t2v_harivo_recipe_makes_one_mp4_per_prompt(tmp_path):
    _require("t2v_harivo.sh")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    result = _run("t2v_harivo.sh", prompts, tmp_path / "out", env={**_vidtool_env(tmp_path), "STEPS": "2", "FRAMES": "4"})
    assert result.returncode == 0, result.stderr
    _check_videos(tmp_path / "out", len(PROMPTS))


@pytest.mark.slow
def test_t2v_motionaura_recipe_makes_one_mp4_per_prompt(tmp_path):
    _require("t2v_motionaura.sh")
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("\n".join(PROMPTS) + "\n")
    result = _run("t2v_motionaura.sh", prompts, tmp_path / "out", env={**_vidtool_env(tmp_path), "STEPS": "2"})
    assert result.returncode == 0, result.stderr
    _check_videos(tmp_path / "out", len(PROMPTS))


@pytest.mark.slow
def test_i2v_lamd_recipe_animates_each_listed_image(tmp_path):
    import numpy as np
    from PIL import Image

    _require("i2v_lamd.sh")
    rng = np.random.default_rng(0)
    for name in ("a.png", "b.png"):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / name)
    items = tmp_path / "items.tsv"
    items.write_text("a.png\ta red circle moving right\nb.png\t\n")
    result = _run("i2v_lamd.sh", items, tmp_path / "out", env={**_vidtool_env(tmp_path), "STEPS": "2"})
    assert result.returncode == 0, result.stderr
    _check_videos(tmp_path / "out", 2)


@pytest.mark.slow
def test_inpaint_sketch_recipe_writes_the_inpainted_mp4(tmp_path):
    _require("inpaint_sketch.sh")
    from vidtool.data.make import make_dataset
    from vidtool.data.manifest import read_manifest

    make_dataset("shapes", tmp_path / "shapes", 1, frames=16, size=64, fps=8, seed=1)
    record = read_manifest(tmp_path / "shapes" / "manifest.jsonl")[0]
    folder = tmp_path / "shapes"
    sketch = tmp_path / "sketch.png"
    from PIL import Image
    import numpy as np

    canvas = np.zeros((64, 64), dtype=np.uint8)
    canvas[20:44, 30:34] = 255
    Image.fromarray(canvas).save(sketch)
    result = _run("inpaint_sketch.sh", folder / record["path"], folder / record["mask"], sketch, "a red circle",
                  tmp_path / "out", env={**_vidtool_env(tmp_path), "STEPS": "2"})
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "out" / "inpainted.mp4").stat().st_size > 0


# srun OPTIONS... COMMAND: drop the options and start COMMAND once per "node" (SLURM_NNODES copies
# on this machine, as srun starts one task per node), then fail if any copy failed.
FAKE_SRUN = """#!/usr/bin/env bash
while [[ $1 == -* ]]; do shift; done
pids=()
for _ in $(seq "${SLURM_NNODES:-1}"); do "$@" & pids+=($!); done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=$?; done
exit $status
"""


@pytest.mark.slow  # torchrun with two gloo ranks behind fake srun/scontrol: ~20-40 s each
@pytest.mark.parametrize("strategy, nodes", [("ddp", 1), ("fsdp", 1), ("ddp", 2)])
def test_slurm_train_template_runs_torchrun_with_a_c10d_rendezvous(tmp_path, strategy, nodes):
    """train.sbatch under a fake allocation: `srun` and `scontrol` are shims, torchrun, the c10d
    rendezvous and the training are real. Two ranks in all: 2 processes on 1 node, or 2 "nodes"
    (two torchrun agents meeting at the rendezvous) of 1 process; FSDP2 with activation
    checkpointing on mbq-vae."""
    from vidtool.data.make import make_dataset

    make_dataset("shapes", tmp_path / "shapes", 4, frames=4, size=32, fps=8, seed=1)
    env = _vidtool_env(tmp_path)
    bin_dir = tmp_path / "bin"
    (bin_dir / "scontrol").write_text('#!/usr/bin/env bash\necho localhost\n')
    (bin_dir / "srun").write_text(FAKE_SRUN)
    for shim in ("scontrol", "srun"):
        (bin_dir / shim).chmod(0o755)
    with __import__("socket").socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env.update(SLURM_JOB_NODELIST="localhost", SLURM_NNODES=str(nodes), SLURM_JOB_ID="1", GPUS_PER_NODE=str(2 // nodes),
               RDZV_PORT=str(port), PYTHON=sys.executable, VIDTOOL_DEVICE="cpu")
    out = tmp_path / "run"
    result = subprocess.run(
        ["bash", str(RECIPES / "slurm" / "train.sbatch"), "train-vae", "--family", "mbq-vae",
         "--data", str(tmp_path / "shapes" / "manifest.jsonl"), "-o", str(out), "--steps", "2", "--batch-size", "1",
         "--frames", "4", "--size", "32", "--warmup", "0", "--checkpoint-every", "1", "--strategy", strategy,
         *(["--activation-checkpointing"] if strategy == "fsdp" else [])],
        capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{nodes} node(s) x {2 // nodes} process(es)" in result.stderr
    from vidtool.train.state import load_state

    state = load_state(out / "train_state")
    assert state.step == 2 and state.world_size == 2 and state.samples_seen == 4


@pytest.mark.slow  # torchrun start-up: ~15 s
def test_slurm_train_template_requeues_a_stopped_run_a_bounded_number_of_times(tmp_path):
    env = _vidtool_env(tmp_path)
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol-calls"
    (bin_dir / "scontrol").write_text(f'#!/usr/bin/env bash\necho "$@" >> "{calls}"\necho localhost\n')
    (bin_dir / "srun").write_text(FAKE_SRUN)
    for shim in ("scontrol", "srun"):
        (bin_dir / shim).chmod(0o755)
    env.update(SLURM_JOB_NODELIST="localhost", SLURM_NNODES="1", SLURM_JOB_ID="42", GPUS_PER_NODE="1",
               RDZV_PORT="0", PYTHON=sys.executable, VIDTOOL_DEVICE="cpu")
    stopped = ["bash", str(RECIPES / "slurm" / "train.sbatch"), "train-vae", "--family", "no-such-family",
               "--data", str(tmp_path / "none.jsonl"), "-o", str(tmp_path / "run")]
    first = subprocess.run(stopped, capture_output=True, text=True, env=env, timeout=300, cwd=ROOT)
    assert first.returncode != 0 and "requeueing (restart 0 of 3)" in first.stderr
    assert calls.read_text().splitlines()[-1] == "requeue 42"
    last = subprocess.run(stopped, capture_output=True, text=True, env={**env, "SLURM_RESTART_COUNT": "3"},
                          timeout=300, cwd=ROOT)
    assert last.returncode != 0 and "requeueing" not in last.stderr
    assert calls.read_text().splitlines().count("requeue 42") == 1
