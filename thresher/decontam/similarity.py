"""The ``minhash`` and ``embedding`` methods: whole-text similarity between benchmark items and training rows.

``minhash``: MinHash signatures (the curation engine) of each item's question and answer and of
each training row; LSH band keys of the items are joined with those of every training batch, and
each candidate pair is scored by its estimated Jaccard similarity.

``embedding``: sentence embeddings of the items' questions in a FAISS index (exact; on the GPU
when FAISS has one); each training row's ``k`` nearest items above ``floor`` are recorded with
their cosine similarity. This is the method for rephrased and translated leakage.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, cast

import numpy as np
import polars as pl

from thresher.curation.ngrams import ngram_hashes
from thresher.decontam.matching import MATCH_SCHEMA, TrainBatch, empty_matches, item_words
from thresher.device import pick_compute_path
from thresher.errors import InputError


def _as_matches(rows: np.ndarray, items: np.ndarray, scores: np.ndarray, method: str) -> pl.DataFrame:
    frame = pl.DataFrame(
        {
            "row": rows.astype(np.int64),
            "item": items.astype(np.int64),
            "method": method,
            "score": np.clip(scores.astype(np.float64), 0.0, 1.0),
        }
    )
    return (
        frame.with_columns(
            pl.lit(None).alias("question_score"),
            pl.lit(None).alias("answer_score"),
            pl.lit(None).alias("spans"),
            pl.lit(None).alias("distinct_score"),
        )
        .select(list(MATCH_SCHEMA))
        .cast(cast(Any, MATCH_SCHEMA))
    )


class _Collected:
    """Matches collected batch by batch (these methods need no end-of-stream step)."""

    found: list[pl.DataFrame]

    def finish(self) -> pl.DataFrame:
        return pl.concat(self.found).sort("row", "item") if self.found else empty_matches()

    def drain(self) -> pl.DataFrame:
        """The matches of the batches scanned since the last drain."""
        matches = self.finish()
        self.found = []
        return matches

    def fresh(self) -> Any:
        """A copy sharing the index and model, with no matches."""
        clone = copy.copy(self)
        clone.found = []
        return clone

    def state(self) -> list[pl.DataFrame]:
        return self.found

    def absorb(self, state: list[pl.DataFrame]) -> None:
        self.found.extend(state)  # finish sorts


@dataclass(frozen=True)
class MinhashMatchConfig:
    ngram: int = 5
    threshold: float = 0.5  # estimated Jaccard of the item's text and the row's
    num_perm: int = 128
    seed: int = 1
    device: str = "cpu"

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise InputError(f"minhash threshold must be in (0, 1], got {self.threshold}")

    @property
    def floor(self) -> float:
        return self.threshold / 2


class MinhashDetector(_Collected):
    name = "minhash"

    def __init__(self, items: pl.DataFrame, config: MinhashMatchConfig = MinhashMatchConfig()) -> None:
        self.config = config
        # the MinHash engine (and torch with it) is imported only when this method runs: an n-gram audit
        # starts 1.7 s sooner without it
        from thresher.curation.lsh import band_keys, optimal_banding
        from thresher.curation.minhash import MinHashParams, empty_rows

        self.params = MinHashParams(config.num_perm, config.seed)
        self.device = pick_compute_path(config.device, announce=False).device
        self.banding = optimal_banding(config.threshold, config.num_perm)
        texts = items.select(pl.concat_str(["question", "answer"], separator="\n"))["question"]
        self.item_signatures = self._signatures(item_words(texts))
        keys = band_keys(self.item_signatures, self.banding)
        valid = ~empty_rows(self.item_signatures)
        item, band = np.nonzero(np.broadcast_to(valid[:, None], keys.shape))
        self.buckets = pl.DataFrame({"band": band.astype(np.int64), "key": keys[item, band], "item": item.astype(np.int64)})
        self.found: list[pl.DataFrame] = []

    def _signatures(self, words: Any) -> np.ndarray:
        from thresher.curation.minhash import signatures

        grams = ngram_hashes(words, self.config.ngram, short_rows="whole")
        return signatures(grams, len(words), self.params, self.device)

    def prepare(self, batch: TrainBatch) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Local rows, items and estimated Jaccard of the pairs at or above the floor."""
        from thresher.curation.lsh import band_keys
        from thresher.curation.minhash import empty_rows, estimate_jaccard

        sigs = self._signatures(batch.words)
        keys = band_keys(sigs, self.banding)
        valid = ~empty_rows(sigs)
        row, band = np.nonzero(np.broadcast_to(valid[:, None], keys.shape))
        frame = pl.DataFrame({"band": band.astype(np.int64), "key": keys[row, band], "row": row.astype(np.int64)})
        pairs = frame.join(self.buckets, on=["band", "key"]).select("row", "item").unique()
        if pairs.is_empty():
            nothing = np.zeros(0, dtype=np.int64)
            return nothing, nothing, np.zeros(0)
        rows, items = pairs["row"].to_numpy(), pairs["item"].to_numpy()
        scores = estimate_jaccard(sigs[rows], self.item_signatures[items])
        keep = scores >= self.config.floor
        return rows[keep], items[keep], scores[keep]

    def scan(self, batch: TrainBatch, prepared: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> np.ndarray:
        rows, items, scores = prepared if prepared is not None else self.prepare(batch)
        if len(rows):
            self.found.append(_as_matches(rows + batch.offset, items, scores, self.name))
        return np.unique(rows)


@dataclass(frozen=True)
class EmbeddingMatchConfig:
    model: str | None = None  # path or hub id; default: the offline all-MiniLM-L6-v2
    threshold: float = 0.85  # cosine similarity of the best turn (0.85 keeps GSM8K-train false positives < 0.5% with MiniLM)
    neighbours: int = 3  # nearest benchmark items looked at per training row
    floor: float = 0.5
    cache_dir: str | None = None
    device: str = "cpu"
    backend: str = "onnx"  # on the CPU: torch, onnx (the same vectors, faster) or onnx-int8 (faster still, cosines within ~0.02)

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise InputError(f"embedding threshold must be in (0, 1], got {self.threshold}")
        if self.backend not in ("torch", "onnx", "onnx-int8"):
            raise InputError(f"embedding backend must be torch, onnx or onnx-int8, not {self.backend!r}")


def _final_ask(question: str, min_words: int = 8) -> str:
    """The last line of a question that follows a passage (a reading text, a quoted source), when it is
    a question of its own (>= ``min_words`` words); else "". Rephrasings often keep only that ask."""
    lines = [line.strip() for line in question.strip().splitlines() if line.strip()]
    if len(lines) < 2 or len(lines[-1].split()) < min_words:
        return ""
    return lines[-1]


class EmbeddingDetector(_Collected):
    """Each item is indexed as its question, as question with answer (a rephrased solution resembles
    that), and, after a passage, as its final ask; each training turn is searched on its own, so a long
    answer next to a copied question does not dilute it. A row's score for an item is its best turn
    against any of the item's vectors."""

    name = "embedding"

    def __init__(self, items: pl.DataFrame, config: EmbeddingMatchConfig = EmbeddingMatchConfig()) -> None:
        from thresher.curation.embeddings import EmbeddingIndex, encode, load_encoder

        self.config = config
        self.encoder = load_encoder(config.model, config.device, config.backend)
        self._encode = encode
        questions = items["question"].to_list()
        with_answer = items.select(pl.concat_str(["question", "answer"], separator="\n"))["question"].to_list()
        answered = [i for i, a in enumerate(items["answer"].to_list()) if a]
        asks = [_final_ask(q) for q in questions]
        after_passage = [i for i, ask in enumerate(asks) if ask]
        texts = questions + [with_answer[i] for i in answered] + [asks[i] for i in after_passage]
        self.vector_item = np.concatenate(
            [np.arange(len(questions)), np.array(answered, dtype=np.int64), np.array(after_passage, dtype=np.int64)]
        ).astype(np.int64)
        vectors = encode(texts, config.model, config.cache_dir, device=config.device, encoder=self.encoder, show_progress=False)
        self.index = EmbeddingIndex(vectors, exact_limit=max(len(texts), 1), device=config.device)
        self.k = min(3 * config.neighbours, len(texts))  # an item's three vectors may all be near
        self.found: list[pl.DataFrame] = []

    def prepare(self, batch: TrainBatch) -> None:
        return None  # the encoder runs in order, on the calling thread

    def scan(self, batch: TrainBatch, prepared: None = None) -> np.ndarray:
        if batch.turns is not None:
            exploded = pl.DataFrame({"row": np.arange(len(batch)), "turn": batch.turns}).explode("turn").drop_nulls()
            exploded = exploded.filter(pl.col("turn").str.len_chars() > 0)
            owner, texts = exploded["row"].to_numpy(), exploded["turn"].to_list()
        else:
            owner, texts = np.arange(len(batch)), batch.texts.to_list()
        if not texts:
            return np.zeros(0, dtype=np.int64)
        vectors = self._encode(
            texts, self.config.model, self.config.cache_dir, device=self.config.device, encoder=self.encoder, show_progress=False
        )
        sims, ids = self.index.search(vectors, self.k)
        rows = np.repeat(owner.astype(np.int64), self.k)
        keep = (ids.ravel() >= 0) & (sims.ravel() >= self.config.floor)
        frame = pl.DataFrame({"row": rows[keep], "item": self.vector_item[ids.ravel()[keep]], "score": sims.ravel()[keep]})
        best = frame.group_by("row", "item").agg(pl.col("score").max())
        best = best.sort(["row", "score"], descending=[False, True]).group_by("row", maintain_order=True).head(self.config.neighbours)
        self.found.append(_as_matches(best["row"].to_numpy() + batch.offset, best["item"].to_numpy(), best["score"].to_numpy(), self.name))
        return np.unique(best["row"].to_numpy())
