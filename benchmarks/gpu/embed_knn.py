"""The decontamination audit's embedding work on the device: encode ``--texts`` real texts with a model of
all-MiniLM-L6-v2's shape (random weights made here, a WordPiece vocabulary trained on the texts: the
packaged model does not fit the carry limit, and speed depends on the shape, not the weights), then
k-nearest-neighbour search of every text against 10% of them as the "benchmark". The search is
Thresher's ``EmbeddingIndex`` with its automatic engine (FAISS-GPU when faiss has GPUs, else its exact torch
search on CUDA), encoding in bf16 on a GPU as Thresher does; the record says which engine ran."""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

from corpus import documents  # noqa: E402


def minilm_shaped(folder: Path, texts: list[str]) -> object:
    from sentence_transformers import SentenceTransformer, models
    from tokenizers import Tokenizer, normalizers, pre_tokenizers, trainers
    from tokenizers.models import WordPiece
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    tok = Tokenizer(WordPiece(unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.train_from_iterator(
        texts[:5000],
        trainers.WordPieceTrainer(vocab_size=30522, special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"], show_progress=False),
    )
    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]", sep_token="[SEP]", mask_token="[MASK]"
    )
    torch.manual_seed(0)
    BertModel(
        BertConfig(
            vocab_size=30522,
            hidden_size=384,
            num_hidden_layers=6,
            num_attention_heads=12,
            intermediate_size=1536,
            max_position_embeddings=512,
        )
    ).save_pretrained(str(folder))
    hf.save_pretrained(str(folder))
    word = models.Transformer(str(folder), max_seq_length=256)
    return SentenceTransformer(modules=[word, models.Pooling(word.get_word_embedding_dimension(), "mean")])


def search(vectors: np.ndarray, queries: np.ndarray, k: int, device: str) -> tuple[str, np.ndarray]:
    """Thresher's own index with its automatic engine (FAISS-GPU, else torch's exact search on CUDA, else FAISS-CPU,
    else torch on the CPU); the name of what ran."""
    from thresher.curation.embeddings import EmbeddingIndex

    index = EmbeddingIndex(vectors, device=device)
    return index.engine, index.search(queries, k)[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--texts", type=int, default=200_000)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--bench", type=int, default=None, help="benchmark vectors (default: a tenth of the texts)")
    args = parser.parse_args()
    device = "cuda" if torch.cuda.is_available() else "cpu"
    texts = [t[:400] for t in documents(args.texts, size=400)]
    with tempfile.TemporaryDirectory() as tmp:
        model = minilm_shaped(Path(tmp), texts)
        model.to(device)
        if device == "cuda":
            model.to(torch.bfloat16)  # what thresher's encoder runs in on a GPU (load_encoder's default there)
        model.encode(texts[:256], batch_size=256)  # warm-up
        started = time.perf_counter()
        vectors = model.encode(texts, batch_size=512, normalize_embeddings=True, convert_to_numpy=True).astype(np.float32)
        encode_s = time.perf_counter() - started
    bench = vectors[: max(1, min(len(vectors), args.bench or len(vectors) // 10))]
    started = time.perf_counter()
    engine, ids = search(bench, vectors, min(args.k, len(bench)), device)
    search_s = time.perf_counter() - started
    print(f"# {device}: {len(texts):,} texts of ≤ 400 chars, MiniLM-L6 shape, k={args.k} against {len(bench):,}")
    print("| stage | engine | seconds | per second |\n| --- | --- | ---: | ---: |")
    print(f"| encode | sentence-transformers ({device}) | {encode_s:.2f} | {len(texts) / encode_s:,.0f} texts |")
    print(f"| k-NN search | {engine} | {search_s:.2f} | {len(texts) / search_s:,.0f} queries |")
    print(
        "RESULT "
        + json.dumps(
            {
                "embedding": {
                    "device": device,
                    "texts": len(texts),
                    "encode_s": encode_s,
                    "search_s": search_s,
                    "search_engine": engine,
                    "neighbours": list(ids.shape),
                    "bench": len(bench),
                    "total_s": encode_s + search_s,
                }
            }
        )
    )


if __name__ == "__main__":
    main()
