"""CLIPSIM with a tiny random CLIP saved as a local transformers folder, tokenizer built offline."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidtool.metrics.clipsim import CLIP_MEAN, CLIP_STD, CLIPScorer, cosine, preprocess_frames

IMAGE_SIZE = 32


@pytest.fixture(scope="module")
def clip_dir(tmp_path_factory):
    from tiny_clip import save_tiny_clip

    return save_tiny_clip(tmp_path_factory.mktemp("clip"), image_size=IMAGE_SIZE)


def test_preprocessing_resizes_the_short_side_crops_the_centre_and_normalises():
    frame = np.zeros((1, IMAGE_SIZE, 2 * IMAGE_SIZE, 3), np.uint8)
    frame[:, :, IMAGE_SIZE:] = 255  # left half black, right half white; the short side is already 32
    pixels = preprocess_frames(frame, IMAGE_SIZE)
    assert pixels.shape == (1, 3, IMAGE_SIZE, IMAGE_SIZE)
    mean, std = torch.tensor(CLIP_MEAN), torch.tensor(CLIP_STD)
    # the centre crop keeps columns 16..47: black in its left half, white in its right half
    torch.testing.assert_close(pixels[0, :, 10, 4], (0 - mean) / std)
    torch.testing.assert_close(pixels[0, :, 10, -4], (1 - mean) / std)
    flat = np.full((1, 48, 40, 3), 51, np.uint8)  # a flat frame stays flat through resize and crop
    torch.testing.assert_close(preprocess_frames(flat, IMAGE_SIZE)[0, :, 5, 5], (0.2 - mean) / std)


def test_frame_scores_are_cosines_of_the_models_image_and_text_embeddings(clip_dir):
    scorer = CLIPScorer(str(clip_dir))
    frames = np.random.default_rng(0).integers(0, 256, (3, 40, 48, 3), dtype=np.uint8)
    frames[2] = frames[0]
    scores = scorer.frame_scores(frames, "a red circle moving left")
    model = scorer.model
    with torch.no_grad():
        ids = scorer.tokenizer(["a red circle moving left"], return_tensors="pt")
        text = model.get_text_features(input_ids=ids["input_ids"], attention_mask=ids["attention_mask"])
        image = model.get_image_features(pixel_values=preprocess_frames(frames, IMAGE_SIZE))
    text = text if isinstance(text, torch.Tensor) else text.pooler_output
    image = image if isinstance(image, torch.Tensor) else image.pooler_output
    expected = torch.nn.functional.cosine_similarity(image.double(), text.double(), dim=-1).numpy()
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    assert scores[0] == scores[2] and np.all(np.abs(scores) <= 1)


def test_cosine_of_parallel_and_opposite_embeddings():
    images = torch.tensor([[1.0, 2.0], [-2.0, -4.0]])
    np.testing.assert_allclose(cosine(images, torch.tensor([[3.0, 6.0]])).numpy(), [1.0, -1.0])


def test_the_stage_reports_clipsim_per_video_mean_and_the_x100_option(clip_dir, tmp_path):
    from stages.cli import main
    from vidtool.tensorfile import TensorFile, save

    video = torch.from_numpy(np.random.default_rng(1).integers(0, 256, (2, 4, 32, 32, 3), dtype=np.uint8))
    tf = TensorFile(kind="video", tensors={"video": video}, fps=8.0)
    tf.set_prompts(["a red circle moving left", "a blue square moving up"])
    save(tf, tmp_path / "gen.safetensors")
    main(["evaluate", str(tmp_path / "gen.safetensors"), "--metric", "clipsim", "--clip", str(clip_dir),
          "--clip-x100", "-o", str(tmp_path / "r.json")])
    entry = json.loads((tmp_path / "r.json").read_text())["metrics"]["clipsim"]
    scorer = CLIPScorer(str(clip_dir))
    expected = np.mean([scorer.frame_scores(video[i].numpy(), p).mean() for i, p in enumerate(tf.prompts())])
    assert entry["value"] == pytest.approx(100 * expected, rel=1e-6)
    assert entry["samples"] == {"generated": 2} and entry["resolution"] == [32, 32] and entry["frames"] == 4
    assert entry["models"]["clip"]["sha256"] and entry["unit"] == "x100 cosine"
