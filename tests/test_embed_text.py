"""`vidtool embed-text` and the text-embedding cache: the same numbers as the encoder, sharded runs
that join by folder, and training and sampling that take the cache and never load an encoder."""

from __future__ import annotations

import pytest
import torch

from vidtool import tensorfile, text
from vidtool.errors import UserError
from vidtool.text import TextEncoder
from vidtool.text_cache import EmbeddingCache, text_encoder_or_cache

PROMPTS = ["a red circle moving right", "a blue square moving up", "a red circle moving right"]


@pytest.fixture(scope="module")
def encoder():
    return TextEncoder()


@pytest.fixture
def prompt_file(tmp_path):
    path = tmp_path / "prompts.txt"
    path.write_text("\n".join(PROMPTS) + "\n\n")
    return path


def test_embed_text_writes_each_distinct_prompt_once_with_the_encoders_numbers(vidtool, prompt_file, tmp_path, encoder):
    out = tmp_path / "cache.safetensors"
    result = vidtool("embed-text", prompt_file, "-o", out)
    assert result.returncode == 0, result.stderr.decode()
    tf = tensorfile.load(out, kinds=["embeddings"])
    assert tf.prompts() == ["", PROMPTS[0], PROMPTS[1]]  # the empty prompt for guidance, then first-seen order
    assert tf["embeddings"].dtype == torch.float16 and tuple(tf["embeddings"].shape) == (3, 32, 384)
    assert tf["text_mask"].dtype == torch.bool and tf.params["text_encoder"] == "all-MiniLM-L6-v2"
    direct = encoder.encode(tf.prompts())
    assert torch.equal(tf["embeddings"], direct.tokens.half()) and torch.equal(tf["text_mask"], direct.mask)
    cached = EmbeddingCache(out).encode([PROMPTS[1], PROMPTS[0]])
    assert torch.equal(cached.tokens, direct.tokens[[2, 1]].half().float())
    torch.testing.assert_close(cached.pooled, direct.pooled[[2, 1]], atol=2e-3, rtol=0)  # fp16 storage


def _embed_text(sources, out, shard=None):
    from stages.embed_text import embed_text

    embed_text(sources=list(sources), out=out, text_encoder=None, max_length=32, batch_size=64, shard=shard)


def test_sharded_embed_text_joins_as_a_folder_and_skips_finished_shards(prompt_file, tmp_path, monkeypatch):
    folder = tmp_path / "cache"
    for index in (0, 1):
        _embed_text([prompt_file], folder, shard=f"{index}/2")
    shards = sorted(folder.iterdir())
    assert [p.name for p in shards] == ["embed-text-shard-00000-of-00002.safetensors",
                                        "embed-text-shard-00001-of-00002.safetensors"]
    _embed_text([prompt_file], tmp_path / "whole.safetensors")
    joined, single = EmbeddingCache(folder), EmbeddingCache(tmp_path / "whole.safetensors")
    assert joined.rows.keys() == single.rows.keys()
    # The same prompts, encoded in batches of other sizes: equal up to the CPU kernels' rounding,
    # which depends on the batch size on some processors, then to float16 storage (one ulp).
    for prompt in joined.rows:
        torch.testing.assert_close(joined.rows[prompt][0], single.rows[prompt][0], rtol=1e-3, atol=1e-3)
    # SLURM array task 1 of 2 is the second shard, already there: it is not written again.
    written = shards[1].stat().st_mtime_ns
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    monkeypatch.setattr(text.TextEncoder, "__init__", lambda *a, **k: pytest.fail("a finished shard was redone"))
    _embed_text([prompt_file], folder)
    assert shards[1].stat().st_mtime_ns == written


def test_a_prompt_missing_from_the_cache_is_a_user_error(prompt_file, tmp_path):
    out = tmp_path / "cache.safetensors"
    _embed_text([prompt_file], out)
    with pytest.raises(UserError, match="not in the text cache"):
        EmbeddingCache(out).encode(["a green triangle moving left"])


def test_generate_with_the_cache_never_loads_an_encoder_and_matches_it(prompt_file, tmp_path, monkeypatch):
    from stages.sample_prompts import sample
    from vidtool.model_store import default_model
    from vidtool.text_cache import embed

    torch.set_num_threads(1)
    cache = tmp_path / "cache.safetensors"
    tensorfile.save(embed(["", *PROMPTS[:2]], TextEncoder()), cache)
    folder = default_model("generate")
    args = dict(seed=0, steps=2, options={"frames": 2}, batch_size=8)
    sample(PROMPTS[:2], folder, str(tmp_path / "encoder.safetensors"), text_encoder=None, **args)

    def no_encoder(*a, **k):
        raise AssertionError("a text encoder was loaded")

    monkeypatch.setattr(text.TextEncoder, "__init__", no_encoder)
    sample(PROMPTS[:2], folder, str(tmp_path / "cache-out.safetensors"), text_encoder=None, embeddings=cache, **args)
    with_encoder = tensorfile.load(tmp_path / "encoder.safetensors")
    with_cache = tensorfile.load(tmp_path / "cache-out.safetensors")
    assert with_cache.prompts() == PROMPTS[:2]
    # The cache holds fp16 tokens (as latent sets do); relative rounding 2**-11 moves the samples little.
    torch.testing.assert_close(with_cache.main, with_encoder.main, atol=0.05, rtol=0)


def test_latent_set_built_from_the_cache_equals_one_built_with_the_encoder(tmp_path, monkeypatch):
    from vidtool.data.latents import build_latent_set
    from vidtool.data.make import make_dataset
    from vidtool.data.manifest import read_manifest
    from vidtool.model_store import default_model
    from vidtool.text_cache import embed, unique_prompts

    torch.set_num_threads(1)
    make_dataset("shapes", tmp_path / "shapes", 3, frames=4, size=32, fps=8, seed=1)
    manifest = tmp_path / "shapes" / "manifest.jsonl"
    captions = [r["caption"] for r in read_manifest(manifest)]
    cache = tmp_path / "captions.safetensors"
    tensorfile.save(embed(unique_prompts(captions), TextEncoder()), cache)
    vae = default_model("encode")
    build_latent_set([manifest], vae, tmp_path / "encoder-set.safetensors", frames=4, size=32)
    monkeypatch.setattr(text.TextEncoder, "__init__", lambda *a, **k: pytest.fail("a text encoder was loaded"))
    build_latent_set([manifest], vae, tmp_path / "cache-set.safetensors", frames=4, size=32, text_cache=cache)
    a, b = (tensorfile.load(tmp_path / f"{n}-set.safetensors") for n in ("encoder", "cache"))
    for name in ("text", "text_mask", "null_text", "null_mask", "latents"):
        assert torch.equal(a[name], b[name]), name
    assert a.params["text_encoder"] == b.params["text_encoder"] == "all-MiniLM-L6-v2"


def test_a_cache_path_given_as_the_text_encoder_is_read_as_the_cache(tmp_path):
    from vidtool.text_cache import embed

    cache = tmp_path / "c.safetensors"
    tensorfile.save(embed(["", "x"], TextEncoder()), cache)
    assert isinstance(text_encoder_or_cache(None, cache), EmbeddingCache)
    with pytest.raises(UserError, match="not both"):
        text_encoder_or_cache(cache, tmp_path)
