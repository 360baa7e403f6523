"""The torch exact k-NN (what serves on GPUs without FAISS-GPU) against FAISS on the CPU, run here on CPU tensors:
the same neighbours, similarities within float tolerance, the same pairs above a threshold; and bf16 encoding
(the GPU default) against fp32."""

from __future__ import annotations

import numpy as np
import pytest

from thresher.curation.embeddings import EmbeddingIndex, similar_pairs


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    x = rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_torch_exact_search_equals_faiss_flat() -> None:
    pytest.importorskip("faiss")
    rng = np.random.default_rng()
    base = _unit(rng, 700, 48)
    near = base[rng.choice(700, 150, replace=False)] + 0.05 * _unit(rng, 150, 48)  # planted near neighbours
    queries = np.concatenate([near / np.linalg.norm(near, axis=1, keepdims=True), _unit(rng, 50, 48)]).astype(np.float32)
    faiss_index = EmbeddingIndex(base, engine="faiss", device="cpu")
    torch_index = EmbeddingIndex(base, engine="torch", device="cpu")
    assert faiss_index.engine == "faiss-cpu (flat)" and torch_index.engine == "torch-exact (cpu)"
    want_s, want_i = faiss_index.search(queries, 5)
    got_s, got_i = torch_index.search(queries, 5)
    assert np.array_equal(got_i, want_i)
    assert np.allclose(got_s, want_s, atol=1e-5)
    wide_s, wide_i = torch_index.search(queries[:3], 800)  # more neighbours than vectors: padded as FAISS pads
    assert (wide_i[:, 700:] == -1).all() and (wide_i[:, :700] >= 0).all()
    vectors = np.concatenate([base, queries])
    for engine in ("faiss", "torch"):
        pairs, sims = similar_pairs(vectors, 0.9, k=5, engine=engine, device="cpu")
        if engine == "faiss":
            want_pairs, want_sims = pairs, sims
    assert len(want_pairs) >= 100 and np.array_equal(pairs, want_pairs) and np.allclose(sims, want_sims, atol=1e-5)
    with pytest.raises(AssertionError):  # negative control: a lower threshold is not the same pair set
        assert np.array_equal(similar_pairs(vectors, 0.5, k=5, engine="torch", device="cpu")[0], want_pairs)


def test_bf16_encoding_is_within_tolerance_of_fp32() -> None:
    from thresher.curation.embeddings import load_encoder

    texts = ["Natalia sold clips to 48 of her friends in April.", "def add(a, b): return a + b", "The capital of France is Paris."]
    fp32 = load_encoder(device="cpu", dtype="fp32").encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    bf16_encoder = load_encoder(device="cpu", dtype="bf16")
    bf16 = np.asarray(bf16_encoder.encode(texts, normalize_embeddings=True, convert_to_tensor=True).float().cpu())
    assert bf16_encoder.cache_tag == "bf16"
    cosine = (fp32 * bf16).sum(1) / np.linalg.norm(bf16, axis=1)
    assert (cosine > 0.99).all(), cosine
    assert not np.allclose(fp32, bf16, atol=1e-6)  # it really ran in bf16
