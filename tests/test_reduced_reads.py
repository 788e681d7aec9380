"""`score`, `recaption` and `evaluate` read a clip no larger than they look at it: a 2000×2000 clip is
decoded at about twice the short side their measurements (or models) resize to, never whole."""

from __future__ import annotations

import json

import numpy as np
import pytest

from large_clip import SIDE, large_clip, record_decodes


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    root = tmp_path_factory.mktemp("large")
    large_clip(root / "big.mp4", frames=16)
    (root / "manifest.jsonl").write_text(json.dumps({"path": "big.mp4", "caption": "a test pattern"}) + "\n")
    return root


def test_score_decodes_at_its_metrics_resolution(stage, big, tmp_path, monkeypatch):
    from vidtool.curation.scores import MOTION_SIZE, ScoreOptions, read_side

    assert read_side(ScoreOptions(size=64)) == MOTION_SIZE  # the motion measure looks at 128 px
    assert read_side(ScoreOptions(size=512)) == 512
    opened = record_decodes(monkeypatch)
    assert stage("score", big / "manifest.jsonl", "--size", "64", "-o", tmp_path / "scored.jsonl") == 0
    record = json.loads((tmp_path / "scored.jsonl").read_text().splitlines()[0])
    assert "error" not in record and record["sharpness"] > 0 and len(record["phash"]) == 16
    assert opened and all(max(shape) <= 2 * MOTION_SIZE for shape in opened), opened


def test_sample_and_read_frames_shrink_while_decoding(big, monkeypatch):
    from vidtool import video

    opened = record_decodes(monkeypatch)
    assert video.sample_frames(big / "big.mp4", 3, shrink_for=100).frames.shape == (3, 200, 200, 3)
    picked = video.read_frames(big / "big.mp4", lambda n: np.array([0, n - 1]), shrink_for=50).frames
    assert picked.shape == (2, 100, 100, 3)
    assert video.sample_frames(big / "big.mp4", 1).frames.shape == (1, SIDE, SIDE, 3)  # no size given: its own
    assert opened == [(200, 200), (100, 100), (SIDE, SIDE)]


def test_evaluate_decodes_at_its_networks_input_size(big, tmp_path, monkeypatch, capsys):
    """isv alone feeds C3D, which resizes to 112: the clip is decoded at 224, not 2000."""
    import torch

    from evaluate_sets import run_here
    from test_evaluate_stage import TinyC3D
    from vidtool.metrics.evaluation import C3D_SIDE

    torch.jit.script(TinyC3D()).save(str(tmp_path / "c3d.pt"))
    opened = record_decodes(monkeypatch)
    status, err = run_here(capsys, "evaluate", big / "big.mp4", "--metric", "isv", "--c3d", tmp_path / "c3d.pt",
                           "--isv-splits", "1", "-o", tmp_path / "r.json")
    assert status == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["sets"]["generated"]["decoded_for_short_side"] == C3D_SIDE
    assert report["sets"]["generated"]["resolution"] == [2 * C3D_SIDE, 2 * C3D_SIDE]
    assert opened and all(max(shape) <= 2 * C3D_SIDE for shape in opened), opened


def test_evaluate_keeps_native_size_for_metrics_that_compare_pixels():
    from types import SimpleNamespace

    from vidtool.metrics.evaluation import I3D_SIDE, Plan, read_side

    nets = SimpleNamespace(videomae=SimpleNamespace(image_size=160), clip=SimpleNamespace(size=336))
    plan = lambda *metrics: Plan(metrics, {}, False, False)  # noqa: E731
    assert read_side(plan("fvd"), nets) == I3D_SIDE
    assert read_side(plan("fvd", "cd-fvd", "clipsim"), nets) == 336
    for native in ("psnr", "ssim", "lpips", "temporal-flickering", "dynamic-degree", "motion-smoothness",
                   "shapes-probe"):
        assert read_side(plan("fvd", native), nets) is None, native
