"""SFT building blocks: assistant-only masks from the template, packing without cross-talk, and a
loss that does not depend on packing or micro-batching; chunked log-probs against a fp64 reference."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from thresher.train.chat import IGNORE, TemplateError, encode_chat
from thresher.train.loss import sft_loss_sum, token_logprobs
from thresher.train.packing import block_causal_mask, collate, first_fit


def _chats(shared_data: Path, count: int = 6) -> list[list[dict[str, str]]]:
    rows = json.loads((shared_data / "sft/lima.json").read_text())[:count]
    chats = [[{"role": "user", "content": r["instruction"][:300]}, {"role": "assistant", "content": r["output"][:300]}] for r in rows]
    chats[0] = [
        {"role": "system", "content": "Be brief."},
        *chats[0],
        {"role": "user", "content": "And again?"},
        {"role": "assistant", "content": "Once more, briefly."},
    ]
    return chats


def test_only_assistant_turns_and_their_end_marker_are_targets(tiny_chat_model: Path, shared_data: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(tiny_chat_model))
    for chat in _chats(shared_data):
        enc = encode_chat(tok, chat)
        assert len(enc.input_ids) == len(enc.labels)
        runs, current = [], []
        for token, label in zip(enc.input_ids, enc.labels, strict=True):
            if label != IGNORE:
                assert label == token
                current.append(token)
            elif current:
                runs.append(current)
                current = []
        if current:
            runs.append(current)
        want = [m["content"] + "<|end|>" for m in chat if m["role"] == "assistant"]
        assert [tok.decode(r) for r in runs] == want
    cut = encode_chat(tok, _chats(shared_data)[1], max_length=20)
    assert len(cut.input_ids) == 20


def test_templates_that_cannot_give_masks_are_refused(tiny_chat_model: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(tiny_chat_model))
    # A template that puts the number of turns up front: earlier renderings are not prefixes of later ones.
    tok.chat_template = "{{ messages | length }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(TemplateError, match="not a prefix"):
        encode_chat(tok, [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    tok.chat_template = None
    with pytest.raises(TemplateError, match="no chat template"):
        encode_chat(tok, [{"role": "user", "content": "a"}])


def test_first_fit_and_the_block_mask() -> None:
    assert first_fit([5, 4, 3, 2, 6], 8) == [[0, 2], [1, 3], [4]]
    with pytest.raises(ValueError, match="example 1 has 9 tokens"):
        first_fit([1, 9], 8)
    mask = block_causal_mask([2, 3], 6)
    allowed = (mask == 0).int().tolist()
    assert allowed == [
        [1, 0, 0, 0, 0, 0],
        [1, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 1, 1, 0, 0],
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],
    ]


def _model(folder: Path) -> torch.nn.Module:
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32)
    model.config._attn_implementation = "sdpa"
    return model.train()


def _loss_and_grads(model: torch.nn.Module, batches: list, total_targets: int) -> tuple[float, dict[str, torch.Tensor]]:
    model.zero_grad()
    loss = 0.0
    for b in batches:
        summed, _ = sft_loss_sum(model, b.input_ids, b.labels, b.position_ids, b.attention_mask, chunk=37)
        (summed / total_targets).backward()
        loss += float(summed.detach()) / total_targets
    return loss, {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return all(torch.allclose(a[n], b[n], rtol=1e-4, atol=1e-6) for n in a)


def test_packed_padded_and_micro_batched_give_the_same_loss_and_gradients(tiny_chat_model: Path, shared_data: Path) -> None:
    tok = AutoTokenizer.from_pretrained(str(tiny_chat_model))
    model = _model(tiny_chat_model)
    examples = [encode_chat(tok, c, max_length=160) for c in _chats(shared_data)]
    total = sum(e.targets for e in examples)
    pad = tok.pad_token_id
    padded = collate([[e] for e in examples], pad)
    assert padded.targets == total
    packs = first_fit([len(e.input_ids) for e in examples], 400)
    assert any(len(p) > 1 for p in packs)
    packed = collate([[examples[i] for i in p] for p in packs], pad)
    split = [collate([[e] for e in examples[:2]], pad), collate([[e] for e in examples[2:]], pad)]

    loss_padded, grads_padded = _loss_and_grads(model, [padded], total)
    loss_packed, grads_packed = _loss_and_grads(model, [packed], total)
    loss_split, grads_split = _loss_and_grads(model, split, total)
    assert loss_packed == pytest.approx(loss_padded, rel=1e-5) and loss_split == pytest.approx(loss_padded, rel=1e-5)
    assert _close(grads_packed, grads_padded) and _close(grads_split, grads_padded)
    # Negative control: packing with a plain causal mask lets examples see each other; the check must fail.
    leaky = collate([[examples[i] for i in p] for p in packs], pad)
    n = leaky.input_ids.shape[1]
    leaky.attention_mask[:] = block_causal_mask([n], n)
    loss_leaky, grads_leaky = _loss_and_grads(model, [leaky], total)
    assert loss_leaky != pytest.approx(loss_padded, rel=1e-5) and not _close(grads_leaky, grads_padded)

    # The variable-length layout (flash-attention on GPU): one unpadded row, no mask, example boundaries where
    # position_ids restart. Those boundaries must be the examples', and attention within them gives the same loss.
    flat = collate([[examples[i] for i in p] for p in packs], pad, varlen=True)
    assert flat.attention_mask is None and flat.input_ids.shape == (1, sum(len(e.input_ids) for e in examples))
    starts = (flat.position_ids[0] == 0).nonzero()[:, 0].tolist() + [flat.input_ids.shape[1]]
    assert (
        [b - a for a, b in zip(starts, starts[1:], strict=False)]
        == flat.seq_lens[0]
        == [len(examples[i].input_ids) for p in packs for i in p]
    )
    flat.attention_mask = block_causal_mask(flat.seq_lens[0], flat.input_ids.shape[1])[None, None]
    loss_flat, grads_flat = _loss_and_grads(model, [flat], total)
    assert loss_flat == pytest.approx(loss_padded, rel=1e-5) and _close(grads_flat, grads_padded)


def test_chunked_logprobs_match_a_float64_reference_with_gradients() -> None:
    torch.manual_seed(0)
    n, d, vocab = 300, 48, 517
    hidden = torch.randn(n, d, requires_grad=True)
    head = torch.nn.Linear(d, vocab, bias=True)
    targets = torch.randint(0, vocab, (n,))
    got = token_logprobs(hidden, head, targets, chunk=64)
    got.sum().backward()
    grad_h, grad_w = hidden.grad.clone(), head.weight.grad.clone()
    h64, w64, b64 = hidden.detach().double().requires_grad_(), head.weight.detach().double().requires_grad_(), head.bias.detach().double()
    ref = torch.log_softmax(h64 @ w64.t() + b64, -1).gather(-1, targets[:, None])[:, 0]
    ref.sum().backward()
    rel = lambda a, b: float((a.double() - b).norm() / b.norm())  # noqa: E731
    assert rel(got, ref) < 1e-6 and rel(grad_h, h64.grad) < 1e-5 and rel(grad_w, w64.grad) < 1e-5
    # Negative control: off-by-one targets are far from the reference.
    assert rel(token_logprobs(hidden, head, (targets + 1) % vocab, chunk=64), ref) > 0.01
