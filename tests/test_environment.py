"""The installed environment: the heavy dependencies import, and the default embedding model loads offline."""

from __future__ import annotations

import importlib

import numpy as np
import pytest

from thresher.models import resolve_embedding_model


@pytest.mark.parametrize(
    "module", ["polars", "pyarrow", "datasketch", "datatrove", "faiss", "sentence_transformers", "transformers", "typer"]
)
def test_dependency_imports(module: str) -> None:
    importlib.import_module(module)


def test_default_embedding_model_is_offline_and_meaningful() -> None:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(resolve_embedding_model(), device="cpu")
    emb = model.encode(
        [
            "How many eggs does the duck lay each day?",
            "What is the daily number of eggs laid by the duck?",
            "Compile the kernel with clang.",
        ],
        normalize_embeddings=True,
    )
    assert emb.shape == (3, 384)
    same, different = float(np.dot(emb[0], emb[1])), float(np.dot(emb[0], emb[2]))
    assert same > 0.7 and different < 0.3 and same - different > 0.5
    assert resolve_embedding_model("some/other-model") == "some/other-model"
