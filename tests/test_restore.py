"""Text detection by a model (`score --text-detector`) and `vidtool restore` (MotionAura App. C.3:
watermark removal by inpainting, super-resolution) on built footage, with tiny random OWL-ViT, Swin2SR
and Stable Diffusion inpainting models saved as their libraries save them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import curation_footage as footage
from test_bring_your_own_weights import TEXT_DIM, clip_text_config, clip_tokenizer
from tiny_clip import save_clip_tokenizer
from vidtool.data.manifest import read_manifest, resolve
from vidtool.video import read_video, write_video

# The caption rows of curation_footage.caption (baselines at y=30 and y=110, letters ~12 px high):
# rows 45-90 are at least 15 px from any letter.
CLEAR_ROWS = slice(45, 90)


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    root = tmp_path_factory.mktemp("restore")
    write_video(root / "text.mp4", footage.caption(footage.pan(footage.PHOTOS[7], 24)), footage.FPS)
    write_video(root / "good.mp4", footage.pan(footage.PHOTOS[4], 24), footage.FPS)
    write_video(root / "short.mp4", footage.caption(footage.pan(footage.PHOTOS[7], 6)), footage.FPS)
    (root / "m.jsonl").write_text('{"path": "text.mp4", "caption": "a pan"}\n{"path": "good.mp4"}\n')
    (root / "short.jsonl").write_text('{"path": "short.mp4"}\n')
    return root


def save_tiny_owl(folder, *, shift: float | None = None, v2: bool = False, boxes: list[float] | None = None):
    """A tiny random OWL-ViT (OWLv2 with `v2`) and its processor. With `shift`, every query's logit is
    cosine + shift, so each box's probability lies in [sigmoid(shift-1), sigmoid(shift+1)], and every
    box is as large as the image (its size logits raised by 10 over the patch-size bias), so together
    they cover it; `boxes` replaces those raised logits (centre x, y, width, height) for every box."""
    import transformers

    prefix = "Owlv2" if v2 else "OwlViT"
    tokenizer = save_clip_tokenizer(folder)
    vocab = tokenizer.get_vocab()
    end = vocab["<|endoftext|>"]
    text = dict(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                max_position_embeddings=16, bos_token_id=vocab["<|startoftext|>"], eos_token_id=end, pad_token_id=end)
    vision = dict(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                  intermediate_size=37)
    torch.manual_seed(0)
    config = getattr(transformers, f"{prefix}Config")(text_config=text, vision_config=vision, projection_dim=32)
    model = getattr(transformers, f"{prefix}ForObjectDetection")(config)
    if shift is not None:
        with torch.no_grad():
            for layer in (model.box_head.dense2, model.class_head.logit_shift, model.class_head.logit_scale):
                layer.weight.zero_()
                layer.bias.zero_()  # logit_scale: elu(0) + 1 = 1
            model.class_head.logit_shift.bias.fill_(shift)
            model.box_head.dense2.bias.copy_(torch.tensor(boxes or [0.0, 0.0, 10.0, 10.0]))
    model.save_pretrained(folder)
    square = {"height": 32, "width": 32}
    images = getattr(transformers, f"{prefix}ImageProcessor")(size=square, crop_size=square)
    getattr(transformers, f"{prefix}Processor")(image_processor=images, tokenizer=tokenizer).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def owl_everywhere(tmp_path_factory):
    """Every box probability between sigmoid(2) = 0.88 and sigmoid(4) = 0.98; the boxes tile the frame."""
    return save_tiny_owl(tmp_path_factory.mktemp("owl"), shift=3.0)


@pytest.fixture(scope="module")
def swin(tmp_path_factory):
    from transformers import Swin2SRConfig, Swin2SRForImageSuperResolution, Swin2SRImageProcessor

    folder = tmp_path_factory.mktemp("swin2sr")
    torch.manual_seed(0)
    Swin2SRForImageSuperResolution(Swin2SRConfig(image_size=32, embed_dim=8, depths=[1], num_heads=[1], window_size=4,
                                                 upscale=2)).save_pretrained(folder)
    Swin2SRImageProcessor().save_pretrained(folder)
    return folder


def tiny_sd_inpainting(folder):
    """A Stable Diffusion inpainting pipeline folder as diffusers writes it: its U-Net takes 9 channels
    (noisy latents, mask, masked-image latents)."""
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
    from transformers import CLIPTextModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(sample_size=16, in_channels=9, out_channels=4, block_out_channels=(32, 64),
                                down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                                up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), layers_per_block=1,
                                cross_attention_dim=TEXT_DIM, attention_head_dim=4, norm_num_groups=8)
    vae = AutoencoderKL(block_out_channels=(16, 16), down_block_types=("DownEncoderBlock2D",) * 2,
                        up_block_types=("UpDecoderBlock2D",) * 2, latent_channels=4, norm_num_groups=8, sample_size=32)
    tokenizer = clip_tokenizer(folder / "tokenizer")
    tokenizer.model_max_length = 77  # CLIP's context, which the pipeline pads prompts to
    pipe = StableDiffusionInpaintPipeline(vae=vae, text_encoder=CLIPTextModel(clip_text_config(len(tokenizer))),
                                          tokenizer=tokenizer, unet=unet, scheduler=DDIMScheduler(steps_offset=1), safety_checker=None,
                                          feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(folder)
    return folder


def test_score_text_detector_area_is_the_share_under_the_models_boxes_over_the_threshold(clips, owl_everywhere, stage):
    from vidtool.curation.text_detect import TextDetector

    frames = read_video(clips / "good.mp4").frames[:3]
    assert TextDetector(owl_everywhere, threshold=0.5).area(frames) == 1.0
    assert TextDetector(owl_everywhere, threshold=0.99).area(frames) == 0.0  # no probability reaches 0.99

    for threshold, expected in (("0.5", 1.0), ("0.99", 0.0)):
        out = clips / f"owl-{threshold}.jsonl"
        assert stage("score", clips / "m.jsonl", "-o", out, "--text-detector", owl_everywhere,
                     "--text-threshold", threshold) == 0
        assert [r["text_area"] for r in read_manifest(out)] == [expected, expected]
    # Without the model, the classical detector: text only on the captioned clip.
    assert stage("score", clips / "m.jsonl", "-o", clips / "classical.jsonl") == 0
    text, good = read_manifest(clips / "classical.jsonl")
    assert text["text_area"] > 0.02 and good["text_area"] == 0.0


def test_owlv2_boxes_are_fractions_of_the_padded_square(tmp_path, monkeypatch):
    """OWLv2's processor pads a frame to a square at the bottom and right, so its boxes are fractions
    of that square: a box over the square's top-left quarter covers half of a 64x128 frame."""
    from transformers import Owlv2ForObjectDetection

    from vidtool.curation.text_detect import TextDetector

    # No grid bias: every box is the same, centre (0.25, 0.25) and size 0.5 of the square (logit(0.25) = -ln 3).
    monkeypatch.setattr(Owlv2ForObjectDetection, "compute_box_bias", lambda self, h, w: torch.zeros(h * w, 4))
    (tmp_path / "owlv2").mkdir()
    folder = save_tiny_owl(tmp_path / "owlv2", shift=3.0, v2=True, boxes=[-np.log(3), -np.log(3), 0.0, 0.0])
    frames = np.full((2, 64, 128, 3), 128, dtype=np.uint8)
    assert TextDetector(folder, threshold=0.5).area(frames) == pytest.approx(0.5)


def test_remove_text_drops_the_text_area_and_keeps_the_rest_of_the_frame(clips, stage):
    out = clips / "restored"
    assert stage("restore", clips / "m.jsonl", "-o", out, "--remove-text") == 0
    text, good = read_manifest(out / "manifest.jsonl")
    assert text["caption"] == "a pan" and text["text_removed"]["detector"] == "classical"
    assert text["text_removed"]["inpainter"] == "opencv-telea" and text["text_removed"]["mask_area"] > 0.05
    assert good["text_removed"]["mask_area"] == 0.0
    assert resolve(out / "manifest.jsonl", text["restored_from"]) == (clips / "text.mp4").resolve()

    assert stage("score", clips / "m.jsonl", "-o", clips / "before.jsonl") == 0
    assert stage("score", out / "manifest.jsonl", "-o", clips / "after.jsonl") == 0
    before, after = read_manifest(clips / "before.jsonl"), read_manifest(clips / "after.jsonl")
    assert before[0]["text_area"] > 0.1 and after[0]["text_area"] < 0.005

    source, restored = read_video(clips / "text.mp4"), read_video(resolve(out / "manifest.jsonl", text["path"]))
    assert len(restored.frames) == len(source.frames) == text["frames"] and restored.fps == source.fps == text["fps"]
    change = np.abs(restored.frames.astype(int) - source.frames.astype(int)).mean(axis=(0, 3))
    assert change[CLEAR_ROWS].mean() < 3  # re-encoding noise only
    assert change[20:35].mean() > 15  # the first caption line was painted over
    clean = read_video(resolve(out / "manifest.jsonl", good["path"])).frames
    assert np.abs(clean.astype(int) - read_video(clips / "good.mp4").frames.astype(int)).mean() < 3


def test_remove_text_masks_the_detection_models_boxes(clips, owl_everywhere, stage):
    out = clips / "restored-owl"
    assert stage("restore", clips / "short.jsonl", "-o", out, "--remove-text", "--text-detector", owl_everywhere,
                 "--text-threshold", "0.99", "--dilate", "0") == 0
    assert read_manifest(out / "manifest.jsonl")[0]["text_removed"]["mask_area"] == 0.0
    assert stage("restore", clips / "short.jsonl", "-o", out, "--remove-text", "--text-detector", owl_everywhere,
                 "--text-threshold", "0.5", "--dilate", "0") == 0
    record = read_manifest(out / "manifest.jsonl")[0]
    assert record["text_removed"]["mask_area"] == 1.0 and record["text_removed"]["detector"].startswith("owlvit:")


def test_upscale_model_doubles_height_and_width_with_the_models_own_output(clips, swin, stage):
    from transformers import Swin2SRForImageSuperResolution

    out = clips / "upscaled"
    assert stage("restore", clips / "short.jsonl", "-o", out, "--upscale-model", swin, "--scale", "2") == 0
    record = read_manifest(out / "manifest.jsonl")[0]
    assert (record["height"], record["width"], record["frames"]) == (256, 256, 6)
    assert record["upscaled"]["scale"] == 2 and "text_removed" not in record
    big = read_video(resolve(out / "manifest.jsonl", record["path"]))
    assert big.frames.shape == (6, 256, 256, 3) and big.fps == footage.FPS

    # Frame 0 is Swin2SR's reconstruction of the input frame (values in [0, 1]), not a resize of it.
    small = read_video(clips / "short.mp4").frames[0]
    model = Swin2SRForImageSuperResolution.from_pretrained(swin).eval()
    with torch.no_grad():
        expected = model(pixel_values=torch.from_numpy(small).permute(2, 0, 1)[None].float() / 255).reconstruction
    expected = (expected[0].clamp(0, 1) * 255).permute(1, 2, 0).numpy()
    import cv2

    resized = cv2.resize(small, (256, 256), interpolation=cv2.INTER_CUBIC).astype(float)
    assert np.abs(big.frames[0] - expected).mean() < 4 < np.abs(expected - resized).mean()


def test_diffusion_inpainting_repaints_only_the_mask(clips, tmp_path, stage):
    sd = tiny_sd_inpainting(tmp_path / "sd-inpaint")
    out = tmp_path / "painted"
    assert stage("restore", clips / "short.jsonl", "-o", out, "--remove-text", "--inpaint-model", sd,
                 "--inpaint-steps", "2") == 0
    record = read_manifest(out / "manifest.jsonl")[0]
    assert record["text_removed"]["inpainter"].startswith("StableDiffusionInpaintPipeline:")
    source, painted = read_video(clips / "short.mp4").frames, read_video(resolve(out / "manifest.jsonl", record["path"])).frames
    change = np.abs(painted.astype(int) - source.astype(int)).mean(axis=(0, 3))
    assert len(painted) == len(source) and change[CLEAR_ROWS].mean() < 3 and change[20:35].mean() > 15


def test_a_killed_restore_shard_reruns_only_the_missing_clips(clips, stage, monkeypatch, tmp_path):
    for name in ("a", "b", "c", "d"):
        (tmp_path / f"{name}.mp4").write_bytes((clips / "short.mp4").read_bytes())
    (tmp_path / "m.jsonl").write_text("".join(f'{{"path": "{name}.mp4"}}\n' for name in "abcd"))
    out = tmp_path / "parts"
    assert stage("restore", tmp_path / "m.jsonl", "--shard", "1/2", "-o", out, "--remove-text") == 0
    stem = "restore-shard-00001-of-00002"
    complete = (out / f"{stem}.jsonl").read_text()
    journal = out / f".{stem}.journal.jsonl"
    header, *entries = journal.read_text().splitlines()
    assert [json.loads(e)["key"] for e in entries] == ["c", "d"]
    journal.write_text("\n".join([header, entries[0], entries[1][:25]]))  # killed while writing d's entry
    for suffix in (".jsonl", ".stats.json"):
        (out / f"{stem}{suffix}").unlink()

    import vidtool.curation.restore as restore

    done, real = [], restore.restore_clip
    monkeypatch.setattr(restore, "restore_clip", lambda source, *a, **k: done.append(source.name) or real(source, *a, **k))
    assert stage("restore", tmp_path / "m.jsonl", "--shard", "1/2", "-o", out, "--remove-text") == 0
    assert done == ["d.mp4"] and (out / f"{stem}.jsonl").read_text() == complete
    assert stage("restore", tmp_path / "m.jsonl", "--shard", "0/2", "-o", out, "--remove-text") == 0
    assert stage("merge-shards", out) == 0
    assert [r["path"] for r in read_manifest(out / "manifest.jsonl")] == [f"clips/{n}.mp4" for n in "abcd"]


@pytest.mark.parametrize("args, message", [
    (["restore", "{m}", "-o", "{out}"], "nothing to do"),
    (["restore", "{m}", "-o", "{out}", "--text-detector", "{owl}"], "add --remove-text"),
    (["restore", "{m}", "-o", "{out}", "--scale", "2"], "plain resizing is not super-resolution"),
    (["restore", "{missing}", "-o", "{out}", "--remove-text"], "no such file"),
    (["restore", "{m}", "-o", "{out}", "--remove-text", "--text-detector", "{swin}"], "OWL-ViT or OWLv2"),
    (["restore", "{m}", "-o", "{out}", "--remove-text", "--inpaint-model", "{swin}"], "StableDiffusionInpaintPipeline"),
    (["restore", "{m}", "-o", "{out}", "--upscale-model", "{owl}"], "a transformers owlvit folder"),
    (["restore", "{m}", "-o", "{out}", "--upscale-model", "{swin}", "--scale", "4"], "upscales by 2"),
    (["score", "{m}", "-o", "{out}.jsonl", "--text-detector", "{swin}"], "a transformers swin2sr folder"),
])
def test_bad_restore_input_is_one_line_and_exit_2(clips, owl_everywhere, swin, tmp_path, capsys, args, message):
    from stage_runner import run_stage

    fill = {"m": clips / "m.jsonl", "out": tmp_path / "out", "missing": tmp_path / "nope.jsonl", "owl": owl_everywhere,
            "swin": swin}
    capsys.readouterr()
    assert run_stage(*[a.format(**fill) for a in args]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.jsonl").exists()


def test_a_clip_is_restored_chunk_by_chunk_as_it_would_be_whole(tmp_path, monkeypatch):
    """A clip longer than a chunk is read, restored and written CHUNK_FRAMES frames at a time (its
    length does not bound memory), and the result is what restoring it whole gives."""
    from vidtool import video as video_module
    from vidtool.curation import restore

    monkeypatch.setattr(restore, "CHUNK_FRAMES", 10)
    source = tmp_path / "long.mp4"
    write_video(source, footage.caption(footage.pan(footage.PHOTOS[7], 27)), footage.FPS)
    reads, real = [], video_module.read_frames
    monkeypatch.setattr(video_module, "read_frames", lambda path, pick, **kw: reads.append(
        len(out := real(path, pick, **kw).frames)) or video_module.Video(out, footage.FPS))
    options = restore.RestoreOptions(remove_text=True)
    record = restore.restore_clip(source, tmp_path / "chunked.mp4", options)
    assert record["frames"] == 27 and max(reads) <= 10 and sum(reads) == 27 + restore.MASK_FRAMES

    # Whole: the same classical mask (from the same spread frames) and the same per-frame inpainting.
    frames = real(source, lambda count: np.arange(count)).frames
    masks = restore.grow(np.broadcast_to(restore.classical_mask(frames, options.size), frames.shape[:3]), options.dilate)
    painter = restore.TeleaInpainter()
    whole = np.stack([painter(f, m) if m.any() else f for f, m in zip(frames, masks)])
    assert record["text_removed"]["mask_area"] == round(float(masks.mean()), 4) > 0.05
    write_video(tmp_path / "whole.mp4", whole, footage.FPS, crf=options.crf)
    assert np.array_equal(read_video(tmp_path / "chunked.mp4").frames, read_video(tmp_path / "whole.mp4").frames)


def test_chunks_of_another_frame_size_are_refused_and_leave_no_temp_files(tmp_path):
    """write_mp4s' chunks must share one frame size, compared before the odd side is padded (a 7-wide
    chunk after an 8-wide one is not the same size), and a refused or failing chunk stream leaves
    nothing beside the output."""
    from vidtool.video import write_mp4s

    def chunks(second):
        yield np.zeros((2, 8, 8, 3), np.uint8)
        yield np.zeros((2, *second, 3), np.uint8)

    for second in ((8, 7), (6, 8)):
        with pytest.raises(ValueError, match="after frames of 8x8"):
            write_mp4s([(tmp_path / "out.mp4", chunks(second))], 8)
    assert list(tmp_path.iterdir()) == []
    write_mp4s([(tmp_path / "out.mp4", chunks((8, 8)))], 8)
    assert read_video(tmp_path / "out.mp4").frames.shape == (4, 8, 8, 3)


def test_a_gif_is_decoded_once_and_restored_in_chunks(tmp_path, monkeypatch):
    """A GIF has no index to seek by: it is read whole once, not once per chunk."""
    from vidtool import video as video_module
    from vidtool.curation import restore

    monkeypatch.setattr(restore, "CHUNK_FRAMES", 4)
    source = tmp_path / "clip.gif"
    write_video(source, footage.pan(footage.PHOTOS[4], 10), footage.FPS)
    reads, real = [], video_module.read_frames
    monkeypatch.setattr(video_module, "read_frames", lambda path, pick, **kw: reads.append(path) or real(path, pick, **kw))
    record = restore.restore_clip(source, tmp_path / "out.mp4", restore.RestoreOptions(remove_text=False))
    assert record["frames"] == 10 == len(read_video(tmp_path / "out.mp4").frames)
    assert len(reads) == 1
