"""The ONNX Runtime embedding backend: the same vectors as sentence-transformers (float32), close ones (int8),
a cache of their own for int8, each distinct text encoded once, and models it cannot run left to torch."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pytest

from thresher.curation.embeddings import encode, load_encoder
from thresher.curation.onnx_encoder import OnnxEncoder, supports

TEXTS = [
    "How many eggs does Janet sell at the farmers' market every day?",
    "Write a function to reverse a linked list.",
    "Résumé: naïve café, 東京, emoji 🙂 and symbols ∑ ≤ ∞",
    "short",
    "",
    "The quick brown fox jumps over the lazy dog. " * 80,
]  # longer than the model's 256 tokens: truncated alike


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    return encode(TEXTS, encoder=load_encoder(None, "cpu", "torch"), show_progress=False)


def test_onnx_float32_gives_the_sentence_transformers_vectors(reference: np.ndarray) -> None:
    encoder = load_encoder(None, "cpu", "onnx")
    assert isinstance(encoder, OnnxEncoder) and encoder.cache_tag == ""
    vectors = encode(TEXTS, encoder=encoder, show_progress=False)
    np.testing.assert_allclose(vectors, reference, atol=2e-5)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # negative control: the same vectors in another order are not the reference
    assert np.abs(vectors[::-1] - reference).max() > 0.1


def test_onnx_int8_is_close_and_cached_apart(reference: np.ndarray, tmp_path: Path) -> None:
    encoder = load_encoder(None, "cpu", "onnx-int8")
    assert encoder.cache_tag == "onnx-int8"
    vectors = encode(TEXTS, encoder=encoder, cache_dir=tmp_path, show_progress=False)
    cosine = np.sum(vectors * reference, axis=1)
    assert cosine.min() > 0.95 and cosine.mean() > 0.98
    assert np.abs(vectors - reference).max() > 1e-4  # quantized: not the float32 vectors
    float_vectors = encode(TEXTS, encoder=load_encoder(None, "cpu", "onnx"), cache_dir=tmp_path, show_progress=False)
    np.testing.assert_allclose(float_vectors, reference, atol=2e-5)  # not served from the int8 cache
    assert len(list(tmp_path.iterdir())) == 2
    exported = [p for p in Path(os.environ["THRESHER_CACHE_DIR"], "onnx").rglob("*") if p.is_file()]
    assert {p.name for p in exported} == {"model.onnx", "model-int8.onnx"}  # no temporary file left behind


def test_each_distinct_text_is_encoded_once(reference: np.ndarray) -> None:
    seen: list[str] = []
    inner = load_encoder(None, "cpu", "onnx")

    class Counting:
        def encode(self, texts: list[str], **kwargs: object) -> np.ndarray:
            seen.extend(texts)
            return inner.encode(texts, **kwargs)  # type: ignore[arg-type]

    texts = [TEXTS[0], TEXTS[1], TEXTS[0], TEXTS[0], TEXTS[3], TEXTS[1]]
    vectors = encode(texts, encoder=Counting(), show_progress=False)
    assert sorted(seen) == sorted({TEXTS[0], TEXTS[1], TEXTS[3]})
    np.testing.assert_allclose(vectors, reference[[0, 1, 0, 0, 3, 1]], atol=2e-5)


def test_models_it_cannot_run_stay_on_torch() -> None:
    from sentence_transformers import SentenceTransformer, models

    plain = load_encoder(None, "cpu", "torch")
    assert supports(plain)
    cls = SentenceTransformer(modules=[plain[0], models.Pooling(384, pooling_mode="cls")], device="cpu")
    assert not supports(cls)  # negative control: CLS pooling is not what the export computes
    with pytest.raises(ValueError, match="embedding backend must be one of"):
        load_encoder(None, "cpu", "tensorrt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_encoder(None, "cpu", "onnx")  # a supported model: no warning
