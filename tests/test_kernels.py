"""Kernels against float64 references on fresh random inputs (outputs and every gradient), with
outputs poisoned (NaN) before each run, shapes off the block sizes, and negative controls: a
perturbed kernel must fail the same check. Triton runs on the CPU under TRITON_INTERPRET=1 (set by
the Makefile); on CUDA the same tests run on the GPU."""

from __future__ import annotations

import os
import random

import pytest
import torch

from thresher.kernels.linear_logprobs import linear_logprobs, triton, triton_usable
from thresher.kernels.reference import linear_logprobs_reference, rms_norm_reference, rope_reference, swiglu_reference

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")
needs_triton = pytest.mark.skipif(
    triton is None or not triton_usable(DEVICE), reason="Triton needs CUDA or TRITON_INTERPRET=1 (the Makefile sets it)"
)
TOLERANCE = {torch.float32: 1e-5, torch.bfloat16: 1e-2, torch.float16: 1e-2}


@pytest.fixture(autouse=True)
def _poisoned_outputs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("THRESHER_POISON_OUTPUTS", "1")


@pytest.fixture
def seed() -> int:
    """A fresh seed each run (printed in failures; THRESHER_TEST_SEED=N replays a draw)."""
    value = int(os.environ.get("THRESHER_TEST_SEED") or random.SystemRandom().randrange(2**31))
    torch.manual_seed(value)
    return value


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.detach().double() - ref.detach().double()).norm() / ref.detach().double().norm())


def check(name: str, out: torch.Tensor, ref: torch.Tensor, dtype: torch.dtype, seed: int) -> None:
    error = rel_error(out, ref)
    assert error == error and error <= TOLERANCE[dtype], f"{name}: relative error {error:.2e} ({dtype}, seed {seed})"


def _leaves(*tensors: torch.Tensor) -> list[torch.Tensor]:
    return [t.detach().double().requires_grad_() for t in tensors]


def _linear_case(dtype: torch.dtype, n: int, h: int, v: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    hidden = torch.randn(n, h, device=DEVICE).to(dtype).requires_grad_()
    weight = (torch.randn(v, h, device=DEVICE) / h**0.5).to(dtype).requires_grad_()
    targets = torch.randint(0, v, (n,), device=DEVICE)
    targets[torch.rand(n, device=DEVICE) < 0.2] = -100
    return hidden, weight, targets, torch.randn(n, device=DEVICE), torch.randn(n, device=DEVICE)


def _linear_reference(
    hidden: torch.Tensor, weight: torch.Tensor, targets: torch.Tensor, g_logp: torch.Tensor, g_ent: torch.Tensor, temperature: float
) -> list[torch.Tensor]:
    h64, w64 = _leaves(hidden, weight)
    logp, entropy = linear_logprobs_reference(h64, w64, targets, temperature)
    grads = torch.autograd.grad((logp * g_logp.double()).sum() + (entropy * g_ent.double()).sum(), (h64, w64))
    return [logp, entropy, *grads]


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
@pytest.mark.parametrize("backend", ["triton", "torch"])
def test_linear_logprobs_and_entropy_match_float64(dtype: torch.dtype, backend: str, seed: int) -> None:
    n, h, v = 83, 40, 301  # none a multiple of the block sizes
    hidden, weight, targets, g_logp, g_ent = _linear_case(dtype, n, h, v)
    temperature = 0.7
    logp, entropy = linear_logprobs(hidden, weight, targets, temperature, backend=backend, chunk=29)
    assert logp.dtype == entropy.dtype == torch.float32 and bool((logp[targets == -100] == 0).all())
    grads = torch.autograd.grad((logp * g_logp).sum() + (entropy * g_ent).sum(), (hidden, weight))
    assert grads[0].dtype == dtype and grads[1].dtype == dtype
    ref = _linear_reference(hidden, weight, targets, g_logp, g_ent, temperature)
    for name, out, expected in zip(("logp", "entropy", "d hidden", "d weight"), [logp, entropy, *grads], ref, strict=True):
        check(f"{backend} {name}", out, expected, dtype, seed)


@needs_triton
@pytest.mark.parametrize("backend", ["triton", "torch"])
@pytest.mark.parametrize(("smoothing", "reduction"), [(0.0, "mean"), (0.1, "sum"), (0.2, "none")])
def test_linear_cross_entropy_matches_torchs_definition(backend: str, smoothing: float, reduction: str, seed: int) -> None:
    from thresher.kernels.linear_logprobs import linear_cross_entropy

    hidden, weight, targets, _, _ = _linear_case(torch.float32, 61, 40, 257)
    loss = linear_cross_entropy(hidden, weight, targets, label_smoothing=smoothing, reduction=reduction, backend=backend, chunk=17)
    g = torch.randn_like(loss)
    grads = torch.autograd.grad((loss * g).sum(), (hidden, weight))
    h64, w64 = _leaves(hidden, weight)
    ref = torch.nn.functional.cross_entropy(h64 @ w64.t(), targets, ignore_index=-100, label_smoothing=smoothing, reduction=reduction)
    ref_grads = torch.autograd.grad((ref * g.double()).sum(), (h64, w64))
    for name, out, expected in zip(("loss", "d hidden", "d weight"), [loss, *grads], [ref, *ref_grads], strict=True):
        check(f"{backend} cross-entropy {name}", out, expected, torch.float32, seed)
    if smoothing:  # negative control: the gradients without smoothing are not the smoothed ones
        # (the loss itself can come close: for random targets the NLL and the uniform term have the same mean)
        plain = linear_cross_entropy(hidden, weight, targets, reduction=reduction, backend=backend)
        plain_grad = torch.autograd.grad((plain * g).sum(), (hidden,))[0]
        with pytest.raises(AssertionError):
            check("unsmoothed", plain_grad, ref_grads[0], torch.float32, seed)


@needs_triton
@pytest.mark.parametrize("exact", [False, True])
def test_linear_kernel_in_slabs_and_splits_with_every_term(exact: bool, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """bf16, tiny tiles so the forward has several vocabulary splits and the backward several token slabs (or,
    exact, vocabulary slabs of fp32 sums), the three terms and their gradients at once; the forward is
    deterministic (bitwise equal when run again)."""
    import importlib

    module = importlib.import_module("thresher.kernels.linear_logprobs")
    monkeypatch.setattr(module, "DH_SLAB_BYTES", 4 * 40 * 32)  # 32 tokens a slab: 3 slabs for 83 tokens
    monkeypatch.setattr(module, "DW_SLAB_BYTES", 4 * 40 * 64)  # 64 vocabulary rows a slab: 5 slabs
    tiles = (module.Tiles(16, 32, 16, waves=8), module.Tiles(16, 32, 16, group_m=3))
    hidden, weight, targets, g_logp, g_ent = _linear_case(torch.bfloat16, 83, 40, 301)
    g_uni = torch.randn(83, device=DEVICE)
    run = lambda: module.linear_terms_triton(hidden, weight, targets, 0.9, -100, True, True, exact, tiles)  # noqa: E731
    logp, entropy, uniform = run()
    assert all(torch.equal(a, b) for a, b in zip(run(), (logp, entropy, uniform), strict=True))
    grads = torch.autograd.grad((logp * g_logp + entropy * g_ent + uniform * g_uni).sum(), (hidden, weight))
    h64, w64 = _leaves(hidden, weight)
    ref_logp, ref_entropy = linear_logprobs_reference(h64, w64, targets, 0.9)
    ref_uniform = -torch.log_softmax((h64 @ w64.t()) / 0.9, -1).mean(-1)
    loss = (ref_logp * g_logp.double() + ref_entropy * g_ent.double() + ref_uniform * g_uni.double()).sum()
    ref = [ref_logp, ref_entropy, ref_uniform, *torch.autograd.grad(loss, (h64, w64))]
    for name, out, expected in zip(("logp", "entropy", "uniform", "d hidden"), [logp, entropy, uniform, grads[0]], ref[:4], strict=True):
        check(f"slabs (exact={exact}) {name}", out, expected, torch.bfloat16, seed)
    # the weight's gradient: exact, within one bf16 rounding of the float64 answer (~1.7e-3); by default summed
    # in bf16, one rounding per token tile (as Liger's and CCE's are), 6 tiles here: ~1.2e-2
    error = rel_error(grads[1], ref[4])
    assert error <= (4e-3 if exact else 3e-2), f"d weight (exact={exact}): relative error {error:.2e} (seed {seed})"
    off = module.linear_terms_triton(hidden, weight, targets, 0.9, -100, False, False, exact, tiles)
    assert not off[1].any() and not off[2].any()  # not asked for: zeros, and not computed
    logp_grads = torch.autograd.grad((off[0] * g_logp).sum(), (hidden,))
    ref_logp_grads = torch.autograd.grad((linear_logprobs_reference(h64, w64, targets, 0.9)[0] * g_logp.double()).sum(), (h64,))
    check("log-probs only d hidden", logp_grads[0], ref_logp_grads[0], torch.bfloat16, seed)
    with pytest.raises(AssertionError):  # negative control: the gradients without the entropy term
        check("entropy term dropped", logp_grads[0], ref[3], torch.bfloat16, seed)


def test_tuned_tiles_are_read_for_the_nearest_shape(tmp_path: object, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sweep's file (THRESHER_LINEAR_LOGPROBS_CONFIGS) gives each device class and dtype its tiles, nearest in
    (hidden, vocab); anything else gets the defaults, and CPU tensors (the interpreter) small tiles."""
    import importlib
    import json
    from pathlib import Path

    module = importlib.import_module("thresher.kernels.linear_logprobs")
    entry = lambda h, v, bm: {"hidden": h, "vocab": v, "forward": {"block_m": bm}, "backward": {"block_m": bm, "group_m": 4}}  # noqa: E731
    path = Path(str(tmp_path)) / "tuned.json"
    path.write_text(json.dumps({"cuda:sm90": {"bfloat16": [entry(896, 151936, 64), entry(4096, 128256, 256)]}}))
    monkeypatch.setenv(module.CONFIG_ENV, str(path))
    fwd, bwd = module.tiles_for(1024, 150000, torch.bfloat16, "cuda:sm90")
    assert (fwd.block_m, bwd.block_m, bwd.group_m) == (64, 64, 4)
    assert module.tiles_for(5120, 128000, torch.bfloat16, "cuda:sm90")[0].block_m == 256
    assert module.tiles_for(896, 151936, torch.float16, "cuda:sm90") == (module.Tiles(), module.Tiles())
    assert module.tiles_for(896, 151936, torch.bfloat16, "cuda:sm80") == (module.Tiles(), module.Tiles())
    assert module.tiles_for(896, 151936, torch.bfloat16, "interpreter") == module.INTERPRETER_TILES
    assert json.loads(module.CONFIG_FILE.read_text()) is not None  # the package's own file ships and parses


@needs_triton
def test_linear_logprobs_negative_control_a_perturbed_kernel_fails(seed: int) -> None:
    """The same check on a kernel run at a slightly wrong temperature, and on one that skips the last
    vocabulary column, must fail."""
    hidden, weight, targets, g_logp, g_ent = _linear_case(torch.float32, 50, 24, 130)
    ref = _linear_reference(hidden, weight, targets, g_logp, g_ent, 1.0)
    off, _ = linear_logprobs(hidden, weight, targets, 1.001, backend="triton")
    with pytest.raises(AssertionError):
        check("perturbed logp", off, ref[0], torch.float32, seed)
    short_targets = targets.clamp_max(128)
    short, _ = linear_logprobs(hidden, weight[:-1], short_targets, 1.0, backend="triton")
    ref_short = _linear_reference(hidden, weight, short_targets, g_logp, g_ent, 1.0)
    with pytest.raises(AssertionError):
        check("vocabulary cut short", short, ref_short[0], torch.float32, seed)


@needs_triton
def test_linear_logprobs_empty_and_one_token() -> None:
    weight = torch.randn(20, 16, device=DEVICE)
    empty, entropy = linear_logprobs(
        torch.zeros(0, 16, device=DEVICE), weight, torch.zeros(0, dtype=torch.long, device=DEVICE), backend="triton"
    )
    assert empty.shape == entropy.shape == (0,)
    one, _ = linear_logprobs(torch.randn(1, 16, device=DEVICE), weight, torch.tensor([3], device=DEVICE), backend="triton")
    assert one.shape == (1,) and float(one[0]) < 0


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rms_norm_matches_float64(dtype: torch.dtype, seed: int) -> None:
    from thresher.kernels.elementwise import rms_norm

    x = torch.randn(3, 30, 70, device=DEVICE).to(dtype).requires_grad_()  # 90 rows: 6 tiles over 4 persistent programs
    w = (1 + 0.1 * torch.randn(70, device=DEVICE)).to(dtype).requires_grad_()
    g = torch.randn(3, 30, 70, device=DEVICE)
    y = rms_norm(x, w, 1e-6)
    dx, dw = torch.autograd.grad((y.float() * g).sum(), (x, w))
    x64, w64 = _leaves(x, w)
    ref = rms_norm_reference(x64, w64, 1e-6)
    rdx, rdw = torch.autograd.grad((ref * g.double()).sum(), (x64, w64))
    for name, out, expected in (("y", y, ref), ("dx", dx, rdx), ("dw", dw, rdw)):
        check(f"rms_norm {name}", out, expected, dtype, seed)
    with pytest.raises(AssertionError):  # negative control: a kernel run with a wrong epsilon
        check("perturbed rms_norm", rms_norm(x, w, 0.05), ref, dtype, seed)


@needs_triton
@pytest.mark.parametrize("layout", ["neox", "llama"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_rope_matches_float64_with_packed_positions(layout: str, dtype: torch.dtype, seed: int) -> None:
    from thresher.kernels.elementwise import rope

    b, heads, t, d = 2, 3, 13, 24
    positions = torch.cat([torch.arange(6), torch.arange(7)]).to(DEVICE)  # two packed sequences in each row
    freqs = 10000.0 ** (-torch.arange(0, d, 2, device=DEVICE).float() / d)
    angles = (positions[:, None] * freqs[None]).expand(b, t, d // 2)
    x = torch.randn(b, heads, t, d, device=DEVICE).to(dtype).requires_grad_()
    g = torch.randn(b, heads, t, d, device=DEVICE)
    y = rope(x, angles.cos(), angles.sin(), layout)
    (dx,) = torch.autograd.grad((y.float() * g).sum(), (x,))
    (x64,) = _leaves(x)
    ref = rope_reference(x64, angles.cos().double()[:, None], angles.sin().double()[:, None], layout)
    (rdx,) = torch.autograd.grad((ref * g.double()).sum(), (x64,))
    check(f"rope {layout} y", y, ref, dtype, seed)
    check(f"rope {layout} dx", dx, rdx, dtype, seed)
    other = "llama" if layout == "neox" else "neox"
    with pytest.raises(AssertionError):  # negative control: the other pairing of dimensions
        check("wrong layout", rope(x, angles.cos(), angles.sin(), other), ref, dtype, seed)


@needs_triton
def test_rope_qk_one_launch_through_strides_with_grouped_heads(seed: int) -> None:
    """q and k with their own head counts, both non-contiguous views (as attention's transposes give them), and
    cos/sin as slices of Hugging Face's repeated (B, T, D) angle tables: outputs and gradients equal float64
    rotations; swapping q's and k's head counts is refused, and k's gradient without q's still comes back."""
    from thresher.kernels.elementwise import rope_qk

    b, t, d = 2, 11, 16
    q = torch.randn(b, t, 4, d, device=DEVICE).transpose(1, 2).requires_grad_()  # (B, 4 heads, T, D), strided
    k = torch.randn(b, t, 2, d, device=DEVICE).transpose(1, 2).requires_grad_()
    angles = torch.cat([torch.arange(5), torch.arange(6)]).to(DEVICE)[:, None] * torch.rand(d // 2, device=DEVICE)
    table = torch.cat([angles, angles], -1)[None].expand(b, t, d)  # HF: cat(freqs, freqs), batch broadcast
    cos, sin = table.cos()[..., : d // 2], table.sin()[..., : d // 2]
    qy, ky = rope_qk(q, k, cos, sin)
    gq, gk = torch.randn_like(qy), torch.randn_like(ky)
    dq, dk = torch.autograd.grad((qy * gq).sum() + (ky * gk).sum(), (q, k))
    q64, k64 = _leaves(q, k)
    c64, s64 = cos.double()[:, None], sin.double()[:, None]
    rq, rk = rope_reference(q64, c64, s64), rope_reference(k64, c64, s64)
    rdq, rdk = torch.autograd.grad((rq * gq.double()).sum() + (rk * gk.double()).sum(), (q64, k64))
    for name, out, expected in (("q", qy, rq), ("k", ky, rk), ("dq", dq, rdq), ("dk", dk, rdk)):
        check(f"rope_qk {name}", out, expected, torch.float32, seed)
    (dk_only,) = torch.autograd.grad((rope_qk(q, k, cos, sin)[1] * gk).sum(), (k,))
    check("rope_qk dk alone", dk_only, rdk, torch.float32, seed)
    with pytest.raises(AssertionError):  # negative control: angles of the wrong positions
        check("shifted positions", rope_qk(q, k, cos.roll(1, 1), sin.roll(1, 1))[0], rq, torch.float32, seed)


@needs_triton
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_swiglu_matches_float64(dtype: torch.dtype, seed: int) -> None:
    from thresher.kernels.elementwise import swiglu

    gate = torch.randn(5, 1031, device=DEVICE).to(dtype).requires_grad_()  # 5,155 elements: not a multiple of 1,024
    up = torch.randn(5, 1031, device=DEVICE).to(dtype).requires_grad_()
    g = torch.randn(5, 1031, device=DEVICE)
    y = swiglu(gate, up)
    dg, du = torch.autograd.grad((y.float() * g).sum(), (gate, up))
    g64, u64 = _leaves(gate, up)
    ref = swiglu_reference(g64, u64)
    rdg, rdu = torch.autograd.grad((ref * g.double()).sum(), (g64, u64))
    for name, out, expected in (("y", y, ref), ("d gate", dg, rdg), ("d up", du, rdu)):
        check(f"swiglu {name}", out, expected, dtype, seed)
    with pytest.raises(AssertionError):  # negative control: gate and up swapped
        check("swapped swiglu", swiglu(up, gate), ref, dtype, seed)


@needs_triton
@pytest.mark.parametrize("family", ["llama", "qwen2", "mistral"])
def test_patched_models_give_the_same_loss_and_gradients(family: str, seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model patched with the kernels (RMSNorm, RoPE, SwiGLU) equals the unpatched one on packed positions;
    with a perturbed RMSNorm kernel patched in, it does not."""
    import importlib

    import transformers

    from thresher.kernels import patch as patching

    names = {"llama": "Llama", "qwen2": "Qwen2", "mistral": "Mistral"}[family]
    config = getattr(transformers, f"{names}Config")(
        vocab_size=101,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        attn_implementation="sdpa",
    )
    model_class = getattr(transformers, f"{names}ForCausalLM")
    modeling = importlib.import_module(model_class.__module__)
    monkeypatch.setattr(modeling, "apply_rotary_pos_emb", modeling.apply_rotary_pos_emb)  # undone after the test
    model = model_class(config).to(DEVICE)
    ids = torch.randint(0, 101, (2, 19), device=DEVICE)
    positions = torch.cat([torch.arange(10), torch.arange(9)]).to(DEVICE)[None].expand(2, -1)

    def loss_and_grads(m: torch.nn.Module) -> tuple[torch.Tensor, list[torch.Tensor]]:
        loss = m(input_ids=ids, position_ids=positions, labels=ids).loss
        return loss.detach(), [g.detach() for g in torch.autograd.grad(loss, list(m.parameters()))]

    ref_loss, ref_grads = loss_and_grads(model)
    patched = model_class(config).to(DEVICE)
    patched.load_state_dict(model.state_dict())
    assert patching.patch_model(patched) == ["rms_norm", "rope", "swiglu"]
    calls = {"rms_norm": 0}
    original_rms = patching.rms_norm

    def counting(*args: object) -> torch.Tensor:
        calls["rms_norm"] += 1
        return original_rms(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(patching, "rms_norm", counting)
    loss, grads = loss_and_grads(patched)
    assert calls["rms_norm"] == 2 * 2 + 1  # two per layer and the final norm: the kernels really ran
    check(f"{family} loss", loss, ref_loss, torch.float32, seed)
    for i, (g, r) in enumerate(zip(grads, ref_grads, strict=True)):
        check(f"{family} grad {i}", g, r, torch.float32, seed)
    monkeypatch.setattr(patching, "rms_norm", lambda x, w, eps: original_rms(x, w, eps * 1e4))  # negative control
    bad_loss, bad_grads = loss_and_grads(patched)
    with pytest.raises(AssertionError):
        for i, (g, r) in enumerate(zip(bad_grads, ref_grads, strict=True)):
            check(f"perturbed {family} grad {i}", g, r, torch.float32, seed)
