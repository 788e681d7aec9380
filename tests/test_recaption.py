"""`vidtool recaption` through the real transformers code path, with tiny random models built here.

The models are untrained, so their captions are noise: these tests check what the stage does with
them (prompting, batching, the manifest it writes, sharding, resuming), not caption quality.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from vidtool import video
from vidtool.data.manifest import read_manifest, resolve, write_manifest
from vidtool.recaption import PAPER_PROMPT, Captioner, CaptionInput

WORDS = "a the red blue circle square moving left right up down video of slowly on background detail".split()
SPECIAL = ["<unk>", "<pad>", "<s>", "</s>", "<image>", "<video>"]
CHAT = ("{% for m in messages %}{{ m['role'].upper() }}: {% if m['content'] is string %}{{ m['content'] }}"
        "{% else %}{% for c in m['content'] %}{% if c['type'] == 'image' %}<image> {% elif c['type'] == 'video' %}"
        "<video> {% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %} {% endfor %}"
        "{% if add_generation_prompt %}ASSISTANT:{% endif %}")


def _tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIAL + ["USER:", "ASSISTANT:"] + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    backend.decoder = decoders.WordPiece(prefix="##")
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", extra_special_tokens={"image_token": "<image>", "video_token": "<video>"})


def _llama(tok, **kw):
    from transformers import LlamaConfig

    return LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                       num_key_value_heads=2, max_position_embeddings=1024, pad_token_id=tok.pad_token_id,
                       bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, **kw)


def _vision():
    from transformers import CLIPVisionConfig

    return CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4,
                            image_size=32, patch_size=8, projection_dim=32)


def _image_processor():
    from transformers import CLIPImageProcessor

    return CLIPImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})


@pytest.fixture(scope="module")
def llava(tmp_path_factory):
    """A tiny random LLaVA (image VLM) with its processor, saved as a local folder."""
    from transformers import LlavaConfig, LlavaForConditionalGeneration, LlavaProcessor

    tok = _tokenizer()
    torch.manual_seed(0)
    model = LlavaForConditionalGeneration(LlavaConfig(vision_config=_vision(), text_config=_llama(tok),
                                                      image_token_id=tok.convert_tokens_to_ids("<image>")))
    folder = tmp_path_factory.mktemp("models") / "llava"
    model.save_pretrained(folder)
    LlavaProcessor(image_processor=_image_processor(), tokenizer=tok, patch_size=8, vision_feature_select_strategy="default",
                   chat_template=CHAT, num_additional_image_tokens=1).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def llm(tmp_path_factory):
    """A tiny random Llama causal LM with a tokenizer but no chat template (the plain-prompt path)."""
    from transformers import LlamaForCausalLM

    tok = _tokenizer()
    torch.manual_seed(1)
    folder = tmp_path_factory.mktemp("models") / "llm"
    LlamaForCausalLM(_llama(tok)).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture
def clips(tmp_path):
    root = tmp_path / "data"
    (root / "clips").mkdir(parents=True)
    records = []
    for i in range(5):
        frames = np.random.default_rng(i).integers(0, 256, (6, 40, 48, 3), dtype=np.uint8)
        video.write_video(root / f"clips/{i}.mp4", frames, 8)
        records.append({"path": f"clips/{i}.mp4", "caption": f"a red circle moving {['left', 'right', 'up', 'down', 'up'][i]}",
                        "fps": 8, "mask": f"clips/{i}.npz"})
    (root / "clips/bad.mp4").write_bytes(b"broken")
    records.insert(2, {"path": "clips/bad.mp4", "caption": "a broken clip"})
    write_manifest(root / "manifest.jsonl", records)
    return root / "manifest.jsonl"


def test_image_vlm_recaptions_every_readable_clip_and_keeps_the_original(stage, llava, clips, tmp_path):
    out = tmp_path / "out" / "recaptioned.jsonl"
    assert stage("recaption", clips, "-o", out, "--model", llava, "--frames", "2", "--batch", "2", "--max-new-tokens", "5") == 0
    records = read_manifest(out)
    originals = [r for r in read_manifest(clips) if r["path"] != "clips/bad.mp4"]
    assert [r["caption_original"] for r in records] == [r["caption"] for r in originals]
    for record, original in zip(records, originals):
        assert isinstance(record["caption"], str) and record["caption"]
        assert len(record["caption"].split()) <= 5  # each generated token decodes to at most one word here
        # Paths now lead from the output's folder to the same files.
        assert resolve(out, record["path"]) == clips.parent / original["path"]
        assert resolve(out, record["mask"]) == clips.parent / original["mask"]
    errors = read_manifest(out.with_name("recaptioned.errors.jsonl"))
    assert [e["path"] for e in errors] == [str(clips.parent / "clips/bad.mp4")] and "bad.mp4" in errors[0]["error"]
    settings = json.loads(out.with_name("recaptioned.stats.json").read_text())["setup"]["settings"]
    assert settings["prompt"] == PAPER_PROMPT and settings["mode"] == "image" and settings["max_new_tokens"] == 5


def test_the_default_prompt_is_the_papers_inside_the_chat_template(llava):
    captioner = Captioner(llava, frames=2, max_new_tokens=3)
    assert captioner.mode == "image"
    prompt = captioner._chat(captioner.prompt_text("ignored"))
    assert prompt == "USER: <image> <image> " + PAPER_PROMPT + " ASSISTANT:"
    assert PAPER_PROMPT.startswith("Explain in detail about the given video with:")
    assert PAPER_PROMPT.count("\n- ") == 5


def test_captions_do_not_depend_on_the_batch(llava):
    captioner = Captioner(llava, frames=2, max_new_tokens=4)
    frames = [np.random.default_rng(i).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8) for i in range(3)]
    inputs = [CaptionInput(None, f) for f in frames]
    together = captioner.caption(inputs)
    assert together == [captioner.caption([one])[0] for one in inputs]


def test_sharded_recaption_merged_equals_one_run_and_a_rerun_does_nothing(stage, llava, clips, tmp_path, capsys):
    args = ["recaption", clips, "--model", llava, "--frames", "2", "--max-new-tokens", "4", "--batch", "1"]
    assert stage(*args, "-o", tmp_path / "one.jsonl") == 0
    for i in range(3):
        assert stage(*args, "-o", tmp_path / "parts", "--shard", f"{i}/3") == 0
    assert stage("merge-shards", tmp_path / "parts", "-o", tmp_path / "merged.jsonl") == 0
    for suffix in (".jsonl", ".errors.jsonl"):
        assert (tmp_path / f"merged{suffix}").read_text() == (tmp_path / f"one{suffix}").read_text()
    capsys.readouterr()
    assert stage(*args, "-o", tmp_path / "one.jsonl") == 0


def test_text_mode_expands_the_caption_with_a_language_model(stage, llm, clips, tmp_path):
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Describe a video of {caption} in detail")
    out = tmp_path / "longer.jsonl"
    assert stage("recaption", clips, "-o", out, "--model", llm, "--prompt-file", prompt, "--max-new-tokens", "6") == 0
    records = read_manifest(out)
    # Text mode never opens the clips, so the broken one is captioned too.
    assert len(records) == 6 and not out.with_name("longer.errors.jsonl").exists()
    assert [r["caption_original"] for r in records] == [r["caption"] for r in read_manifest(clips)]
    captioner = Captioner(llm, mode="text", prompt=prompt.read_text())
    assert captioner._chat(captioner.prompt_text("a red circle")) == "Describe a video of a red circle in detail"


def test_a_vision_mode_for_a_text_model_exits_2(stage, llm, clips, tmp_path, capsys):
    assert stage("recaption", clips, "-o", tmp_path / "x.jsonl", "--model", llm, "--mode", "image") == 2
    assert "text-only model" in capsys.readouterr().err


def test_video_vlm_sees_the_clip_as_one_video(stage, tmp_path, clips):
    pytest.importorskip("torchvision", reason="transformers' video processors need torchvision")
    from transformers import (LlavaNextImageProcessor, LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration,
                              LlavaNextVideoProcessor, LlavaNextVideoVideoProcessor)

    tok = _tokenizer()
    torch.manual_seed(2)
    config = LlavaNextVideoConfig(vision_config=_vision(), text_config=_llama(tok), image_token_id=tok.convert_tokens_to_ids("<image>"),
                                  video_token_id=tok.convert_tokens_to_ids("<video>"), image_grid_pinpoints=[[32, 32]])
    folder = tmp_path / "llava-next-video"
    LlavaNextVideoForConditionalGeneration(config).save_pretrained(folder)
    video_processor = LlavaNextVideoVideoProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    image_processor = LlavaNextImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32},
                                              image_grid_pinpoints=[[32, 32]])
    LlavaNextVideoProcessor(video_processor=video_processor, image_processor=image_processor, tokenizer=tok, patch_size=8,
                            vision_feature_select_strategy="default", chat_template=CHAT).save_pretrained(folder)
    captioner = Captioner(folder, frames=4, max_new_tokens=3)
    assert captioner.mode == "video"
    frames = np.random.default_rng(0).integers(0, 256, (4, 40, 48, 3), dtype=np.uint8)
    texts = captioner.caption([CaptionInput(None, frames), CaptionInput(None, frames[::-1].copy())])
    assert len(texts) == 2 and all(isinstance(t, str) for t in texts)
    out = tmp_path / "recaptioned.jsonl"
    assert stage("recaption", clips, "-o", out, "--model", folder, "--frames", "4", "--max-new-tokens", "3") == 0
    assert len(read_manifest(out)) == 5 and json.loads(out.with_name("recaptioned.stats.json").read_text())["errors"] == 1


def test_recaption_decodes_a_large_clip_at_the_models_input_size(stage, llava, tmp_path, monkeypatch):
    """The tiny LLaVA's processor resizes to 32 px: a 2000×2000 clip is decoded at 64, not whole."""
    from large_clip import large_clip, record_decodes

    large_clip(tmp_path / "big.mp4", frames=4)
    write_manifest(tmp_path / "manifest.jsonl", [{"path": "big.mp4", "caption": "a test pattern"}])
    assert Captioner(llava, frames=2, max_new_tokens=2).input_side == 32
    opened = record_decodes(monkeypatch)
    assert stage("recaption", tmp_path / "manifest.jsonl", "--model", llava, "--frames", "2", "--max-new-tokens", "2",
                 "-o", tmp_path / "out.jsonl") == 0
    assert len((tmp_path / "out.jsonl").read_text().splitlines()) == 1
    assert opened and all(max(shape) <= 64 for shape in opened), opened
