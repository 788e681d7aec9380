"""Latent and token set builds keep each encoded batch (vidtool.data.partial): a build killed after k
clips, by SIGKILL or SIGTERM, resumes on the next run without encoding those k clips again, and
writes exactly the set an uninterrupted build writes (40 kill points: latent, token, bucketed latent
and motion-latent sets)."""

from __future__ import annotations

import os
import signal

import pytest
import torch

from vidtool import tensorfile
from vidtool.data.buckets import parse_buckets
from vidtool.data import latents
from vidtool.data.latents import build_latent_set
from vidtool.data.make import make_dataset
from vidtool.data.motion_latents import build_motion_set
from vidtool.data.partial import partial_folder
from vidtool.data.tokens import build_token_set
from vidtool.model_store import bundled

CLIPS = 8
BUILDERS = {
    "latents": (build_latent_set, "movq-tiny", dict(frames=4, size=32)),
    "tokens": (build_token_set, "mbq-vae-tiny-v1", dict(frames=4, size=32)),
    # clips of two sizes and lengths, each encoded at its bucket's shape: batches numbered over buckets
    "bucketed": (build_latent_set, "movq-tiny", dict(buckets=parse_buckets("32x32:8:1,16x16:4:1"))),
    "motion": (build_motion_set, "mcd-vae-tiny", dict(size=32)),  # LaMD's motion-latent set (its own encoder)
}
KILL_POINTS = {"bucketed": (1, 4, 5, 7), "motion": (2, 5)}  # 4: the first bucket's last clip


@pytest.fixture(scope="module")
def manifest(tmp_path_factory):
    """The shapes clips as one manifest, and split over two manifests of two clip shapes."""
    root = tmp_path_factory.mktemp("resume")
    make_dataset("shapes", root / "shapes", CLIPS, frames=4, size=32, fps=8, seed=3)
    make_dataset("shapes", root / "big", CLIPS // 2, frames=8, size=32, fps=8, seed=4)
    make_dataset("photos", root / "small", CLIPS // 2, frames=4, size=16, fps=8, seed=4)
    return {"one": [root / "shapes" / "manifest.jsonl"],
            "two": [root / "big" / "manifest.jsonl", root / "small" / "manifest.jsonl"]}


@pytest.fixture
def encoded_clips(monkeypatch):
    """How many clips went through the builders' encoders, in this process."""
    count = [0]
    real = latents.encode_clip_set

    def counting_set(manifests, encode, **options):
        def counted(items, video):
            count[0] += len(video)
            return encode(items, video)

        return real(manifests, counted, **options)

    monkeypatch.setattr(latents, "encode_clip_set", counting_set)
    return count


def _build(kind, manifest, out, progress=None):
    build, model, options = BUILDERS[kind]
    manifests = manifest["two" if "buckets" in options else "one"]
    return build(manifests, bundled(model), out, batch_size=1, progress=progress, **options)


def _killed_at(kind, manifest, out, clips: int, signum: int, counter) -> int:
    """Build in a forked child that sends itself `signum` once `clips` clips are encoded (the same
    point every run: no timing); returns how many clips the child encoded."""
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read)
        code = 0
        try:
            from vidtool.atomic import stop_signals_exit

            def stop(done):
                if done >= clips:
                    os.write(write, str(counter[0]).encode())
                    os.kill(os.getpid(), signum)

            with stop_signals_exit():  # SIGTERM ends the run as the CLI's does: SystemExit, finally blocks
                _build(kind, manifest, out, stop)
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except BaseException:
            code = 3
        os._exit(code or 4)  # it must not finish: the signal comes first
    os.close(write)
    _, status = os.waitpid(pid, 0)
    encoded = int(os.read(read, 64) or b"-1")
    os.close(read)
    if signum == signal.SIGKILL:
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
    else:
        assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 128 + signal.SIGTERM
    return encoded


# Latent sets by default; the token, bucketed and motion builders (the same resume path) with -m slow.
@pytest.mark.parametrize("kind", [kind if kind == "latents" else pytest.param(kind, marks=pytest.mark.slow)
                                  for kind in sorted(BUILDERS)])
def test_a_killed_set_build_resumes_without_encoding_again_and_writes_the_same_set(kind, manifest, tmp_path,
                                                                                 encoded_clips):
    torch.set_num_threads(1)
    whole = _build(kind, manifest, tmp_path / "whole.safetensors")
    assert encoded_clips[0] == CLIPS
    if kind == "bucketed":
        assert sorted(set(tensorfile.load(whole)["bucket"].tolist())) == [0, 1]
    assert not partial_folder(whole).exists()  # the kept batches go once the set is written
    expected = whole.read_bytes()
    points = 0
    for clips in KILL_POINTS.get(kind, range(1, CLIPS)):
        for signum in (signal.SIGKILL, signal.SIGTERM):
            out = tmp_path / f"{kind}-{clips}-{signum}.safetensors"
            encoded_clips[0] = 0
            assert _killed_at(kind, manifest, out, clips, signum, encoded_clips) == clips
            assert not out.exists() and partial_folder(out).is_dir()
            encoded_clips[0] = 0
            _build(kind, manifest, out)
            assert encoded_clips[0] == CLIPS - clips, f"killed after {clips}: re-encoded kept clips"
            assert out.read_bytes() == expected, f"killed after {clips} by {signal.Signals(signum).name}"
            assert not partial_folder(out).exists()
            assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(f".{out.name}")]
            points += 1
    assert points == 2 * len(KILL_POINTS.get(kind, range(1, CLIPS)))


def test_kept_batches_of_other_settings_are_discarded_not_mixed_in(manifest, tmp_path, encoded_clips):
    torch.set_num_threads(1)
    out = tmp_path / "set.safetensors"
    assert _killed_at("latents", manifest, out, 5, signal.SIGKILL, encoded_clips) == 5
    build, model, options = BUILDERS["latents"]
    encoded_clips[0] = 0
    build(manifest["one"], bundled(model), out, batch_size=1, frames=3, size=32)  # another clip length
    assert encoded_clips[0] == CLIPS
    assert tensorfile.load(out).params["frames"] == 3
    fresh = build(manifest["one"], bundled(model), tmp_path / "fresh.safetensors", batch_size=1, frames=3, size=32)
    assert out.read_bytes() == fresh.read_bytes()


def test_a_damaged_kept_batch_is_encoded_again_and_the_others_are_kept(manifest, tmp_path, encoded_clips, capfd):
    torch.set_num_threads(1)
    whole = _build("latents", manifest, tmp_path / "whole.safetensors")
    out = tmp_path / "set.safetensors"
    encoded_clips[0] = 0
    assert _killed_at("latents", manifest, out, 5, signal.SIGKILL, encoded_clips) == 5
    damaged = partial_folder(out) / "batch-000002.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:100])  # torn by hand: the real writes are atomic
    capfd.readouterr()
    encoded_clips[0] = 0
    _build("latents", manifest, out)
    assert encoded_clips[0] == CLIPS - 5 + 1
    assert "resuming from .set.safetensors.partial" in capfd.readouterr().err
    assert out.read_bytes() == whole.read_bytes()
