"""Datasets: manifests, the shapes and photos makers, and the training clip loader."""

import logging
import re

import numpy as np
import pytest
import torch

from vidtool.data.make import make_dataset
from vidtool.data.manifest import read_manifest, resolve, write_manifest
from vidtool.data.photos import IMAGES, PHRASES, render_photo_clip, sample_photo_clip
from vidtool.data.wording import with_article
from vidtool.data.shapes import (
    CAPTION_RE,
    HELD_OUT,
    combinations,
    render_shape_clip,
    sample_shape_clip,
)
from vidtool.errors import UserError


def shapes(n, seed=0, **kw):
    combos = combinations(**kw)
    return [sample_shape_clip(seed, i, combos) for i in range(n)]


# --- shapes -----------------------------------------------------------------------------------


def test_shapes_same_seed_gives_identical_frames_and_captions():
    a = [render_shape_clip(c, frames=8, size=32) for c in shapes(4, seed=3)]
    b = [render_shape_clip(c, frames=8, size=32) for c in shapes(4, seed=3)]
    assert [c.caption for c in shapes(4, seed=3)] == [c.caption for c in shapes(4, seed=3)]
    for x, y in zip(a, b):
        assert np.array_equal(x.video, y.video) and np.array_equal(x.mask, y.mask)
    other = [render_shape_clip(c, frames=8, size=32).video for c in shapes(4, seed=4)]
    assert any(not np.array_equal(x.video, y) for x, y in zip(a, other))


def test_shapes_clip_depends_only_on_seed_and_index():
    combos = combinations()
    assert sample_shape_clip(0, 17, combos) == shapes(18)[17]


def test_shapes_never_show_held_out_combinations():
    clips = shapes(300)
    seen = {(c.color, c.shape, c.direction) for c in clips}
    assert not seen & set(HELD_OUT)
    for c in clips:
        m = CAPTION_RE.fullmatch(c.caption)
        assert (m["color"], m["shape"], m["direction"]) not in HELD_OUT


def test_shapes_only_held_out_gives_only_held_out_combinations():
    seen = {(c.color, c.shape, c.direction) for c in shapes(60, only_held_out=True)}
    assert seen == set(HELD_OUT)


def test_shapes_custom_held_out_list_replaces_the_default():
    custom = [("white", "circle", "left")]
    seen = {(c.color, c.shape, c.direction) for c in shapes(400, held_out=custom)}
    assert ("white", "circle", "left") not in seen
    assert seen & set(HELD_OUT)
    only = shapes(5, held_out=custom, only_held_out=True)
    assert {(c.color, c.shape, c.direction) for c in only} == set(custom)


def test_shapes_held_out_with_unknown_color_is_a_user_error():
    with pytest.raises(UserError, match="purple"):
        combinations([("purple", "circle", "up")])


# The grammar as the design states it, written out here rather than taken from the module.
COLOR = "(red|green|blue|yellow|magenta|cyan|white|orange)"
GRAMMAR = re.compile(
    rf"an? {COLOR} (circle|square|triangle) moving (left|right|up|down)"
    rf"( quickly| slowly)?( on an? {COLOR} background)?"
)


def test_shapes_captions_follow_the_grammar_and_describe_the_clip():
    for c in shapes(200):
        assert GRAMMAR.fullmatch(c.caption), c.caption
        m = CAPTION_RE.fullmatch(c.caption)
        assert (m["color"], m["shape"], m["direction"]) == (c.color, c.shape, c.direction)
        assert m["speed"] == {"slow": "slowly", "fast": "quickly", "medium": None}[c.speed]
        assert m["background"] == c.background


def test_shapes_caption_grammar_variants_all_occur():
    captions = [c.caption for c in shapes(200)]
    assert any(CAPTION_RE.fullmatch(s)["background"] for s in captions)
    assert any(s.endswith(("quickly", "slowly")) for s in captions)
    assert any(CAPTION_RE.fullmatch(s)["speed"] is None and CAPTION_RE.fullmatch(s)["background"] is None
               for s in captions)


def test_shapes_captions_say_an_before_a_vowel():
    captions = [c.caption for c in shapes(300)]
    assert not [s for s in captions if re.search(r"\ba [aeiou]", s)]
    assert any(s.startswith("an orange ") for s in captions)
    assert any(s.endswith(" on an orange background") for s in captions)
    assert CAPTION_RE.fullmatch("an orange circle moving up on an orange background")["color"] == "orange"
    assert [with_article(w) for w in ("orange", "red", "elephant", "owl", "unicorn", "hour", "European")] == [
        "an orange", "a red", "an elephant", "an owl", "a unicorn", "an hour", "a European"]


def centroid(mask):
    ys, xs = np.nonzero(mask)
    return xs.mean(), ys.mean()


def test_primary_shape_moves_in_the_captioned_direction():
    unit = {"right": (1, 0), "left": (-1, 0), "down": (0, 1), "up": (0, -1)}  # y points down
    for c in shapes(40):
        mask = render_shape_clip(c, frames=8, size=48).mask
        (x0, y0), (x1, y1) = centroid(mask[0]), centroid(mask[-1])
        dx, dy = unit[c.direction]
        # The slowest clips travel 15% of the frame (7 px at 48); along the axis it must be most of that,
        # across it (nothing) well under a pixel.
        along = (x1 - x0) * dx + (y1 - y0) * dy
        across = abs((x1 - x0) * dy + (y1 - y0) * dx)
        assert along > 0.1 * 48 and across < 1, (c.caption, along, across)


def test_mask_and_sketch_are_binary_frames_with_the_sketch_on_the_mask_boundary():
    c = shapes(1)[0]
    drawn = render_shape_clip(c, frames=6, size=40)
    assert drawn.video.shape == (6, 40, 40, 3) and drawn.video.dtype == np.uint8
    for a in (drawn.mask, drawn.sketch):
        assert a.shape == (6, 40, 40) and a.dtype == np.uint8 and set(np.unique(a)) == {0, 1}
    assert np.all(drawn.sketch <= drawn.mask)
    # A boundary, not a filled shape: a thin ring far smaller than the area it encloses.
    assert drawn.sketch.sum() < 0.5 * drawn.mask.sum()


def test_primary_shape_is_drawn_in_its_color_over_its_mask():
    from vidtool.data.shapes import COLORS

    for c in shapes(10):
        drawn = render_shape_clip(c, frames=4, size=48)
        core = drawn.mask.astype(bool) & ~drawn.sketch.astype(bool)
        assert np.all(np.abs(drawn.video[core].astype(int) - COLORS[c.color]) <= 1)


# --- photos -----------------------------------------------------------------------------------


def test_photos_captions_name_the_image_and_motion():
    for i in range(60):
        c = sample_photo_clip(0, i)
        assert c.caption.endswith(f"{PHRASES[c.motion]} a photo of {IMAGES[c.image]}"), c.caption


def test_photos_same_seed_gives_identical_frames_and_captions():
    a, b = sample_photo_clip(5, 2), sample_photo_clip(5, 2)
    assert a == b
    assert np.array_equal(render_photo_clip(a, frames=4, size=24), render_photo_clip(b, frames=4, size=24))


def test_photos_pan_moves_the_camera_the_named_way_so_the_picture_slides_opposite():
    from skimage.registration import phase_cross_correlation

    camera = {"pan-left": (0, -1), "pan-right": (0, 1), "pan-up": (-1, 0), "pan-down": (1, 0)}  # (y, x)
    checked = 0
    for i in range(40):
        c = sample_photo_clip(0, i)
        if c.motion not in camera:
            continue
        video = render_photo_clip(c, frames=6, size=48).astype(np.float32).mean(-1)
        # The shift that registers each frame onto the one before it follows the camera; summed
        # over short steps, so no step is large enough for the periodic correlation to wrap.
        shift = sum(phase_cross_correlation(video[k], video[k + 1])[0] for k in range(5))
        assert tuple(np.sign(shift).astype(int)) == camera[c.motion], (c.caption, shift)
        checked += 1
    assert checked >= 5


# --- manifest ---------------------------------------------------------------------------------


# --- scenes -----------------------------------------------------------------------------------


def test_scenes_never_show_the_held_out_pictures_and_held_out_scenes_show_only_them():
    from vidtool.data.scenes import HELD_OUT_IMAGES, sample_scene

    training = {layer.picture for i in range(300) for layer in sample_scene(0, i).layers}
    assert not training & set(HELD_OUT_IMAGES)
    assert any(p.startswith("texture:") for p in training) and len(training) > 30
    held = {layer.picture for i in range(30) for layer in sample_scene(0, i, held_out=True).layers}
    assert held <= set(HELD_OUT_IMAGES)


def test_scene_layers_move_occlude_and_the_lighting_changes():
    """A foreground layer covers different pixels at the start and the end (it moves in front of the
    background), and the frame's mean level follows the scene's gain ramp."""
    from dataclasses import replace

    from vidtool.data.scenes import render_scene, sample_scene

    scene = next(s for s in (sample_scene(0, i) for i in range(50)) if len(s.layers) >= 2)
    still = replace(scene, gain_end=1.0, tint_end=(1.0, 1.0, 1.0), noise=0.0)
    alone = replace(still, layers=scene.layers[:1])
    video = render_scene(still, frames=8, height=48, width=80).astype(np.float32)
    background = render_scene(alone, frames=8, height=48, width=80).astype(np.float32)
    covered = np.abs(video - background).sum(-1) > 30  # where a foreground layer hides the background
    assert video.shape == (8, 48, 80, 3)
    assert covered[0].any() and covered[-1].any() and (covered[0] != covered[-1]).mean() > 0.02
    darker = render_scene(replace(still, gain_end=0.5), frames=8, height=48, width=80).astype(np.float32)
    assert np.allclose(darker[-1].mean() / video[-1].mean(), 0.5, atol=0.03)
    assert np.allclose(darker[0], video[0], atol=1)


def test_make_dataset_scenes_writes_footage_like_clips_and_held_out_only(tmp_path):
    from vidtool.data.scenes import HELD_OUT_IMAGES

    manifest = make_dataset("scenes", tmp_path / "s", 3, frames=4, size=32)
    records = read_manifest(manifest)
    assert len(records) == 3 and all(r["frames"] == 4 and r["height"] == r["width"] == 32 for r in records)
    held = read_manifest(make_dataset("scenes", tmp_path / "h", 2, frames=4, size=32, only_held_out=True))
    assert all(set(r["pictures"]) <= set(HELD_OUT_IMAGES) for r in held)


def test_manifest_round_trip_keeps_records_and_extra_keys(tmp_path):
    records = [
        {"path": "clips/a.mp4", "caption": "a red circle moving left", "fps": 8, "label": 3, "extra": [1, 2]},
        {"path": "/abs/b.mp4", "caption": "ünïcode"},
    ]
    write_manifest(tmp_path / "m.jsonl", records)
    assert read_manifest(tmp_path / "m.jsonl") == records
    assert resolve(tmp_path / "m.jsonl", "clips/a.mp4") == tmp_path / "clips/a.mp4"
    assert str(resolve(tmp_path / "m.jsonl", "/abs/b.mp4")) == "/abs/b.mp4"


def test_manifest_bad_json_names_the_line(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"path": "a.mp4"}\n\n{"path": \n')
    with pytest.raises(UserError, match=r"m\.jsonl:3"):
        read_manifest(tmp_path / "m.jsonl")


def test_manifest_record_without_path_names_the_line(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"path": "a.mp4"}\n{"caption": "x"}\n')
    with pytest.raises(UserError, match=r'm\.jsonl:2: .*"path"'):
        read_manifest(tmp_path / "m.jsonl")


def test_manifest_refuses_relative_path_escaping_its_folder(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"path": "clips/../../secret.mp4"}\n')
    with pytest.raises(UserError, match=r"m\.jsonl:1: .*escapes"):
        read_manifest(tmp_path / "m.jsonl")
    with pytest.raises(UserError, match="escapes"):
        resolve(tmp_path / "m.jsonl", "../x.mp4")
    assert resolve(tmp_path / "m.jsonl", "a/../b.mp4") == tmp_path / "a/../b.mp4"


# --- make_dataset -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shapes_dir(tmp_path_factory):
    from vidtool.data.make import make_dataset

    out = tmp_path_factory.mktemp("shapes")
    make_dataset("shapes", out, 5, frames=4, size=32, fps=8, seed=1)
    return out


def test_make_dataset_writes_clips_masks_and_a_manifest_with_evaluation_keys(shapes_dir):
    records = read_manifest(shapes_dir / "manifest.jsonl")
    assert len(records) == 5
    for i, r in enumerate(records):
        assert r["path"] == f"clips/{i:06d}.mp4" and (shapes_dir / r["path"]).is_file()
        assert r["fps"] == 8 and CAPTION_RE.fullmatch(r["caption"])
        assert {"color", "shape", "direction", "speed", "background"} <= r.keys()
        masks = np.load(resolve(shapes_dir / "manifest.jsonl", r["mask"]))
        assert masks["mask"].shape == masks["sketch"].shape == (4, 32, 32)
        assert r["sketch"] == r["mask"]
    assert [r["caption"] for r in records] == [c.caption for c in shapes(5, seed=1)]


def test_make_dataset_rerun_skips_existing_clips_and_extends(shapes_dir):
    from vidtool.data.make import make_dataset

    clip = shapes_dir / "clips/000002.mp4"
    before = clip.stat().st_mtime_ns
    make_dataset("shapes", shapes_dir, 6, frames=4, size=32, fps=8, seed=1)
    assert clip.stat().st_mtime_ns == before
    assert len(read_manifest(shapes_dir / "manifest.jsonl")) == 6
    make_dataset("shapes", shapes_dir, 5, frames=4, size=32, fps=8, seed=1)  # leave the fixture as it was


def test_make_dataset_refuses_a_folder_made_with_other_options(shapes_dir):
    from vidtool.data.make import make_dataset

    with pytest.raises(UserError, match="size"):
        make_dataset("shapes", shapes_dir, 5, frames=4, size=48, fps=8, seed=1)


def test_make_dataset_only_held_out_writes_only_held_out_combinations(tmp_path):
    from vidtool.data.make import make_dataset

    manifest = make_dataset("shapes", tmp_path, 8, frames=2, size=16, only_held_out=True, fmt="gif")
    records = read_manifest(manifest)
    assert {(r["color"], r["shape"], r["direction"]) for r in records} <= set(HELD_OUT)


def test_make_dataset_photos_records_image_and_motion(tmp_path):
    from vidtool.data.make import make_dataset

    records = read_manifest(make_dataset("photos", tmp_path, 3, frames=2, size=24, fmt="png"))
    for r in records:
        assert r["image"] in IMAGES and PHRASES[r["motion"]] in r["caption"]
        assert len(list((tmp_path / r["path"]).glob("*.png"))) == 2


# --- ClipDataset ------------------------------------------------------------------------------


def test_clip_dataset_skips_a_corrupt_clip_with_one_warning(shapes_dir, tmp_path, caplog):
    from vidtool.data.clips import ClipDataset

    (tmp_path / "broken.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 10)
    good = read_manifest(shapes_dir / "manifest.jsonl")
    records = [{**r, "path": str(shapes_dir / r["path"])} for r in good[:2]]
    records.insert(1, {"path": "broken.mp4", "caption": "broken"})
    write_manifest(tmp_path / "m.jsonl", records)

    data = ClipDataset(tmp_path / "m.jsonl", frames=4)
    with caplog.at_level(logging.WARNING, logger="vidtool.data.clips"):
        items = [data[i] for i in range(len(data))] + [data[1]]
    assert [item["index"] for item in items] == [0, 2, 2, 2]
    assert all(item["video"].shape == (4, 32, 32, 3) and item["video"].dtype == torch.uint8 for item in items)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "broken.mp4" in warnings[0].getMessage()


def test_clip_dataset_with_no_decodable_clip_is_a_user_error(tmp_path):
    from vidtool.data.clips import ClipDataset

    (tmp_path / "broken.mp4").write_bytes(b"garbage")
    write_manifest(tmp_path / "m.jsonl", [{"path": "broken.mp4", "caption": "x"}])
    with pytest.raises(UserError, match="decodes"):
        ClipDataset(tmp_path / "m.jsonl")[0]


def test_clip_dataset_pads_short_clips_by_holding_the_last_frame(shapes_dir):
    from vidtool.data.clips import ClipDataset

    item = ClipDataset(shapes_dir / "manifest.jsonl", frames=7, size=16)[0]
    video = item["video"]
    assert video.shape == (7, 16, 16, 3)
    assert all(torch.equal(video[t], video[3]) for t in range(4, 7))
    assert not torch.equal(video[0], video[3])


def test_clip_dataset_resamples_a_png_folder_from_its_record_fps(tmp_path):
    from vidtool.data.clips import ClipDataset

    folder = tmp_path / "clip"
    folder.mkdir()
    from PIL import Image

    for t in range(8):
        Image.fromarray(np.full((8, 8, 3), 10 * t, np.uint8)).save(folder / f"{t:04d}.png")
    write_manifest(tmp_path / "m.jsonl", [{"path": "clip", "caption": "x", "fps": 8}])
    video = ClipDataset(tmp_path / "m.jsonl", frames=4, fps=4)[0]["video"]
    assert video[:, 0, 0, 0].tolist() == [0, 20, 40, 60]


def test_collate_clips_stacks_model_ready_batches(shapes_dir):
    from vidtool.data.clips import ClipDataset, collate_clips

    data = ClipDataset(shapes_dir / "manifest.jsonl", frames=4)
    loader = torch.utils.data.DataLoader(data, batch_size=3, collate_fn=collate_clips)
    batch = next(iter(loader))
    assert batch["video"].shape == (3, 3, 4, 32, 32) and batch["video"].dtype == torch.float32
    assert batch["video"].min() >= -1 and batch["video"].max() <= 1
    assert batch["caption"] == [r["caption"] for r in read_manifest(shapes_dir / "manifest.jsonl")[:3]]
    assert batch["index"].tolist() == [0, 1, 2] and batch["index"].dtype == torch.long


def test_collate_clips_keeps_integer_labels_as_a_tensor():
    from vidtool.data.clips import collate_clips

    video = torch.zeros(2, 4, 4, 3, dtype=torch.uint8)
    items = [{"video": video, "caption": "c", "index": i, "label": i * 2} for i in range(2)]
    assert collate_clips(items)["label"].tolist() == [0, 2]
