"""Packed rows without a (T × T) mask: ``thresher.kernels.varlen_attention`` equals the dense block-diagonal
mask on fresh random example lengths (outputs and gradients, float64, grouped-query heads), inside a real
model, and through a training run; generation with a padding mask falls back to SDPA unchanged."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from thresher.kernels import varlen_attention
from thresher.kernels.varlen_attention import packed_attention
from thresher.train.config import load_config
from thresher.train.packing import block_causal_mask


def _random_pack(rng: random.Random, rows: int, total: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """position_ids (rows, total) of random example lengths (right padding where they stop short), the dense
    additive mask, and which positions are real tokens."""
    positions = torch.zeros(rows, total, dtype=torch.long)
    masks, real = [], torch.zeros(rows, total, dtype=torch.bool)
    for r in range(rows):
        lens: list[int] = []
        while sum(lens) < total - 3 and rng.random() < 0.9:
            lens.append(min(rng.choice([1, 2, 3, rng.randint(1, total)]), total - sum(lens)))
        lens = lens or [total]
        positions[r, : sum(lens)] = torch.cat([torch.arange(n) for n in lens])
        real[r, : sum(lens)] = True
        masks.append(block_causal_mask(lens, total, torch.float64))
    return positions, torch.stack(masks)[:, None], real


@pytest.fixture
def rng() -> random.Random:
    seed = int(os.environ.get("THRESHER_TEST_SEED") or random.SystemRandom().randrange(2**31))  # printed; set it to replay
    print(f"seed {seed}")
    torch.manual_seed(seed)
    return random.Random(seed)


@pytest.mark.parametrize("heads", [(4, 4), (6, 2)])
def test_packed_attention_equals_the_dense_mask(rng: random.Random, heads: tuple[int, int]) -> None:
    hq, hkv = heads
    rows, total, dim = 2, rng.randint(20, 70), 8
    positions, mask, real = _random_pack(rng, rows, total)
    q = torch.randn(rows, hq, total, dim, dtype=torch.float64, requires_grad=True)
    k, v = (torch.randn(rows, hkv, total, dim, dtype=torch.float64, requires_grad=True) for _ in range(2))
    rep = hq // hkv
    dense = F.scaled_dot_product_attention(q, k.repeat_interleave(rep, 1), v.repeat_interleave(rep, 1), attn_mask=mask).transpose(1, 2)
    packed = packed_attention(q, k, v, positions)
    assert packed.shape == dense.shape
    torch.testing.assert_close(packed[real], dense[real], rtol=1e-10, atol=1e-10)
    weights = torch.randn_like(packed) * real[..., None, None]  # padding carries no loss
    for a, b in zip(
        torch.autograd.grad((packed * weights).sum(), [q, k, v]), torch.autograd.grad((dense * weights).sum(), [q, k, v]), strict=True
    ):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    # negative control: one example per row (attention across the examples) is not the same
    whole = torch.arange(total).expand(rows, total)
    if any(int((positions[r][real[r]] == 0).sum()) >= 2 for r in range(rows)):  # some row packs two examples or more
        assert not torch.allclose(packed_attention(q, k, v, whole)[real], dense[real], atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (the GPU kit runs it)")
def test_packed_attention_on_cuda_in_bf16(rng: random.Random) -> None:
    """On CUDA the buckets go through SDPA's flash kernel in bf16: equal to the float64 dense mask within bf16's rounding."""
    rows, total, hq, hkv, dim = 2, 1000, 14, 2, 64
    positions, mask, real = _random_pack(rng, rows, total)
    q = torch.randn(rows, hq, total, dim, dtype=torch.float64)
    k, v = (torch.randn(rows, hkv, total, dim, dtype=torch.float64) for _ in range(2))
    dense = F.scaled_dot_product_attention(q, k.repeat_interleave(7, 1), v.repeat_interleave(7, 1), attn_mask=mask).transpose(1, 2)
    packed = packed_attention(*(x.cuda().bfloat16() for x in (q, k, v)), positions.cuda()).double().cpu()
    error = float((packed[real] - dense[real]).norm() / dense[real].norm())
    assert error < 1e-2, error


def _tiny_qwen(attention: str) -> torch.nn.Module:
    import transformers

    torch.manual_seed(0)
    config = transformers.Qwen2Config(
        vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
    )
    if attention == "varlen":
        attention = varlen_attention.register()
    return transformers.Qwen2ForCausalLM._from_config(config, attn_implementation=attention).double()


def test_a_model_with_varlen_attention_equals_the_dense_mask() -> None:
    lens = [7, 1, 12, 5]
    total = sum(lens) + 3
    ids = torch.randint(0, 97, (1, total))
    positions = torch.zeros(1, total, dtype=torch.long)
    positions[0, : sum(lens)] = torch.cat([torch.arange(n) for n in lens])
    dense_model, packed_model = _tiny_qwen("sdpa"), _tiny_qwen("varlen")
    packed_model.load_state_dict(dense_model.state_dict())
    mask = block_causal_mask(lens, total, torch.float64)[None, None]
    dense = dense_model(input_ids=ids, position_ids=positions, attention_mask=mask).logits[0, : sum(lens)]
    packed = packed_model(input_ids=ids, position_ids=positions).logits[0, : sum(lens)]
    torch.testing.assert_close(packed, dense, rtol=1e-9, atol=1e-9)
    (g_dense,) = torch.autograd.grad(dense.square().sum(), [dense_model.model.layers[0].self_attn.q_proj.weight])
    (g_packed,) = torch.autograd.grad(packed.square().sum(), [packed_model.model.layers[0].self_attn.q_proj.weight])
    torch.testing.assert_close(g_packed, g_dense, rtol=1e-9, atol=1e-9)


def test_generation_with_padding_is_unchanged() -> None:
    dense_model, packed_model = _tiny_qwen("sdpa"), _tiny_qwen("varlen")
    packed_model.load_state_dict(dense_model.state_dict())
    ids = torch.randint(1, 97, (2, 9))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # left padding
    ids[1, :4] = 0
    kwargs = {"attention_mask": mask, "max_new_tokens": 6, "do_sample": False, "pad_token_id": 0}
    assert torch.equal(packed_model.generate(ids, **kwargs), dense_model.generate(ids, **kwargs))


@pytest.mark.slow
def test_training_with_varlen_attention_equals_the_dense_mask(tiny_chat_model: Path, shared_data: Path, tmp_path: Path) -> None:
    import json

    from thresher.train.sft import run_sft

    config = tmp_path / "sft.yaml"
    config.write_text(
        f"model: {tiny_chat_model}\ndata: {{train: {shared_data}/sft/lima.json}}\nmax_length: 128\npack_length: 384\n"
        "max_steps: 3\noptim: {lr: 0.002}\n"
    )
    losses = {}
    for attention in ("sdpa", "varlen"):
        out = tmp_path / attention
        run_sft(load_config(config, [f"attention={attention}", f"output_dir={out}"]))
        records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
        assert records[0]["attention"] == attention
        losses[attention] = [r["loss"] for r in records if "loss" in r]
    assert len(losses["sdpa"]) == 3
    torch.testing.assert_close(torch.tensor(losses["varlen"]), torch.tensor(losses["sdpa"]), rtol=1e-5, atol=1e-6)
