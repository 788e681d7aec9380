"""The VQ's remedies for codebook collapse (vidtool.nn.quantizers.VectorQuantizer, used by
movq-temporal): data and k-means initialisation, dead-code restarts, their determinism, their
agreement across DDP ranks and their survival of a resume."""

from __future__ import annotations

import os
import socket
from dataclasses import replace

import pytest
import torch
from safetensors.torch import load_file, save_file
from toy_videos import ToyClips, collate

from vidtool.autoencoders.movq_temporal import MoVQTemporal, MoVQTemporalConfig
from vidtool.nn.quantizers import VectorQuantizer
from vidtool.train.config import TrainConfig
from vidtool.train.loop import train

# A test-sized MoVQ (x4 spatial: ToyClips' 8x8 frames -> 2x2 latents) with the remedies on.
TINY = MoVQTemporalConfig(channels=8, channel_multipliers=(1, 2, 2), layers_per_block=1, norm_groups=4,
                          latent_channels=4, codebook_size=16, codebook_init="kmeans", dead_code_steps=1)
TRAIN = {"steps": 4, "batch_size": 2, "lr": 1e-3, "device": "cpu", "seed": 0, "log_every": 1, "checkpoint_every": 2}


def training_forward(quantizer: VectorQuantizer, flat: torch.Tensor):
    """One training-mode pass over latent vectors [N, dim] (as a [1, dim, N] grid)."""
    return quantizer.train()(flat.T[None])


def test_default_quantizer_keeps_the_codebook_as_its_whole_state_and_never_moves_it_outside_gradients():
    # The bundled movq-tiny and mbq-vae weights hold the codebook alone and were trained this way.
    quantizer = VectorQuantizer(8, 2)
    before = quantizer.codebook.detach().clone()
    training_forward(quantizer, torch.randn(64, 2))
    assert list(quantizer.state_dict()) == ["codebook"]
    assert list(MoVQTemporal(replace(TINY, codebook_init="normal", dead_code_steps=0)).quantizer.state_dict()) == ["codebook"]
    assert torch.equal(quantizer.codebook, before)


def test_codes_that_can_never_be_nearest_are_restarted_onto_encoder_outputs_and_then_used():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(8, 2, dead_code_steps=3)
    with torch.no_grad():
        quantizer.codebook[4:] = 1e3  # far from every latent vector: never the nearest code
    data = torch.randn(64, 2)
    optimizer = torch.optim.SGD(quantizer.parameters(), lr=0.1)
    for _ in range(4):  # three batches unused mark the far codes dead; the fourth restarts them
        out = training_forward(quantizer, data)
        optimizer.zero_grad()
        out.losses["codebook"].backward()
        optimizer.step()
    assert quantizer.codebook[4:].abs().max() < 10
    # A restarted code sits on a latent vector, so it is that vector's nearest code at once.
    assert set(training_forward(quantizer, data).indices.unique().tolist()) == set(range(8))
    assert quantizer.steps_unused.max() == 0


def test_data_initialisation_puts_every_code_on_a_latent_vector_of_the_first_batch():
    torch.manual_seed(0)
    quantizer = VectorQuantizer(8, 3, init="data")
    data = torch.randn(32, 3) * 0.01 + 4
    training_forward(quantizer, data)
    assert (quantizer.codebook[:, None] == data[None]).all(-1).any(1).all()
    assert len({tuple(code.tolist()) for code in quantizer.codebook}) == 8  # distinct rows: enough to draw from
    codebook = quantizer.codebook.detach().clone()
    training_forward(quantizer, data + 1)  # only the first training batch initialises
    assert torch.equal(quantizer.codebook, codebook)


def test_kmeans_initialisation_puts_codes_at_the_centres_of_the_data_clusters():
    torch.manual_seed(0)
    centres = torch.tensor([[5.0, 0.0], [-5.0, 0.0]])
    data = torch.cat([centre + 0.1 * torch.randn(100, 2) for centre in centres])
    quantizer = VectorQuantizer(2, 2, init="kmeans")
    training_forward(quantizer, data)
    # Two well-separated clusters, two codes: Lloyd's fixed point is the pair of cluster means.
    means = torch.stack([data[:100].mean(0), data[100:].mean(0)])
    codes = quantizer.codebook.detach()
    codes = codes[codes[:, 0].argsort(descending=True)]
    torch.testing.assert_close(codes, means)


def test_eval_mode_and_a_frozen_codebook_leave_the_codes_alone():
    # Encoding (eval) and the video stage (codebook frozen, model in train mode) must not move codes.
    data = torch.randn(32, 2)
    for quantizer in (VectorQuantizer(8, 2, init="kmeans", dead_code_steps=1).eval(),
                      VectorQuantizer(8, 2, init="kmeans", dead_code_steps=1).requires_grad_(False).train()):
        before = quantizer.codebook.detach().clone()
        quantizer(data.T[None])
        quantizer(data.T[None])
        assert torch.equal(quantizer.codebook, before)
        assert not quantizer.initialised and quantizer.steps_unused.max() == 0


def _restarted_codebook(seed: int) -> torch.Tensor:
    torch.manual_seed(0)
    quantizer = VectorQuantizer(16, 2, init="data", dead_code_steps=1)
    data = torch.randn(64, 2)
    torch.manual_seed(seed)  # the trainer seeds torch per batch from the run's seed
    for _ in range(3):
        training_forward(quantizer, data)
    return quantizer.codebook.detach().clone()


def test_initialisation_and_restarts_are_a_function_of_the_seed():
    assert torch.equal(_restarted_codebook(1), _restarted_codebook(1))
    assert not torch.equal(_restarted_codebook(1), _restarted_codebook(2))


def test_resumed_run_continues_the_usage_counters_and_ends_where_an_uninterrupted_one_does(tmp_path):
    def run(out, **config):
        torch.manual_seed(0)
        model = MoVQTemporal(TINY)
        train(model, ToyClips(8), collate, TrainConfig(**{**TRAIN, **config}), out, progress=False)
        return model

    straight = run(tmp_path / "straight")
    half = run(tmp_path / "halves", stop_at=2)
    assert half.quantizer.initialised and half.quantizer.steps_unused.any()  # counters to carry over
    resumed = run(tmp_path / "halves", resume=True)
    assert straight.state_dict().keys() == resumed.state_dict().keys()
    for name, tensor in straight.state_dict().items():
        assert torch.equal(tensor, resumed.state_dict()[name]), name
    saved = load_file(tmp_path / "halves" / "model.safetensors")  # the model folder carries them too
    assert torch.equal(saved["quantizer.steps_unused"], resumed.quantizer.steps_unused)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_worker(rank: int, port: int, root: str) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    try:
        torch.manual_seed(rank)  # different initial weights: the trainer starts every rank from rank 0's
        model = MoVQTemporal(TINY)
        # Each rank quantizes its own clips, so each draws its own initial and restarted codes.
        train(model, ToyClips(8), collate, TrainConfig(**TRAIN), f"{root}/run", progress=False)
        save_file(model.state_dict(), f"{root}/rank{rank}.safetensors")
    finally:
        dist.destroy_process_group()


@pytest.mark.slow  # two fresh torch processes: ~20 s on a shared 2-core machine
def test_two_ddp_ranks_initialise_and_restart_the_same_codes(tmp_path):
    torch.multiprocessing.spawn(_rank_worker, args=(_free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [load_file(tmp_path / f"rank{rank}.safetensors") for rank in range(2)]
    assert ranks[0].keys() == ranks[1].keys()
    for name in ranks[0]:
        assert torch.equal(ranks[0][name], ranks[1][name]), name
    assert ranks[0]["quantizer.initialised"]


def test_fsdp_sharding_is_refused_since_codebook_rewrites_would_miss_the_sharded_weights(tmp_path):
    import torch.distributed as dist
    from torch.distributed.fsdp import fully_shard

    from vidtool.errors import UserError

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/rendezvous", rank=0, world_size=1)
    try:
        model = MoVQTemporal(TINY)
        fully_shard(model.encoder)
        with pytest.raises(UserError, match="--strategy ddp"):
            model.training_losses(collate([ToyClips(2)[i] for i in range(2)]), step=0, total_steps=1)
    finally:
        dist.destroy_process_group()
