"""Token sets keep every codebook id (a 2^16 LFQ codebook's ids do not fit int16), and a set whose
ids fall outside its codebook is refused in one line instead of crashing the embedding lookup."""

from __future__ import annotations

import pytest
import torch

from vidtool import tensorfile
from vidtool.autoencoders.apply import encode_frames
from vidtool.autoencoders.tiling import default_tiling
from vidtool.checkpoint import from_pretrained
from vidtool.data.make import make_dataset
from vidtool.data.manifest import read_manifest
from vidtool.data.tokens import TokenDataset, build_token_set
from vidtool.errors import UserError
from vidtool.model_store import bundled
from vidtool.video import read_video


@pytest.fixture(scope="module")
def token_set(tmp_path_factory):
    root = tmp_path_factory.mktemp("token-ids")
    make_dataset("shapes", root / "data", 3, frames=4, size=32, seed=0)
    out = build_token_set([root / "data" / "manifest.jsonl"], bundled("mbq-vae-tiny"), root / "set.safetensors",
                          frames=4, size=32, batch_size=2)
    return root, out


def test_ids_of_a_65536_code_tokenizer_are_stored_exactly(token_set):
    root, path = token_set
    model = from_pretrained(bundled("mbq-vae-tiny")).eval()
    assert model.codebook_size == 2**16
    data = TokenDataset(path)
    records = read_manifest(root / "data" / "manifest.jsonl")
    direct = torch.cat([encode_frames(model, read_video(root / "data" / r["path"]).frames[None], default_tiling(model),
                                      "cpu").tokens for r in records])
    stored = torch.stack([data[i]["tokens"] for i in range(len(data))])
    assert torch.equal(stored, direct)
    assert int(direct.max()) >= 2**15  # ids past int16's range occur, and survive


def test_a_token_set_with_ids_outside_its_codebook_is_refused(token_set, tmp_path):
    _, path = token_set
    tf = tensorfile.load(path)
    tokens = tf.tensors["tokens"].clone()
    tokens.view(-1)[0] = -5  # what int16 storage made of an id past 32,767
    tf.tensors["tokens"] = tokens
    bad = tmp_path / "bad.safetensors"
    tensorfile.save(tf, bad)
    with pytest.raises(UserError, match=r"'tokens' holds ids from -5 to .*outside the codebook of 65536; delete it"):
        TokenDataset(bad)


def test_int32_ids_are_part_of_the_kept_batches_settings(tmp_path, monkeypatch):
    """Batches kept by an interrupted build that stored a 2^16 codebook's ids as int16 (wrapped past
    32,767) are not resumed: the int32 build's settings differ. An int16 set's settings are as before."""
    from vidtool.data import latents

    seen = {}

    def stop(kind, manifests, folder, **values):
        seen[folder.name] = values
        raise RuntimeError("settings seen")

    monkeypatch.setattr(latents, "build_settings", stop)
    for name in ("mbq-vae-tiny", "mbq-vae-tiny-v1"):
        with pytest.raises(RuntimeError, match="settings seen"):
            build_token_set([tmp_path / "manifest.jsonl"], bundled(name), tmp_path / "set.safetensors", frames=4, size=32)
    assert seen["mbq-vae-tiny"]["ids"] == "int32" and "ids" not in seen["mbq-vae-tiny-v1"]
