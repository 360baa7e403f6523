"""``kernels: auto`` never picks a kernel that was not measured faster on that class of device, and no kernel
ever runs under Triton's interpreter on CUDA tensors (the first H200 run did, through a test setting)."""

from __future__ import annotations

import pytest
import torch

from thresher.kernels import dispatch
from thresher.kernels.dispatch import OPS, Measured, choose, plan, refusal

CUDA = torch.device("cuda")  # a device object only: nothing is allocated on it


@pytest.fixture
def compiled_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on an H100/H200 with triton installed and the interpreter off."""
    if dispatch.triton is None:
        pytest.skip("needs the triton package")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    monkeypatch.setattr(dispatch, "device_class", lambda device: "cuda:sm90" if device.type == "cuda" else device.type)


def test_auto_takes_only_measured_wins(compiled_cuda: None, monkeypatch: pytest.MonkeyPatch) -> None:
    # the LM-head kernel measured slower than PyTorch on the H200: auto keeps PyTorch; nothing else is measured yet
    assert plan("auto", CUDA) == dict.fromkeys(OPS, "torch")
    assert plan("triton", CUDA) == dict.fromkeys(OPS, "triton")
    assert plan("torch", CUDA) == dict.fromkeys(OPS, "torch")
    monkeypatch.setitem(dispatch.MEASURED, ("cuda:sm90", "rms_norm"), Measured("triton", "a test's measurement"))
    assert plan("auto", CUDA) == {**dict.fromkeys(OPS, "torch"), "rms_norm": "triton"}
    # another class of device has its own measurements: an sm90 win says nothing about sm80
    monkeypatch.setattr(dispatch, "device_class", lambda device: "cuda:sm80")
    assert choose("auto", "rms_norm", CUDA) == "torch"


def test_auto_on_the_cpu_is_pytorch_even_under_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert plan("auto", torch.device("cpu")) == dict.fromkeys(OPS, "torch")


@pytest.mark.parametrize("value", ["1", "true", "ON"])
def test_the_interpreter_on_cuda_is_refused(value: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRITON_INTERPRET", value)
    reason = refusal(CUDA)
    assert reason is not None and "interpreter" in reason and "\n" not in reason
    with pytest.raises(RuntimeError, match="interpreter"):
        choose("triton", "linear_logprobs", CUDA)
    assert choose("auto", "linear_logprobs", CUDA) == "torch"  # auto never runs interpreted kernels on a GPU


def test_every_measured_choice_names_its_evidence() -> None:
    for (device, op), measured in dispatch.MEASURED.items():
        assert device.startswith("cuda:sm") and op in OPS
        assert measured.backend in ("triton", "torch") and len(measured.evidence) > 20


def test_unknown_names_are_errors() -> None:
    with pytest.raises(ValueError, match="auto, triton or torch"):
        choose("fast", "rms_norm", CUDA)
    with pytest.raises(ValueError, match="unknown kernel"):
        choose("auto", "layer_norm", CUDA)


def test_patch_model_patches_only_the_chosen_ops(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib

    import transformers

    from thresher.kernels.patch import patch_model

    config = transformers.LlamaConfig(
        vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2
    )
    modeling = importlib.import_module(transformers.LlamaForCausalLM.__module__)
    monkeypatch.setattr(modeling, "apply_rotary_pos_emb", modeling.apply_rotary_pos_emb)  # undone after the test
    model = transformers.LlamaForCausalLM(config)
    assert patch_model(model, ["rms_norm"]) == ["rms_norm"]
    assert not any(hasattr(m, "_thresher_original_forward") for m in model.modules() if type(m).__name__.endswith("MLP"))
    assert not hasattr(modeling.apply_rotary_pos_emb, "_thresher_original")
