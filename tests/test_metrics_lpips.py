"""LPIPS in plain torch: torchvision's key layout, the v0.1 head format, the distance formula."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidtool.errors import UserError
from vidtool.metrics.lpips import LPIPS, distance_from_features, features_stack, load_lpips, lpips_frames

# torchvision.models.alexnet().features / vgg16().features parameter shapes (the published architectures)
ALEXNET_KEYS = {
    "0.weight": (64, 3, 11, 11), "0.bias": (64,), "3.weight": (192, 64, 5, 5), "3.bias": (192,),
    "6.weight": (384, 192, 3, 3), "6.bias": (384,), "8.weight": (256, 384, 3, 3), "8.bias": (256,),
    "10.weight": (256, 256, 3, 3), "10.bias": (256,),
}
VGG16_CONVS = {0: (64, 3), 2: (64, 64), 5: (128, 64), 7: (128, 128), 10: (256, 128), 12: (256, 256), 14: (256, 256),
               17: (512, 256), 19: (512, 512), 21: (512, 512), 24: (512, 512), 26: (512, 512), 28: (512, 512)}
ALEX_CHANNELS = (64, 192, 384, 256, 256)


def test_backbones_are_numbered_like_torchvision():
    alex = {k: tuple(v.shape) for k, v in features_stack("alex").state_dict().items()}
    assert alex == ALEXNET_KEYS
    vgg = {k: tuple(v.shape) for k, v in features_stack("vgg").state_dict().items()}
    assert vgg == {**{f"{i}.weight": (o, c, 3, 3) for i, (o, c) in VGG16_CONVS.items()},
                   **{f"{i}.bias": (o,) for i, (o, _) in VGG16_CONVS.items()}}


def test_distance_is_the_head_weighted_squared_difference_of_unit_features():
    # every position holds 3·e0 in one image and 0.5·e1 in the other: after unit normalisation the
    # squared difference is e0 + e1, so layer l contributes w_l[0] + w_l[1] whatever the spatial size
    f0, f1, heads, expected = [], [], [], 0.0
    for c, size in zip(ALEX_CHANNELS, (15, 7, 3, 3, 3)):
        a, b = torch.zeros(1, c, size, size), torch.zeros(1, c, size, size)
        a[:, 0], b[:, 1] = 3.0, 0.5
        w = torch.rand(1, c, 1, 1)
        f0.append(a), f1.append(b), heads.append(w)
        expected += float(w[0, 0] + w[0, 1])
    assert distance_from_features(f0, f1, heads).item() == pytest.approx(expected, rel=1e-6)


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A torchvision-format AlexNet state dict (random, plus a classifier key LPIPS ignores) and v0.1 heads."""
    root = tmp_path_factory.mktemp("lpips")
    torch.manual_seed(0)
    state = {f"features.{k}": torch.randn(shape) * 0.05 for k, shape in ALEXNET_KEYS.items()}
    state["classifier.6.bias"] = torch.zeros(1000)
    torch.save(state, root / "alexnet-owt-test.pth")
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate(ALEX_CHANNELS)}
    torch.save(heads, root / "alex.pth")
    return root / "alexnet-owt-test.pth", root / "alex.pth", state, heads


def test_loads_torchvision_and_lpips_files_and_scores_frames(weights):
    backbone, heads_path, state, heads = weights
    model, info = load_lpips(str(backbone), str(heads_path))
    assert info.net == "alex" and set(info.digests) == {"backbone", "heads"}
    torch.testing.assert_close(model.features[0].weight, state["features.0.weight"])
    torch.testing.assert_close(model.heads[4].weight, heads["lin4.model.1.weight"])
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    b = rng.integers(0, 256, (3, 64, 64, 3), dtype=np.uint8)
    np.testing.assert_allclose(lpips_frames(model, a, a), 0.0, atol=1e-7)
    d = lpips_frames(model, a, b)
    assert d.shape == (3,) and (d > 0).all()
    np.testing.assert_allclose(lpips_frames(model, b, a), d, rtol=1e-5)


def test_inputs_are_scaled_by_the_lpips_constants():
    model = LPIPS("alex")
    x = torch.zeros(1, 3, 64, 64)
    x[:, 0] = -0.030  # the red shift: scaled input is exactly 0 there
    first_conv_input = []
    model.features[0].register_forward_hook(lambda m, inp, out: first_conv_input.append(inp[0]))
    model.taps(x)
    assert first_conv_input[0][:, 0].abs().max() == 0
    assert first_conv_input[0][0, 1, 0, 0].item() == pytest.approx(0.088 / 0.448)


def test_heads_for_the_other_backbone_are_refused(weights, tmp_path):
    backbone, *_ = weights
    vgg_heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1) for i, c in enumerate((64, 128, 256, 512, 512))}
    torch.save(vgg_heads, tmp_path / "vgg.pth")
    with pytest.raises(UserError, match="lin1.model.1.weight is \\[1, 128, 1, 1\\]"):
        load_lpips(str(backbone), str(tmp_path / "vgg.pth"))


def test_a_file_that_is_no_backbone_is_refused(tmp_path):
    torch.save({"weight": torch.zeros(3)}, tmp_path / "x.pth")
    with pytest.raises(UserError, match="not a torchvision AlexNet or VGG16"):
        load_lpips(str(tmp_path / "x.pth"), None)


def test_the_stage_reports_lpips_per_frame_with_its_weight_digests(weights, tmp_path, capsys):
    import json

    from stages.cli import main
    from vidtool.tensorfile import TensorFile, save

    backbone, heads_path, *_ = weights
    clips = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (2, 3, 64, 64, 3), dtype=np.uint8))
    save(TensorFile(kind="video", tensors={"video": clips}), tmp_path / "a.safetensors")
    save(TensorFile(kind="video", tensors={"video": clips.flip(1).contiguous()}), tmp_path / "b.safetensors")
    main(["evaluate", str(tmp_path / "a.safetensors"), "--ref", str(tmp_path / "b.safetensors"), "--metric", "lpips",
          "--lpips-backbone", str(backbone), "--lpips-heads", str(heads_path), "-o", str(tmp_path / "r.json")])
    entry = json.loads((tmp_path / "r.json").read_text())["metrics"]["lpips"]
    model, _ = load_lpips(str(backbone), str(heads_path))
    expected = np.mean([lpips_frames(model, clips[i].numpy(), clips[i].flip(0).numpy()).mean() for i in range(2)])
    assert entry["value"] == pytest.approx(expected, rel=1e-6)
    assert entry["models"]["lpips"]["net"] == "alex" and entry["models"]["lpips"]["heads"]["sha256"]
    assert entry["samples"] == {"pairs": 2} and entry["frames"] == 3 and len(entry["per_frame"]) == 3
