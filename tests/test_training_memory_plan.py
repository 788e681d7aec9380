"""The meta-device measurement of a training step (vidtool.train.step_memory, behind
benchmarks/memory_plan.py) against closed forms: a chain of MLP blocks whose saved tensors can be
listed by hand, with and without activation checkpointing, in fp32 and under bf16 autocast; and
attention, which CUDA runs without keeping the L x L weights when its inputs are 4-D."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from vidtool.train import parallel
from vidtool.train.step_memory import measure_step

B, D, N = 8, 64, 3  # batch, width, blocks


class Chain(nn.Module):
    """N blocks Linear(D, 4D) -> GELU -> Linear(4D, D), then loss = mean(y²)."""

    def __init__(self):
        super().__init__()
        self.blocks = nn.ModuleList(nn.Sequential(nn.Linear(D, 4 * D), nn.GELU(), nn.Linear(4 * D, D))
                                    for _ in range(N))

    def training_losses(self, batch, *, step, total_steps):
        x = batch["x"]
        for block in self.blocks:
            x = block(x)
        return {"loss": x.pow(2).mean()}


def chain() -> Chain:
    with torch.device("meta"):
        return Chain()


def test_fp32_step_saves_what_the_chain_rule_needs():
    # Per block: the first Linear keeps its input (D), GELU its input (4D), the second Linear its
    # input (4D); pow keeps the last output (D). Block i's input is block i-1's output, so the
    # distinct tensors are x, then 4D + 4D + D per block: D(1 + 9N) floats per sample. Weights are
    # saved as they are, which costs nothing.
    memory = measure_step(chain(), {"x": torch.empty(B, D, device="meta")}, dtype=None, ema=False)
    assert memory.activations == 4 * B * D * (1 + 9 * N)
    assert memory.weight_copies == 0


def test_checkpointing_keeps_block_inputs_plus_one_block():
    # With checkpointing: the N block inputs and the last output (pow's), plus one block's own 8D
    # during its recomputation.
    model = chain()
    memory = measure_step(model, {"x": torch.empty(B, D, device="meta")}, dtype=None, ema=False)
    assert memory.blocks == N == len(parallel.blocks(model))
    assert memory.checkpointed == 4 * B * D * ((N + 1) + 8)
    assert memory.per_block == [4 * B * 8 * D] * N


def test_bf16_autocast_saves_bf16_activations_and_weight_copies():
    # Autocast casts x to a bf16 copy for the first Linear, which saves only that copy: x needs no
    # gradient, so its weight is not kept. Every other Linear saves its bf16 input and a bf16 copy
    # of its weight (2 B x 4D² each: 2N - 1 of them); GELU its bf16 input; pow (an fp32 op) an fp32
    # copy of the last output. The fp32 batch counts as it is.
    memory = measure_step(chain(), {"x": torch.empty(B, D, device="meta")}, ema=False)
    copies = 2 * 4 * D * D * (2 * N - 1)
    assert memory.weight_copies == copies
    assert memory.activations == (4 * B * D + 2 * B * D + N * 2 * B * 8 * D + (N - 1) * 2 * B * D + 4 * B * D
                                  + copies)
    # Checkpointed: x, the bf16 block inputs, pow's fp32 copy, and the largest block: one past the
    # first, with 8D of bf16 activations and two weight copies.
    assert memory.checkpointed == 4 * B * D + (N - 1) * 2 * B * D + 4 * B * D + 2 * B * 8 * D + 2 * 2 * 4 * D * D


def test_state_counts_fp32_master_weights_gradients_adamw_and_ema():
    model = chain()
    model.blocks[0].requires_grad_(False)
    per_block = D * 4 * D + 4 * D + 4 * D * D + D
    memory = measure_step(model, {"x": torch.empty(B, D, device="meta")})
    assert (memory.parameters, memory.trainable) == (N * per_block, (N - 1) * per_block)
    assert memory.state == 4 * N * per_block + (4 + 8 + 4) * (N - 1) * per_block


class Attention(nn.Module):
    heads, length = 4, 256

    def __init__(self, four_d: bool):
        super().__init__()
        self.four_d = four_d
        self.qkv = nn.Linear(D, 3 * D, bias=False)

    def training_losses(self, batch, *, step, total_steps):
        q, k, v = self.qkv(batch["x"]).chunk(3, dim=-1)
        if self.four_d:
            q, k, v = (rearrange(t, "b l (h d) -> b h l d", h=self.heads) for t in (q, k, v))
        else:
            q, k, v = (rearrange(t, "b l (h d) -> (b h) l d", h=self.heads) for t in (q, k, v))
        return {"loss": F.scaled_dot_product_attention(q, k, v).sum()}


def attention_step(four_d: bool):
    with torch.device("meta"):
        model = Attention(four_d)
    return measure_step(model, {"x": torch.empty(B, Attention.length, D, device="meta")}, ema=False)


def test_4d_attention_is_measured_as_the_memory_efficient_kernel():
    # Saved: the fp32 batch, its bf16 copy (the projection's input), the bf16 q/k/v (one storage),
    # the bf16 output, a float log-sum-exp per query and head, and the kernel's two int64 RNG scalars.
    # No L x L matrix.
    tokens = B * Attention.length
    memory = attention_step(four_d=True)
    assert memory.activations == (4 * tokens * D + 2 * tokens * D + 2 * tokens * 3 * D + 2 * tokens * D
                                  + 4 * tokens * Attention.heads + 2 * 8)


def test_3d_attention_keeps_the_math_path_and_its_weights():
    # CUDA's fused kernels take 4-D inputs only; 3-D attention runs the math path, which keeps the
    # softmax weights (fp32) of every head.
    weights = 4 * B * Attention.heads * Attention.length ** 2
    assert attention_step(four_d=False).activations > weights > attention_step(four_d=True).activations


def test_fsdp_shards_the_state_but_not_the_activations():
    # Every parameter of the chain sits in a block: per rank, a quarter of the state, the
    # checkpointed activations less autocast's weight copies (FSDP computes in gathered bf16
    # weights instead) and two blocks' gathered bf16 weights.
    memory = measure_step(chain(), {"x": torch.empty(B, D, device="meta")})
    block = D * 4 * D + 4 * D + 4 * D * D + D
    activations = 4 * B * D + (N - 1) * 2 * B * D + 4 * B * D + 2 * B * 8 * D
    assert memory.root_parameters == memory.unsharded == 0
    assert memory.fsdp_per_gpu(4) == memory.state // 4 + activations + 2 * 2 * block
