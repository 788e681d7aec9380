"""Training runs a person can watch and repeat: --log tensorboard/wandb, validation samples, run.json,
`vidtool runs`, and --config files (issue 32, parts 1–2). The generator is keyframes on the bundled
t2i-tiny, trained on four shapes clips encoded once by the bundled movq-tiny."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from stage_runner import in_process_stages

from conftest import one_line_error
from vidtool.data.latents import build_latent_set
from vidtool.data.make import make_dataset
from vidtool.model_store import bundled

pytest.importorskip("tensorboard")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("run-logging")
    make_dataset("shapes", root / "shapes", 4, seed=0)
    manifest = root / "shapes" / "manifest.jsonl"
    latent_set = build_latent_set([manifest], bundled("movq-tiny"), root / "set.safetensors", frames=13)
    prompts = root / "prompts.txt"
    prompts.write_text("a red circle moving right\na blue square moving up\n")
    return {"manifest": manifest, "latent_set": latent_set, "prompts": prompts}


@pytest.fixture
def stage(monkeypatch):
    torch.set_num_threads(1)
    return in_process_stages(monkeypatch)


def keyframes_args(data, out, *extra):
    return ["train-denoiser", "--family", "keyframes", "--base", bundled("t2i-tiny"), "--data", data["manifest"],
            "--latent-set", data["latent_set"], "--batch-size", "2", "--warmup", "0", "-o", out, *map(str, extra)]


def scalars(run, tag):
    events = EventAccumulator(str(run / "tensorboard"))
    events.Reload()
    return events, [(e.step, e.value) for e in events.Scalars(tag)]


def check_logged_run(run, manifest, sample_steps):
    """Event files TensorBoard's own reader loads, with the metrics.jsonl values and a contact sheet per
    validation; an mp4 per prompt at each validation step; run.json with the manifest's digest."""
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    events, loss = scalars(run, "train/loss")
    assert loss == [(r["step"], pytest.approx(r["loss"])) for r in records]
    tags = set(events.Tags()["scalars"])
    assert {"train/lr", "train/grad_norm", "train/it_per_s", "train/peak_memory_gib"} <= tags
    assert [image.step for image in events.Images("samples")] == sample_steps
    for step in sample_steps:
        folder = run / "samples" / f"step-{step}"
        assert sorted(p.name for p in folder.glob("*.mp4")) == ["0.mp4", "1.mp4"]
        assert Image.open(folder / "contact-sheet.png").size[1] > 2 * 64  # a row of frames per prompt
    session = json.loads((run / "run.json").read_text())["sessions"][-1]
    assert session["data"] == [{"manifest": str(manifest), "sha256": hashlib.sha256(manifest.read_bytes()).hexdigest()}]
    assert session["versions"]["torch"] == torch.__version__
    assert session["git"] is None or len(session["git"]["commit"]) == 40


def test_logged_run_leaves_tensorboard_events_samples_and_its_record(stage, data, tmp_path):
    run = tmp_path / "run"
    assert stage(*keyframes_args(data, run, "--steps", "4", "--log", "tensorboard", "--validate-every", "2",
                                 "--validate-prompts", data["prompts"], "--validate-steps", "1")) == 0
    check_logged_run(run, data["manifest"], [2, 4])


@pytest.mark.slow
def test_30_updates_validated_every_10_leave_samples_at_10_20_30(stage, data, tmp_path):
    run = tmp_path / "run"
    assert stage(*keyframes_args(data, run, "--steps", "30", "--log", "tensorboard", "--validate-every", "10",
                                 "--validate-prompts", data["prompts"], "--validate-steps", "2",
                                 "--checkpoint-every", "100")) == 0
    check_logged_run(run, data["manifest"], [10, 20, 30])
    _, loss = scalars(run, "train/loss")
    assert [step for step, _ in loss] == [10, 20, 30]


def test_config_file_plus_one_flag_trains_the_same_weights_as_the_flags_alone(stage, data, tmp_path):
    flags = ["--steps", "2", "--lr", "0.001", "--seed", "3"]
    assert stage(*keyframes_args(data, tmp_path / "flags", *flags)) == 0
    config = tmp_path / "run.yaml"
    config.write_text("family: keyframes\n"
                      f"base: {bundled('t2i-tiny')}\n"
                      f"latent_set: {data['latent_set']}\n"
                      "batch-size: 2\nwarmup: 0\nsteps: 7\nlr: 0.001\nseed: 3\n")
    assert stage("train-denoiser", "--config", config, "--steps", "2", "-o", tmp_path / "config") == 0
    by_flags, by_config = (load_file(tmp_path / name / "model.safetensors") for name in ("flags", "config"))
    assert by_flags.keys() == by_config.keys()
    assert all(torch.equal(by_flags[k], by_config[k]) for k in by_flags)
    resolved = (tmp_path / "config" / "config.resolved.yaml").read_text()
    assert "\nsteps: 2\n" in resolved and "\nlr: 0.001\n" in resolved  # the flag won over the file's 7


def test_resolved_config_reruns_the_same_stage(stage, data, tmp_path):
    import yaml

    assert stage(*keyframes_args(data, tmp_path / "first", "--steps", "1")) == 0
    resolved = yaml.safe_load((tmp_path / "first" / "config.resolved.yaml").read_text())
    again = tmp_path / "again.json"
    again.write_text(json.dumps({**resolved, "out": str(tmp_path / "second")}))
    assert stage("train-denoiser", "--config", again) == 0
    first, second = (load_file(tmp_path / name / "model.safetensors") for name in ("first", "second"))
    assert all(torch.equal(first[k], second[k]) for k in first)


def test_config_set_entries_come_before_the_command_lines_which_win(tmp_path):
    import typer

    from stages.cli import app
    from stages.run_config import apply

    command = typer.main.get_command(app).get_command(None, "train-denoiser")
    for entries in ({"set.base_channels": 8, "set": ["norm_groups=4"]}, {"set": {"base_channels": 8}}):
        path = tmp_path / "run.json"
        path.write_text(json.dumps(entries))
        defaults, args = apply(command, "train-denoiser", path, ["--set", "base_channels=16"])
        assert defaults == {}
        assert args[-2:] == ["--set", "base_channels=16"] and "base_channels=8" in args[:-2]


@pytest.mark.parametrize("text, message", [("steps: 2\nbatch_sise: 4\n", "no option 'batch_sise'"),
                                           ("- steps\n", "must hold a mapping"),
                                           ("steps: [2\n", "not valid YAML")])
def test_a_bad_config_file_exits_2_with_one_line(vidtool, tmp_path, text, message):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    line = one_line_error(vidtool("train-denoiser", "--config", str(config), "-o", str(tmp_path / "x")))
    assert message in line


def test_validation_prompts_are_refused_for_a_family_without_a_pipeline(vidtool, data, tmp_path):
    line = one_line_error(vidtool("train-denoiser", "--family", "t2i", "--latent-set", str(data["latent_set"]),
                                  "--validate-every", "2", "--validate-prompts", str(data["prompts"]),
                                  "-o", str(tmp_path / "x")))
    assert "keyframes" in line and "t2i" in line


def test_missing_tensorboard_is_one_line_naming_the_extra(monkeypatch, tmp_path):
    from vidtool.errors import UserError
    from vidtool.train.run_log import RunLog

    monkeypatch.setitem(__import__("sys").modules, "torch.utils.tensorboard", None)  # as if not installed
    with pytest.raises(UserError, match=r"pip install 'vidtool\[log\]'"):
        RunLog(tmp_path, ["tensorboard"], name="x", config={})


def test_wandb_logs_offline_without_an_api_key(monkeypatch, tmp_path):
    pytest.importorskip("wandb")
    from vidtool.train.run_log import RunLog

    for name in ("WANDB_MODE", "WANDB_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "config"))
    log = RunLog(tmp_path, ["wandb"], name="run", config={"steps": 2})
    log.scalars({"step": 1, "loss": 0.5})
    log.close()
    assert list((tmp_path / "wandb").glob("offline-run-*/*.wandb"))


def test_runs_draws_every_metric_into_a_png(stage, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    records = [{"step": s, "loss": 1 / s, "lr": 1e-3, "grad_norm": 0.5, "samples_seen": 4 * s} for s in (10, 20, 30)]
    (run / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert stage("runs", run, "--json") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["plotted"] == ["loss", "lr", "grad_norm"] and summary["last"]["step"] == 30
    assert Image.open(run / "metrics.png").size == (3 * 360, 200)  # one 360×200 panel per quantity
