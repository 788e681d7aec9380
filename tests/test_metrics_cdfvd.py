"""cd-FVD (`--metric cd-fvd --videomae DIR`) with a tiny randomly initialised transformers VideoMAE:
the cd-FVD preprocessing and pooling, the feature shape, zero for identical sets, sharded merge =
unsharded, and the refusals. The tiny model runs at its own `image_size` (32) from its config."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidtool.errors import UserError
from vidtool.metrics.cdfvd import POOLING_FC_NORM, POOLING_MEAN, VideoMAEDetector, preprocess_clips
from vidtool.metrics.video_detectors import clip_outputs

from evaluate_sets import run_here, save_videos, videos

HIDDEN = 32


def tiny_config(**extra):
    from transformers import VideoMAEConfig

    return VideoMAEConfig(image_size=32, patch_size=16, tubelet_size=2, num_frames=16, num_hidden_layers=2,
                          hidden_size=HIDDEN, num_attention_heads=2, intermediate_size=64, use_mean_pooling=True,
                          **extra)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from transformers import VideoMAEForVideoClassification, VideoMAEModel

    root = tmp_path_factory.mktemp("videomae")
    torch.manual_seed(0)
    VideoMAEModel(tiny_config()).save_pretrained(root / "encoder")
    classifier = VideoMAEForVideoClassification(tiny_config(num_labels=3))
    with torch.no_grad():  # a non-trivial fc_norm, so that using it or not shows in the features
        classifier.fc_norm.weight.uniform_(0.5, 2.0)
        classifier.fc_norm.bias.uniform_(-1.0, 1.0)
    classifier.save_pretrained(root / "classifier")
    return root


def test_preprocessing_scales_to_unit_range_resizes_bilinearly_and_does_not_normalise():
    grey = np.full((16, 20, 28, 3), 51, dtype=np.uint8)  # non-square: stretched, as cd-FVD's resize does
    pixels = preprocess_clips([grey, grey], 32)
    assert pixels.shape == (2, 16, 3, 32, 32) and pixels.dtype == torch.float32
    torch.testing.assert_close(pixels, torch.full_like(pixels, 0.2))  # 51/255, no mean/std
    ramp = np.broadcast_to(np.arange(0, 256, 16, dtype=np.uint8)[None, None, :, None], (16, 16, 16, 3)).copy()
    out = preprocess_clips([ramp], 32)[0, 0, 0]
    expected = torch.nn.functional.interpolate(torch.from_numpy(ramp[0, :, :, 0]).float()[None, None] / 255, size=(32, 32),
                                               mode="bilinear", align_corners=False)[0, 0]
    torch.testing.assert_close(out, expected)
    assert out[0, 0] == 0 and out[0, -1] == pytest.approx(240 / 255)  # edges clamp: align_corners=False


def test_features_are_the_mean_pooled_encoder_output_of_the_first_16_frames(models):
    from transformers import VideoMAEModel

    detector = VideoMAEDetector(str(models / "encoder"))
    assert (detector.image_size, detector.frames, detector.pooling) == (32, 16, POOLING_MEAN)
    clips = videos(3, frames=20)
    features = clip_outputs(detector, detector.clip, [(f"v{i}", f"d{i}", c.numpy()) for i, c in enumerate(clips)], None)
    features = np.stack(features)
    assert features.shape == (3, HIDDEN) and features.dtype == np.float64
    model = VideoMAEModel.from_pretrained(str(models / "encoder"), local_files_only=True).eval()
    pixels = clips[:, :16].permute(0, 1, 4, 2, 3).float() / 255  # first 16 frames, [B, T, C, H, W]
    pixels = torch.nn.functional.interpolate(pixels.flatten(0, 1), size=(32, 32), mode="bilinear",
                                             align_corners=False).unflatten(0, (3, 16))
    with torch.no_grad():
        expected = model(pixel_values=pixels).last_hidden_state.mean(dim=1).double().numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    assert not np.allclose(features[0], features[1])  # different videos, different features


def test_a_fine_tuned_checkpoint_gives_fc_norm_of_the_mean_pooled_tokens(models):
    from transformers import VideoMAEForVideoClassification

    detector = VideoMAEDetector(str(models / "classifier"))
    assert detector.pooling == POOLING_FC_NORM
    clips = [c.numpy() for c in videos(2, frames=16)]
    features = detector(clips)
    model = VideoMAEForVideoClassification.from_pretrained(str(models / "classifier"), local_files_only=True).eval()
    with torch.no_grad():
        tokens = model.videomae(pixel_values=preprocess_clips(clips, 32)).last_hidden_state
        expected = model.fc_norm(tokens.mean(dim=1)).double().numpy()
    np.testing.assert_allclose(features, expected, rtol=1e-5, atol=1e-6)
    # the classifier head (logits) is not the feature
    assert features.shape == (2, HIDDEN)


def test_a_checkpoint_missing_weights_is_refused_not_randomly_filled(models, tmp_path):
    import shutil

    folder = tmp_path / "relabelled"
    shutil.copytree(models / "encoder", folder)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["VideoMAEForVideoClassification"]  # claims an fc_norm the weights do not hold
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(UserError, match="lacks .* weights"):
        VideoMAEDetector(str(folder))


def test_cd_fvd_end_to_end_sharded_merge_equals_unsharded(capsys, models, tmp_path):
    gen = save_videos(tmp_path / "gen.safetensors", videos(5, seed=1))
    (tmp_path / "ref").mkdir()
    save_videos(tmp_path / "ref" / "a.safetensors", videos(2, seed=2, bright=60))
    save_videos(tmp_path / "ref" / "b.safetensors", videos(2, seed=3, bright=60))
    # one video per network call so that per-video features are bit-identical however shards batch
    common = [gen, "--ref", tmp_path / "ref", "--metric", "cd-fvd", "--videomae", models / "encoder", "--batch", "1"]
    status, err = run_here(capsys, "evaluate", *common, "-o", tmp_path / "whole.json")
    assert status == 0, err
    assert "gen 5, ref 4" in err
    for shard in ("0/2", "1/2"):
        status, err = run_here(capsys, "evaluate", *common, "--shard", shard, "--cache", tmp_path / "cache",
                               "-o", tmp_path / "parts")
        assert status == 0, err
    status, err = run_here(capsys, "evaluate", "--merge", tmp_path / "parts", "-o", tmp_path / "merged.json")
    assert status == 0, err
    a = json.loads((tmp_path / "whole.json").read_text())["metrics"]["cd-fvd"]
    b = json.loads((tmp_path / "merged.json").read_text())["metrics"]["cd-fvd"]
    assert a["value"] > 0 and b["value"] == a["value"]
    assert a["samples"] == b["samples"] == {"generated": 5, "reference": 4}
    assert a["frames"] == 16 and a["resolution"] == {"generated": [24, 24], "reference": [24, 24]}
    assert a["models"]["videomae"]["sha256"] and a["models"]["videomae"]["image_size"] == 32
    assert "cd-FVD" in a["protocol"] and "no mean/std" in a["protocol"] and POOLING_MEAN in a["protocol"]
    cached = list((tmp_path / "cache").rglob("*.safetensors"))
    assert len(cached) == 9 and all(p.parent.name.startswith("videomae-") for p in cached)


def test_cd_fvd_of_a_set_against_itself_is_zero(capsys, models, tmp_path):
    gen = save_videos(tmp_path / "gen.safetensors", videos(4))
    status, err = run_here(capsys, "evaluate", gen, "--ref", gen, "--metric", "cd-fvd", "--videomae", models / "classifier",
                           "-o", tmp_path / "r.json")
    assert status == 0, err
    entry = json.loads((tmp_path / "r.json").read_text())["metrics"]["cd-fvd"]
    assert entry["value"] == pytest.approx(0.0, abs=1e-9) and entry["samples"] == {"generated": 4, "reference": 4}
    assert entry["models"]["videomae"]["pooling"] == POOLING_FC_NORM


def test_cd_fvd_without_videomae_exits_2_with_one_line(capsys, tmp_path):
    gen = save_videos(tmp_path / "g.safetensors", videos(3))
    status, err = run_here(capsys, "evaluate", gen, "--ref", gen, "--metric", "cd-fvd")
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2 and "Traceback" not in err and len(lines) == 1, (status, err)
    assert "--videomae" in lines[0]


def test_cd_fvd_is_unavailable_without_videomae_when_every_metric_runs(capsys, tmp_path):
    gen = save_videos(tmp_path / "g.safetensors", videos(2, frames=4, size=16))
    status, err = run_here(capsys, "evaluate", gen, "--ref", gen, "-o", tmp_path / "r.json")
    assert status == 0, err
    entry = json.loads((tmp_path / "r.json").read_text())["metrics"]["cd-fvd"]
    assert entry["available"] is False and "--videomae" in entry["reason"]
