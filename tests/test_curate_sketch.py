"""`vidtool curate-sketch-dataset` on DAVIS- and YouTube-VOS-layout folders and a QuickDraw file made here."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from conftest import one_line_error
from vidtool.data.manifest import read_manifest, resolve
from vidtool.data.sketches import Drawing, SketchLibrary, outline, render
from vidtool.data.tokens import read_masks, read_sketch
from vidtool.data.vos import find_layout, read_objects
from vidtool.errors import UserError

NO_ARRAY = {"SLURM_ARRAY_TASK_ID": "", "SLURM_ARRAY_TASK_COUNT": ""}  # for subprocess runs
H, W, T = 24, 32, 4
PALETTE = [0, 0, 0, 128, 0, 0, 0, 128, 0] + [0] * (256 * 3 - 9)  # DAVIS's: index 1 dark red, 2 dark green


def _boxes(t: int) -> dict[int, tuple[int, int, int, int]]:
    """Object id → (top, left, height, width) at frame t: object 1 slides right, object 2 down."""
    return {1: (4, 2 + 2 * t, 8, 10), 2: (2 + t, 20, 12, 6)}


def _write_video(frames_dir, masks_dir, frames: int = T, objects=(1, 2), mask_size=(W, H)):
    frames_dir.mkdir(parents=True)
    masks_dir.mkdir(parents=True)
    for t in range(frames):
        Image.fromarray(np.full((H, W, 3), 40 + 10 * t, np.uint8)).save(frames_dir / f"{t:05d}.jpg")
        label = np.zeros((H, W), np.uint8)
        for obj, (top, left, h, w) in _boxes(t).items():
            if obj in objects:
                label[top : top + h, left : left + w] = obj
        mask = Image.fromarray(label, mode="P")
        mask.putpalette(PALETTE)
        mask.resize(mask_size, Image.NEAREST).save(masks_dir / f"{t:05d}.png")


@pytest.fixture
def davis(tmp_path):
    """DAVIS layout: two good two-object videos, and one whose last frame has no mask."""
    root = tmp_path / "DAVIS"
    for name in ("bear", "dog-jump"):
        _write_video(root / "JPEGImages/480p" / name, root / "Annotations/480p" / name)
    _write_video(root / "JPEGImages/480p/broken", root / "Annotations/480p/broken")
    (root / "Annotations/480p/broken/00003.png").unlink()
    return root


@pytest.fixture
def quickdraw(tmp_path):
    """A tiny QuickDraw library (simplified format): two cats, a dog, a car, one unrecognised drawing."""
    path = tmp_path / "quickdraw.ndjson"
    lines = [
        {"word": "cat", "recognized": True, "drawing": [[[0, 100, 200], [0, 200, 0]], [[50, 150], [100, 100]]]},
        {"word": "cat", "recognized": True, "drawing": [[[0, 255], [128, 128]]]},
        {"word": "dog", "recognized": True, "drawing": [[[0, 255, 255, 0, 0], [0, 0, 255, 255, 0]]]},
        {"word": "car", "recognized": True, "drawing": [[[0, 255], [0, 255]], [[0, 255], [255, 0]]]},
        {"word": "car", "recognized": False, "drawing": [[[0, 10], [0, 10]]]},
    ]
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


def test_davis_videos_become_one_sample_per_object_and_the_broken_one_is_reported(stage, davis, quickdraw, tmp_path):
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"bear": {"1": "cat", "2": "car"}, "dog-jump": "dog"}))
    out = tmp_path / "out"
    assert stage("curate-sketch-dataset", davis, "-o", out, "--sketches", quickdraw, "--classes", classes,
                 "--sketch-size", "64") == 0
    records = read_manifest(out / "manifest.jsonl")
    assert [(r["video"], r["object_id"]) for r in records] == [("bear", 1), ("bear", 2), ("dog-jump", 1), ("dog-jump", 2)]
    by_key = {(r["video"], r["object_id"]): r for r in records}
    # A class that is a library word matches itself: identical text, cosine similarity 1.
    assert by_key["bear", 1]["sketch_source"]["word"] == "cat" and by_key["bear", 1]["sketch_source"]["score"] == pytest.approx(1, abs=1e-4)
    assert by_key["bear", 2]["sketch_source"]["word"] == "car"
    assert by_key["dog-jump", 2]["sketch_source"]["word"] == "dog" and by_key["dog-jump", 2]["class_source"] == "classes"
    assert by_key["bear", 1]["caption"] == "a cat" and by_key["bear", 1]["fps"] == 24.0  # DAVIS is 24 fps
    for record in records:
        arrays = np.load(resolve(out / "manifest.jsonl", record["mask"]))
        obj, t = record["object_id"], np.arange(T)
        expected = np.zeros((T, H, W), np.uint8)
        for i in t:
            top, left, h, w = _boxes(int(i))[obj]
            expected[i, top : top + h, left : left + w] = 1
        assert np.array_equal(arrays["mask"], expected)
        # The sketch lies on the object's box in every frame (and nowhere else).
        assert arrays["sketch"].shape == (T, H, W) and arrays["sketch"].any(axis=(1, 2)).all()
        assert not (arrays["sketch"] & (1 - _box_masks(obj))).any()
        image = Image.open(resolve(out / "manifest.jsonl", record["sketch"]))
        assert image.size == (64, 64) and np.asarray(image).min() == 0  # black strokes on white
        # What the inpainting token set reads from these fields.
        assert read_sketch(resolve(out / "manifest.jsonl", record["sketch"])).any()
        assert read_masks(resolve(out / "manifest.jsonl", record["mask"]), T, (H, W)).sum() == expected.sum()
        assert resolve(out / "manifest.jsonl", record["path"]).is_dir()
    errors = read_manifest(out / "manifest.errors.jsonl")
    assert len(errors) == 1 and errors[0]["video"] == "broken"
    assert "1 of 4 frames have no mask (first: 00003.jpg)" in errors[0]["error"]


def _box_masks(obj: int) -> np.ndarray:
    out = np.zeros((T, H, W), np.uint8)
    for t in range(T):
        top, left, h, w = _boxes(t)[obj]
        out[t, top : top + h, left : left + w] = 1
    return out


def test_without_a_library_the_sketch_is_the_mask_outline(stage, davis, tmp_path):
    out = tmp_path / "out"
    assert stage("curate-sketch-dataset", davis, "-o", out, "--sketch-size", "32") == 0
    record = read_manifest(out / "manifest.jsonl")[0]
    assert record["sketch_source"] == {"kind": "contour"} and record["class"] == "bear" and record["class_source"] == "video name"
    arrays = np.load(resolve(out / "manifest.jsonl", record["mask"]))
    # An 8×10 box's 1-pixel outline: 2·(8 + 10) − 4 = 32 pixels per frame.
    assert arrays["sketch"].reshape(T, -1).sum(1).tolist() == [32] * T


def test_captions_from_class_names_take_a_or_an(stage, davis, tmp_path):
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"bear": {"1": "elephant", "2": "owl"}, "dog-jump": "dog"}))
    out = tmp_path / "out"
    assert stage("curate-sketch-dataset", davis, "-o", out, "--classes", classes, "--sketch-size", "32") == 0
    captions = {(r["video"], r["object_id"]): r["caption"] for r in read_manifest(out / "manifest.jsonl")}
    assert captions == {("bear", 1): "an elephant", ("bear", 2): "an owl", ("dog-jump", 1): "a dog", ("dog-jump", 2): "a dog"}


def test_sharded_curation_merged_equals_one_run(stage, davis, quickdraw, tmp_path):
    args = [davis, "--sketches", quickdraw, "--sketch-size", "32"]
    assert stage("curate-sketch-dataset", *args, "-o", tmp_path / "one") == 0
    for i in range(3):
        assert stage("curate-sketch-dataset", *args, "-o", tmp_path / "parts", "--shard", f"{i}/3") == 0
    assert stage("merge-shards", tmp_path / "parts") == 0
    for name in ("manifest.jsonl", "manifest.errors.jsonl"):
        assert (tmp_path / "parts" / name).read_text() == (tmp_path / "one" / name).read_text()
    for record in read_manifest(tmp_path / "one" / "manifest.jsonl"):
        for key in ("mask", "sketch"):
            assert (tmp_path / "parts" / record[key]).read_bytes() == (tmp_path / "one" / record[key]).read_bytes()


def test_a_slurm_array_task_picks_its_shard(stage, davis, tmp_path, monkeypatch):
    for name, value in {"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "3"}.items():
        monkeypatch.setenv(name, value)
    assert stage("curate-sketch-dataset", davis, "-o", tmp_path / "parts", "--sketch-size", "16") == 0
    # Task 2 of an array numbered from 1 is shard 1 of 3: the second of the three sorted videos, "broken".
    assert read_manifest(tmp_path / "parts" / "curate-sketch-dataset-shard-00001-of-00003.jsonl") == []
    errors = read_manifest(tmp_path / "parts" / "curate-sketch-dataset-shard-00001-of-00003.errors.jsonl")
    assert [e["video"] for e in errors] == ["broken"]
    stats = json.loads((tmp_path / "parts" / "curate-sketch-dataset-shard-00001-of-00003.stats.json").read_text())
    assert stats["shard"] == "1/3" and stats["items"] == 1


def test_mask_of_another_size_and_empty_objects_are_reported_per_item(stage, tmp_path):
    root = tmp_path / "vos"
    _write_video(root / "train/JPEGImages/aaa", root / "train/Annotations/aaa", mask_size=(W // 2, H // 2))
    _write_video(root / "train/JPEGImages/bbb", root / "train/Annotations/bbb", objects=(1,))
    (root / "train/meta.json").write_text(json.dumps({"videos": {"bbb": {"objects": {
        "1": {"category": "zebra"}, "2": {"category": "giraffe"}}}}}))
    assert stage("curate-sketch-dataset", root, "-o", tmp_path / "out", "--sketch-size", "16") == 0
    records = read_manifest(tmp_path / "out" / "manifest.jsonl")
    assert [(r["video"], r["object_id"], r["class"], r["fps"]) for r in records] == [("bbb", 1, "zebra", 6.0)]
    errors = {(e["video"], e.get("object_id")): e["error"] for e in read_manifest(tmp_path / "out" / "manifest.errors.jsonl")}
    assert "mask 00000.png is 16×12 but its frame 00000.jpg is 32×24" in errors["aaa", None]
    assert "object 2 is named in the classes but covers no pixel" in errors["bbb", 2]


def test_a_folder_that_is_no_vos_layout_exits_2(vidtool, tmp_path):
    (tmp_path / "empty").mkdir()
    line = one_line_error(vidtool("curate-sketch-dataset", tmp_path / "empty", "-o", tmp_path / "out", env=NO_ARRAY))
    assert "neither a DAVIS folder" in line


def test_quickdraw_strokes_rasterise_inside_the_canvas_and_unrecognised_ones_are_dropped(quickdraw):
    library = SketchLibrary(quickdraw)
    assert library.words == ["car", "cat", "dog"] and len(library.by_word["car"]) == 1
    square = render(library.by_word["dog"][0], 64)
    # A closed square stroke: its drawing is its own outline, the inside stays empty.
    ys, xs = np.nonzero(square)
    assert square[32, 32] == 0 and 0 < ys.min() and ys.max() < 63 and 0 < xs.min() and xs.max() < 63
    # …and it is the outline of the square it encloses.
    assert np.array_equal(square, outline(_filled(square)[None], width=square[32, xs.min():].argmin())[0])
    assert library.pick("cat", "bear/1") == library.pick("cat", "bear/1")


def _filled(square: np.ndarray) -> np.ndarray:
    ys, xs = np.nonzero(square)
    out = np.zeros_like(square)
    out[ys.min() : ys.max() + 1, xs.min() : xs.max() + 1] = 1
    return out


def test_layouts_are_found_with_their_videos_in_name_order(davis):
    layout = find_layout(davis)
    assert layout.kind == "davis" and [v.name for v in layout.videos] == ["bear", "broken", "dog-jump"]
    with pytest.raises(UserError, match="DAVIS resolutions here: 480p"):
        find_layout(davis, resolution="Full-Resolution")
    objects = read_objects(layout.videos[0])
    assert sorted(objects.masks) == [1, 2] and objects.size == (H, W) and len(objects.frames) == T


def test_sketchy_style_image_folders_are_a_library(tmp_path):
    folder = tmp_path / "sketchy" / "alarm_clock"
    folder.mkdir(parents=True)
    image = np.full((40, 40), 255, np.uint8)
    image[10:30, 20] = 0
    Image.fromarray(image).save(folder / "n01.png")
    library = SketchLibrary(tmp_path / "sketchy")
    drawing = library.pick("alarm clock", "x")
    assert isinstance(drawing, Drawing) and drawing.image is not None
    strokes = render(drawing, 32)
    assert strokes.any() and strokes.shape == (32, 32)


@pytest.fixture
def tiny_clip(tmp_path):
    """A tiny random CLIP with a word-level tokenizer, saved as a local transformers folder."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import CLIPConfig, CLIPModel, PreTrainedTokenizerFast

    words = ["<unk>", "<pad>", "<s>", "</s>", "cat", "dog", "car", "a", "small"]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>",
                                        bos_token="<s>", eos_token="</s>")
    config = CLIPConfig(text_config={"vocab_size": len(words), "hidden_size": 16, "intermediate_size": 32,
                                     "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 16,
                                     "eos_token_id": 3, "pad_token_id": 1, "bos_token_id": 2},
                        vision_config={"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1,
                                       "num_attention_heads": 2, "image_size": 16, "patch_size": 8},
                        projection_dim=8)
    torch.manual_seed(0)
    folder = tmp_path / "clip"
    CLIPModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def test_a_local_clip_text_tower_matches_classes_to_sketches(stage, davis, quickdraw, tiny_clip, tmp_path):
    classes = tmp_path / "classes.json"
    classes.write_text(json.dumps({"bear": {"1": "dog", "2": "car"}, "dog-jump": "cat"}))
    out = tmp_path / "out"
    assert stage("curate-sketch-dataset", davis, "-o", out, "--sketches", quickdraw, "--classes", classes,
                 "--clip", tiny_clip, "--sketch-size", "16") == 0
    sources = [r["sketch_source"] for r in read_manifest(out / "manifest.jsonl")]
    # Random weights, but a class that is a library word has the same embedding as that word: cosine 1.
    assert [s["word"] for s in sources] == ["dog", "car", "cat", "cat"]
    assert all(s["matcher"] == "clip:clip" and s["score"] == pytest.approx(1, abs=1e-4) for s in sources)
