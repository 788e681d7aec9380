"""The shapes probe against the renderer's ground truth, on noise, and on prompts that do not match."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from vidtool.data.shapes import COLORS, DIRECTIONS, SHAPES, combinations, render_shape_clip, sample_shape_clip
from vidtool.metrics.shapes_probe import hits, parse_prompt, prompt_target, read_clip

CLIPS = 200
NOISE_CLIPS = 100


@pytest.fixture(scope="module")
def rendered():
    combos = combinations()
    clips = [sample_shape_clip(0, i, combos) for i in range(CLIPS)]
    readings = [read_clip(render_shape_clip(c, frames=16, size=64).video) for c in clips]
    return clips, readings


def binomial_upper(p: float, n: int, sigmas: float = 4.0) -> float:
    return p + sigmas * math.sqrt(p * (1 - p) / n)


def test_probe_agrees_with_ground_truth_on_200_shapes_clips(rendered):
    clips, readings = rendered
    color = np.mean([r.color == c.color for c, r in zip(clips, readings)])
    direction = np.mean([r.direction == c.direction for c, r in zip(clips, readings)])
    shape = np.mean([r.shape == c.shape for c, r in zip(clips, readings)])
    assert color >= 0.98 and direction >= 0.98, (color, direction)
    assert shape >= 0.95, shape
    # the same through the prompt path the stage uses: captions parsed with the grammar
    scored = hits(np.stack([r.as_indices() for r in readings]), np.stack([prompt_target(c.caption) for c in clips]))
    assert scored[:, 0].mean() == color and scored[:, 2].mean() == direction
    # colour-and-direction (the alignment goal) lies between "all" and either part
    assert np.array_equal(scored[:, 3], scored[:, 0] & scored[:, 2]) and (scored[:, 4] <= scored[:, 3]).all()


def test_probe_reads_every_prompt_of_the_24_prompt_alignment_set():
    prompts = list(itertools.product(("red", "blue"), SHAPES, DIRECTIONS))
    correct = 0
    for seed, combo in itertools.product(range(2), prompts):
        clip = sample_shape_clip(seed, 0, [combo])
        reading = read_clip(render_shape_clip(clip, frames=16, size=64).video)
        correct += (reading.color, reading.shape, reading.direction) == combo
    assert correct / (2 * len(prompts)) >= 0.98


def test_probe_is_at_chance_on_noise_videos():
    rng = np.random.default_rng(0)
    readings = np.stack([read_clip(rng.integers(0, 256, (16, 64, 64, 3), dtype=np.uint8)).as_indices()
                         for _ in range(NOISE_CLIPS)])
    alignment_set = list(itertools.product(("red", "blue"), SHAPES, DIRECTIONS))
    targets = np.stack([prompt_target("a {} {} moving {}".format(*alignment_set[i % 24])) for i in range(NOISE_CLIPS)])
    rates = hits(readings, targets).mean(axis=0)
    # guessing would hit the colour 1/8 and the direction 1/4 of the time; the probe must do no better
    assert rates[0] <= binomial_upper(1 / len(COLORS), NOISE_CLIPS)
    assert rates[2] <= binomial_upper(1 / len(DIRECTIONS), NOISE_CLIPS)


def test_probe_is_at_chance_when_prompts_belong_to_other_clips(rendered):
    clips, readings = rendered
    shuffled = [clips[(i + 1) % CLIPS].caption for i in range(CLIPS)]
    rates = hits(np.stack([r.as_indices() for r in readings]), np.stack([prompt_target(p) for p in shuffled])).mean(0)
    # expected agreement of two independent draws: Σ_k P(video shows k)·P(prompt asks k)
    for column, attribute, names in ((0, "color", list(COLORS)), (2, "direction", list(DIRECTIONS))):
        shown = np.array([[getattr(c, attribute) == k for k in names] for c in clips]).mean(0)
        chance = float(shown @ shown)
        assert rates[column] <= binomial_upper(chance, CLIPS), (attribute, rates[column], chance)


def test_prompt_parsing_follows_the_caption_grammar():
    assert parse_prompt("a blue triangle moving up quickly on a red background") == ("blue", "triangle", "up")
    assert parse_prompt("A Red circle moving left") == ("red", "circle", "left")
    assert parse_prompt("a purple circle moving left") is None and parse_prompt(None) is None
    assert prompt_target("a dog running").tolist() == [-1, -1, -1]
