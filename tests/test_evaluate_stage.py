"""`vidtool evaluate` end to end: FVD through a TorchScript stand-in for I3D (sharded = unsharded),
the shapes probe on a made dataset, the JSON contract, and the exit-2 refusals."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from vidtool import tensorfile, video
from vidtool.metrics.fvd import I3D_CALL, VARIANTS
from vidtool.metrics.video_detectors import TorchScriptDetector, clip_outputs
from vidtool.metrics.video_inception_score import inception_score
from vidtool.tensorfile import TensorFile

from evaluate_sets import one_line_error_here, run_here, save_videos, videos


class TinyI3D(nn.Module):
    """Keeps the interface of StyleGAN-V's i3d_torchscript.pt and refuses any other input."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 6, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> torch.Tensor:
        if x.dim() != 5 or x.size(1) != 3 or x.size(2) != 16:
            raise RuntimeError("expected [B, 3, 16, H, W]")
        if x.dtype != torch.float32 or bool(x.min() < 0) or bool(x.max() > 255):
            raise RuntimeError("expected float32 values in 0..255")
        if not (rescale and resize and return_features):
            raise RuntimeError("expected rescale=True, resize=True, return_features=True")
        x = nn.functional.interpolate(x / 127.5 - 1, size=(16, 32, 32), mode="trilinear", align_corners=False)
        return torch.relu(self.conv(x)).mean(dim=(2, 3, 4))


class TinyC3D(nn.Module):
    """StyleGAN-V's c3d_ucf101.pt interface: video in, class probabilities out, no keyword arguments."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv3d(3, 5, kernel_size=3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.conv(x / 255.0).mean(dim=(2, 3, 4)) * 20, dim=1)


@pytest.fixture(scope="module")
def nets(tmp_path_factory):
    root = tmp_path_factory.mktemp("nets")
    torch.manual_seed(0)
    torch.jit.script(TinyI3D()).save(str(root / "i3d.pt"))
    torch.jit.script(TinyC3D()).save(str(root / "c3d.pt"))
    return root


def test_the_stand_in_receives_the_stylegan_v_clip(nets):
    clip = videos(1, frames=20)[0].numpy()
    detector = TorchScriptDetector(str(nets / "i3d.pt"), name="I3D", call_kwargs=I3D_CALL, device="cpu")
    (features,) = clip_outputs(detector, VARIANTS["16f"], [("v", "d", clip)], None)
    # the first 16 frames, as [B, C, T, H, W] float in the uint8 range, with the three keyword flags
    expected = torch.jit.load(str(nets / "i3d.pt"))(
        torch.from_numpy(clip[:16]).permute(3, 0, 1, 2)[None].float(), rescale=True, resize=True, return_features=True)
    np.testing.assert_allclose(features, expected[0].detach().double().numpy(), rtol=1e-6)
    every8 = clip_outputs(detector, VARIANTS["128f_subsample8f"], [("v", "d", videos(1, frames=121)[0].numpy())], None)
    assert every8[0].shape == (6,)


def test_fvd_end_to_end_and_sharded_merge_equals_unsharded(vidtool, capsys, nets, tmp_path):
    gen = save_videos(tmp_path / "gen.safetensors", videos(7, seed=1))
    (tmp_path / "ref").mkdir()
    save_videos(tmp_path / "ref" / "a.safetensors", videos(3, seed=2, bright=60))
    save_videos(tmp_path / "ref" / "b.safetensors", videos(2, seed=3, bright=60))
    # One video per network call: a CPU convolution's last bits can depend on the batch it runs in,
    # and shards batch differently; per-video features are then bit-identical, and so is the FVD.
    common = [gen, "--ref", tmp_path / "ref", "--metric", "fvd", "--i3d", nets / "i3d.pt", "--batch", "1"]
    whole = vidtool("evaluate", *common, "-o", tmp_path / "whole.json")  # a real process, as a user runs it
    assert whole.returncode == 0, whole.stderr.decode()
    assert "gen 7, ref 5" in whole.stderr.decode()  # counts printed beside the value
    for shard in ("0/2", "1/2", "1/2"):
        status, err = run_here(capsys, "evaluate", *common, "--shard", shard, "--cache", tmp_path / "cache",
                               "-o", tmp_path / "parts")
        assert status == 0, err
    assert "already done" in err  # the rerun of shard 1/2 skipped its work
    status, err = run_here(capsys, "evaluate", "--merge", tmp_path / "parts", "-o", tmp_path / "merged.json")
    assert status == 0, err
    a = json.loads((tmp_path / "whole.json").read_text())["metrics"]["fvd"]
    b = json.loads((tmp_path / "merged.json").read_text())["metrics"]["fvd"]
    assert a["value"] > 0 and b["value"] == a["value"]
    assert a["samples"] == b["samples"] == {"generated": 7, "reference": 5}
    assert a["frames"] == 16 and a["resolution"] == {"generated": [24, 24], "reference": [24, 24]}
    assert a["models"]["i3d"]["sha256"] and "fvd2048_16f" in a["protocol"]
    assert len(list((tmp_path / "cache").rglob("*.safetensors"))) == 12  # one feature file per video


def test_fvd_of_a_set_against_itself_is_zero(capsys, nets, tmp_path):
    gen = save_videos(tmp_path / "gen.safetensors", videos(4))
    status, err = run_here(capsys, "evaluate", gen, "--ref", gen, "--metric", "fvd", "--i3d", nets / "i3d.pt",
                           "-o", tmp_path / "r.json")
    assert status == 0, err
    assert json.loads((tmp_path / "r.json").read_text())["metrics"]["fvd"]["value"] == pytest.approx(0.0, abs=1e-9)


def test_isv_reports_the_inception_score_of_the_c3d_probabilities(capsys, nets, tmp_path):
    clips = videos(6, frames=16)
    gen = save_videos(tmp_path / "gen.safetensors", clips)
    status, err = run_here(capsys, "evaluate", gen, "--metric", "isv", "--c3d", nets / "c3d.pt", "--isv-splits", "2",
                           "-o", tmp_path / "r.json")
    assert status == 0, err
    entry = json.loads((tmp_path / "r.json").read_text())["metrics"]["isv"]
    probs = torch.jit.load(str(nets / "c3d.pt"))(clips.permute(0, 4, 1, 2, 3).float()).detach().double().numpy()
    assert entry["value"] == pytest.approx(inception_score(probs, splits=2).mean, rel=1e-6)
    assert entry["samples"] == {"generated": 6} and entry["frames"] == 16 and "std" in entry


def test_shapes_probe_psnr_and_plots_on_a_made_dataset_and_its_round_trip(capsys, tmp_path):
    from vidtool.data.make import make_dataset
    from vidtool.data.manifest import read_manifest

    manifest = make_dataset("shapes", tmp_path / "data", 16)
    # a lossy round trip (re-encoded at crf 28) standing in for encode | decode
    video.write_mp4s([(tmp_path / "decoded" / r["path"].split("/")[-1], video.read_video(tmp_path / "data" / r["path"]).frames)
                      for r in read_manifest(manifest)], 8, crf=28)
    status, err = run_here(capsys, "evaluate", manifest, "--ref", tmp_path / "decoded", "-o", tmp_path / "r.json",
                           "--plot", tmp_path / "plots")
    assert status == 0, err
    report = json.loads((tmp_path / "r.json").read_text())
    probe = report["metrics"]["shapes-probe"]
    assert probe["prompt_hits"]["color"] >= 0.98 and probe["prompt_hits"]["direction"] >= 0.98
    assert probe["reconstruction_agreement"]["color"] >= 0.98
    assert probe["samples"] == {"generated": 16} and probe["resolution"] == [64, 64] and probe["frames"] == 16
    assert 25 < report["metrics"]["psnr"]["value"] < 100 and report["metrics"]["psnr"]["identical_frames"] == 0
    assert report["metrics"]["lpips"] == {"available": False, "reason": report["metrics"]["lpips"]["reason"]}
    assert report["metrics"]["fvd"]["available"] is False
    assert "not comparable with VBench" in report["metrics"]["dynamic-degree"]["notes"][0]
    assert report["sets"]["reference"]["resolution"] == [64, 64]
    assert sorted(p.name for p in (tmp_path / "plots").iterdir()) == ["psnr.png", "ssim.png", "temporal-flickering.png"]


def test_identical_frames_are_reported_as_100_db_and_said_so(capsys, tmp_path):
    gen = save_videos(tmp_path / "gen.safetensors", videos(2, frames=4, size=16))
    status, err = run_here(capsys, "evaluate", gen, "--ref", gen, "--metric", "psnr", "-o", tmp_path / "r.json")
    assert status == 0, err
    entry = json.loads((tmp_path / "r.json").read_text())["metrics"]["psnr"]
    assert entry["value"] == 100.0 and entry["identical_frames"] == 8
    assert "reported as 100 dB" in entry["notes"][0] and "100 dB" in err


def test_codebook_statistics_of_a_token_set(capsys, tmp_path):
    tokens = torch.arange(2 * 4 * 4 * 4).reshape(2, 4, 4, 4) % 16  # 16 codes used equally, of 64
    tensorfile.save(TensorFile(kind="tokens", tensors={"tokens": tokens.int()}), tmp_path / "t.safetensors")
    (tmp_path / "tok").mkdir()
    (tmp_path / "tok" / "config.json").write_text(json.dumps({"family": "mbq-vae", "config": {"codebook_size": 64}}))
    status, err = run_here(capsys, "evaluate", tmp_path / "t.safetensors", "--model", tmp_path / "tok",
                           "-o", tmp_path / "r.json")
    assert status == 0, err
    entry = json.loads((tmp_path / "r.json").read_text())["metrics"]["codebook"]
    assert entry["value"] == 16 / 64 and entry["perplexity"] == pytest.approx(16.0) and entry["codebook_size"] == 64


def test_fvd_without_i3d_weights_exits_2(capsys, tmp_path):
    gen = save_videos(tmp_path / "g.safetensors", videos(3))
    assert "--i3d" in one_line_error_here(capsys, "evaluate", gen, "--ref", gen, "--metric", "fvd")


def test_lpips_asked_for_without_weights_exits_2(capsys, tmp_path):
    gen = save_videos(tmp_path / "g.safetensors", videos(2))
    assert "no LPIPS weights" in one_line_error_here(capsys, "evaluate", gen, "--ref", gen, "--metric", "lpips")


def test_fvd_refuses_a_set_of_one_video(capsys, nets, tmp_path):
    one = save_videos(tmp_path / "one.safetensors", videos(1))
    two = save_videos(tmp_path / "two.safetensors", videos(2))
    line = one_line_error_here(capsys, "evaluate", two, "--ref", one, "--metric", "fvd", "--i3d", nets / "i3d.pt")
    assert "at least 2 videos" in line and "reference set has 1" in line


def test_fvd_refuses_clips_shorter_than_the_protocol(capsys, nets, tmp_path):
    short = save_videos(tmp_path / "short.safetensors", videos(3, frames=10))
    line = one_line_error_here(capsys, "evaluate", short, "--ref", short, "--metric", "fvd", "--i3d", nets / "i3d.pt",
                               "-o", tmp_path / "r.json")
    assert "has 10 frames" in line and "needs at least 16" in line
    assert not (tmp_path / "r.json").exists()


def test_paired_metrics_refuse_mismatched_resolutions(capsys, tmp_path):
    small = save_videos(tmp_path / "small.safetensors", videos(2, size=24))
    large = save_videos(tmp_path / "large.safetensors", videos(2, size=32))
    line = one_line_error_here(capsys, "evaluate", small, "--ref", large, "--metric", "psnr", "-o", tmp_path / "r.json")
    assert "24x24" in line and "32x32" in line and "never resize" in line


def test_merge_refuses_an_incomplete_set_of_shards(capsys, tmp_path):
    gen = save_videos(tmp_path / "g.safetensors", videos(4, frames=4, size=16))
    status, err = run_here(capsys, "evaluate", gen, "--metric", "temporal-flickering", "--shard", "1/3", "-o", tmp_path / "p")
    assert status == 0, err
    assert "missing shard(s) 0, 2 of 3" in one_line_error_here(capsys, "evaluate", "--merge", tmp_path / "p")
