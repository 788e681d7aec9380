import math
import subprocess
import sys

import ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from vidtool.errors import UserError
from vidtool.video import (
    contact_sheet,
    frames_from_model,
    frames_to_model,
    psnr,
    read_video,
    write_mp4s,
    write_video,
)


def smooth_video(t=16, h=64, w=64):
    """A moving colour gradient, a soft red blob moving right, and a faint travelling ripple."""
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    frames = []
    for k in range(t):
        frame = np.stack([60 + 1.5 * x + 2 * k, 70 + 1.2 * y, 180 - 0.6 * (x + y) + k], axis=-1)
        blob = np.exp(-((x - w / 4 - 2 * k) ** 2 + (y - h / 2) ** 2) / (2 * 6.0**2))[..., None]
        frame = frame * (1 - blob) + blob * np.array([220.0, 90.0, 70.0])
        frames.append(frame + 4 * np.sin(x / 3 + y / 5 + k / 2)[..., None])
    return np.clip(np.stack(frames).round(), 0, 255).astype(np.uint8)


def distinct_frames(t, h=8, w=8):
    """Frames that differ from each other by a brightness step, so none are merged or confused."""
    ramp = np.linspace(0, 100, w, dtype=np.float64)[None, None, :, None]
    levels = (np.arange(t) * (150 // t))[:, None, None, None]
    return np.broadcast_to(ramp + levels, (t, h, w, 3)).astype(np.uint8)


def test_mp4_round_trip_keeps_fps_frame_count_and_40db_at_default_quality(tmp_path):
    frames = smooth_video()
    write_video(tmp_path / "clip.mp4", frames, fps=12)
    video = read_video(tmp_path / "clip.mp4")
    assert video.frames.shape == frames.shape
    assert video.fps == 12
    assert psnr(video.frames, frames) >= 40


def test_gif_round_trip_keeps_frame_count_and_fps_to_the_centisecond(tmp_path):
    frames = distinct_frames(6)
    write_video(tmp_path / "clip.gif", frames, fps=12)
    video = read_video(tmp_path / "clip.gif")
    assert video.frames.shape == frames.shape
    # GIF delays are whole centiseconds: 1/12 s is stored as 8 cs
    assert video.fps == pytest.approx(100 / round(100 / 12))


def test_png_folder_reads_back_losslessly_in_natural_order(tmp_path):
    frames = distinct_frames(12)
    for i, frame in enumerate(frames, start=1):
        Image.fromarray(frame).save(tmp_path / f"frame{i}.png")  # frame10 sorts after frame9
    video = read_video(tmp_path)
    np.testing.assert_array_equal(video.frames, frames)
    assert video.fps == 8


def test_reading_at_half_the_native_fps_takes_every_other_frame(tmp_path):
    write_video(tmp_path / "clip.mp4", smooth_video(t=16, h=32, w=32), fps=16)
    every = read_video(tmp_path / "clip.mp4")
    half = read_video(tmp_path / "clip.mp4", fps=8)
    assert half.fps == 8
    np.testing.assert_array_equal(half.frames, every.frames[::2])


def test_max_frames_and_start_select_a_window(tmp_path):
    frames = distinct_frames(12)
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(tmp_path / f"{i:03d}.png")
    video = read_video(tmp_path, fps=4, start=1.0, max_frames=3)
    np.testing.assert_array_equal(video.frames, frames[4:7])


@pytest.mark.parametrize(
    "size, shape", [(24, (24, 24)), ((20, 40), (20, 40)), ((48, 16), (48, 16))]
)
def test_resize_and_centre_crop_give_the_requested_shape(tmp_path, size, shape):
    write_video(tmp_path / "clip.mp4", smooth_video(t=2, h=48, w=64), fps=8)
    assert read_video(tmp_path / "clip.mp4", size=size).frames.shape == (2, *shape, 3)


def test_centre_crop_keeps_the_middle(tmp_path):
    # 48 x 96 with red, green, green, blue quarters: the 48 x 48 centre crop is all green
    frame = np.zeros((48, 96, 3), np.uint8)
    frame[:, :24, 0], frame[:, 24:72, 1], frame[:, 72:, 2] = 255, 255, 255
    Image.fromarray(frame).save(tmp_path / "0.png")
    cropped = read_video(tmp_path, size=48).frames[0]
    np.testing.assert_array_equal(cropped, frame[:, 24:72])


def test_odd_sized_frames_write_to_mp4_with_the_last_row_and_column_repeated(tmp_path):
    frames = smooth_video(t=4, h=33, w=47)
    write_video(tmp_path / "odd.mp4", frames, fps=8)
    padded = np.pad(frames, ((0, 0), (0, 1), (0, 1), (0, 0)), mode="edge")
    write_video(tmp_path / "even.mp4", padded, fps=8)
    odd = read_video(tmp_path / "odd.mp4").frames
    assert odd.shape == (4, 34, 48, 3)
    np.testing.assert_array_equal(odd, read_video(tmp_path / "even.mp4").frames)


@pytest.mark.parametrize("width", [8, 24, 48, 64])
def test_mp4_reads_the_same_pixels_as_ffmpeg_at_widths_decord_row_pads(tmp_path, width):
    # decord and the ffmpeg CLI convert yuv420p to RGB with the same swscale defaults, so they
    # agree exactly; at 8, 24 and 48 px decord sees padded rows and must cut the padding off
    write_video(tmp_path / "narrow.mp4", smooth_video(t=3, h=16, w=width), fps=8)
    raw, _ = (
        ffmpeg.input(str(tmp_path / "narrow.mp4"))
        .output("pipe:", format="rawvideo", pix_fmt="rgb24")
        .run(capture_stdout=True, quiet=True)
    )
    expected = np.frombuffer(raw, np.uint8).reshape(3, 16, width, 3)
    np.testing.assert_array_equal(read_video(tmp_path / "narrow.mp4").frames, expected)


def truncated_mp4(folder):
    write_video(folder / "whole.mp4", smooth_video(t=8, h=32, w=32), fps=8)
    data = (folder / "whole.mp4").read_bytes()
    (folder / "cut.mp4").write_bytes(data[: int(len(data) * 0.3)])
    return folder / "cut.mp4"


def text_named_mp4(folder):
    (folder / "notes.mp4").write_text("not a video\n")
    return folder / "notes.mp4"


def empty_folder(folder):
    (folder / "frames").mkdir()
    return folder / "frames"


def unknown_extension(folder):
    (folder / "clip.xyz").write_bytes(b"\0" * 16)
    return folder / "clip.xyz"


@pytest.mark.parametrize(
    "make_input, phrase",
    [
        (truncated_mp4, "cannot decode video"),
        (text_named_mp4, "cannot decode video"),
        (lambda folder: folder / "missing.mp4", "no such file"),
        (empty_folder, "no PNG/JPG frames"),
        (unknown_extension, "unknown video type"),
    ],
    ids=["truncated-mp4", "text-named-mp4", "missing", "empty-folder", "unknown-extension"],
)
def test_unreadable_input_raises_a_one_line_user_error(tmp_path, make_input, phrase):
    with pytest.raises(UserError) as caught:
        read_video(make_input(tmp_path))
    assert phrase in str(caught.value)
    assert "\n" not in str(caught.value)


def test_failed_mp4_write_is_a_one_line_user_error_and_leaves_no_file(tmp_path):
    with pytest.raises(UserError, match="invalid preset") as caught:
        write_video(tmp_path / "clip.mp4", distinct_frames(2), fps=8, preset="no-such-preset")
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_write_mp4s_writes_each_clip_from_its_own_frames_in_one_call(tmp_path):
    # The largest clip is not first: an output left unmapped would get ffmpeg's pick, the largest.
    clips = [smooth_video(8, 48, 64), smooth_video(8, 64, 80), smooth_video(8, 63, 65)]
    items = [(tmp_path / f"{k}.mp4", frames) for k, frames in enumerate(clips)]
    write_mp4s(items, fps=12)
    for path, frames in items:
        video = read_video(path)
        t, h, w, _ = frames.shape
        assert video.frames.shape == (t, h + h % 2, w + w % 2, 3)  # odd sides gain one edge copy
        assert video.fps == 12
        assert psnr(video.frames[:, :h, :w], frames) >= 40


def test_failed_write_mp4s_leaves_none_of_its_files(tmp_path):
    items = [(tmp_path / f"{k}.mp4", distinct_frames(2)) for k in range(3)]
    with pytest.raises(UserError, match="invalid preset") as caught:
        write_mp4s(items, fps=8, preset="no-such-preset")
    assert "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_start_past_the_end_is_a_user_error(tmp_path):
    Image.fromarray(distinct_frames(1)[0]).save(tmp_path / "0.png")
    with pytest.raises(UserError, match="no frames"):
        read_video(tmp_path, start=1.0)


def test_contact_sheet_shape_follows_the_grid_formula(tmp_path):
    t, h, w, pad = 7, 10, 12, 2
    columns = math.ceil(math.sqrt(t))
    rows = math.ceil(t / columns)
    sheet = contact_sheet(distinct_frames(t, h, w), pad=pad)
    assert sheet.shape == (rows * (h + pad) + pad, columns * (w + pad) + pad, 3)
    assert (sheet[-(h + pad):, -(w + pad):] == 255).all()  # the two unused cells are white

    write_video(tmp_path / "sheet.png", distinct_frames(t, h, w), fps=8)
    np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "sheet.png")), sheet)


def test_model_conversion_inverts_exactly_on_every_uint8_value():
    video = torch.arange(256, dtype=torch.uint8).reshape(1, 2, 4, 32, 1).repeat(2, 1, 1, 1, 3)
    x = frames_to_model(video)
    assert x.shape == (2, 3, 2, 4, 32) and x.dtype == torch.float32
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(frames_from_model(x), video)
    assert torch.equal(frames_from_model(frames_to_model(video[0].numpy())), video[0])


def test_psnr_matches_its_closed_form():
    zeros = np.zeros((2, 4, 4, 3), np.uint8)
    assert psnr(zeros, zeros + 1) == pytest.approx(20 * math.log10(255))  # MSE = 1
    assert psnr(zeros, zeros) == 100.0


def test_importing_video_does_not_import_torch_or_decord():
    code = "import sys, vidtool.video; print('torch' in sys.modules, 'decord' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
