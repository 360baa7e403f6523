"""Our DPO losses equal TRL's DPOTrainer on identical batches (TRL installs beside torch 2.13)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from thresher.train.loss import shifted_targets, token_logprobs
from thresher.train.preference_loss import preference_loss, sequence_logprobs

trl = pytest.importorskip("trl", reason="TRL is a [dev] dependency")


def _pairs() -> list[dict]:
    return [
        {
            "prompt": [{"role": "user", "content": f"What is {i} plus {i}?"}],
            "chosen": [{"role": "assistant", "content": f"It is {2 * i}."}],
            "rejected": [{"role": "assistant", "content": f"Maybe {i} or so, I am not sure at all."}],
        }
        for i in range(4)
    ]


def _sequence_logprobs(model: torch.nn.Module, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    ids, completion, attention = batch["input_ids"], batch["completion_mask"], batch["attention_mask"]
    hidden = model.get_decoder()(input_ids=ids, attention_mask=attention).last_hidden_state
    targets, keep = shifted_targets(ids.masked_fill(completion == 0, -100))
    logps = token_logprobs(hidden[keep], model.get_output_embeddings(), targets[keep], chunk=16)
    segment = torch.arange(ids.shape[0])[:, None].expand_as(ids)[keep]
    return sequence_logprobs(logps, segment, ids.shape[0]), keep.sum(1).float()


@pytest.mark.parametrize(("trl_type", "ours"), [("sigmoid", "sigmoid"), ("sigmoid_norm", "dpo_norm"), ("ipo", "ipo")])
def test_dpo_losses_equal_trls(tiny_chat_model: Path, tmp_path: Path, trl_type: str, ours: str) -> None:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(tiny_chat_model))
    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_pretrained(str(tiny_chat_model), dtype=torch.float32)
    reference = AutoModelForCausalLM.from_pretrained(str(tiny_chat_model), dtype=torch.float32)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(torch.randn_like(p) * 0.05)  # the policy has moved away from the reference
    args = trl.DPOConfig(
        output_dir=str(tmp_path),
        loss_type=[trl_type],
        beta=0.5,
        report_to=[],
        per_device_train_batch_size=4,
        use_cpu=True,
        bf16=False,
        max_length=128,
    )
    trainer = trl.DPOTrainer(model=policy, ref_model=reference, args=args, train_dataset=Dataset.from_list(_pairs()), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    policy.eval()
    with torch.no_grad():
        theirs = trainer._compute_loss(policy, batch, False)
        theirs = theirs[0] if isinstance(theirs, tuple) else theirs
        pol, lengths = _sequence_logprobs(policy, batch)
        ref, _ = _sequence_logprobs(reference, batch)
    n = pol.shape[0] // 2  # TRL stacks [chosen; rejected]
    got = preference_loss(ours, 0.5, pol[:n], pol[n:], lengths[:n], lengths[n:], ref[:n], ref[n:]).losses.mean()  # type: ignore[arg-type]
    assert float(got) == pytest.approx(float(theirs), rel=1e-5, abs=1e-6)
    # Negative control: the plain sum where TRL normalizes (or the reverse) does not match.
    other = "sigmoid" if ours != "sigmoid" else "dpo_norm"
    wrong = preference_loss(other, 0.5, pol[:n], pol[n:], lengths[:n], lengths[n:], ref[:n], ref[n:]).losses.mean()  # type: ignore[arg-type]
    assert float(wrong) != pytest.approx(float(theirs), rel=1e-3)


def test_sft_masks_and_loss_equal_trls_sft_trainer(tiny_chat_model: Path, tmp_path: Path) -> None:
    """TRL's completion-only SFT (prompt/completion rows) masks the same tokens as our template-derived
    assistant labels, and its loss on the batch equals ours on the same examples, padded our way."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from thresher.train.chat import IGNORE, encode_chat
    from thresher.train.loss import sft_loss_sum
    from thresher.train.packing import collate

    tok = AutoTokenizer.from_pretrained(str(tiny_chat_model))
    model = AutoModelForCausalLM.from_pretrained(str(tiny_chat_model), dtype=torch.float32)
    model.config._attn_implementation = "sdpa"
    rows = [
        {
            "prompt": [{"role": "user", "content": f"What is {i} plus {i}?" + " Think." * i}],
            "completion": [{"role": "assistant", "content": f"It is {2 * i}, of course." + " Yes." * (3 - i)}],
        }
        for i in range(4)
    ]
    args = trl.SFTConfig(
        output_dir=str(tmp_path),
        report_to=[],
        per_device_train_batch_size=4,
        use_cpu=True,
        bf16=False,
        max_length=128,
        completion_only_loss=True,
    )
    trainer = trl.SFTTrainer(model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    ours = {tuple(e.input_ids): e for e in (encode_chat(tok, r["prompt"] + r["completion"]) for r in rows)}
    order = []
    for ids, labels, attention in zip(batch["input_ids"], batch["labels"], batch["attention_mask"], strict=True):
        n = int(attention.sum())
        mine = ours[tuple(ids[:n].tolist())]  # the same tokens...
        assert labels[:n].tolist() == mine.labels and bool((labels[n:] == IGNORE).all())  # ...and the same targets
        order.append(mine)
    model.eval()
    with torch.no_grad():
        theirs = float(trainer.compute_loss(model, batch))
        b = collate([[e] for e in order], tok.pad_token_id)
        summed, count = sft_loss_sum(model, b.input_ids, b.labels, b.position_ids, b.attention_mask)
    assert float(summed) / count == pytest.approx(theirs, rel=1e-5)
    # negative control: the mean of per-row means (what a per-row normalization gives) differs on unequal rows
    per_row = [
        float(sft_loss_sum(model, *(t[i : i + 1] for t in (b.input_ids, b.labels, b.position_ids, b.attention_mask)))[0])
        / (order[i].targets)
        for i in range(4)
    ]
    assert sum(per_row) / 4 != pytest.approx(theirs, rel=1e-4)
