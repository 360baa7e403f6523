"""Shared fixtures: the real data in ../shared/data (read in place, never copied into the repo)."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

import pytest

from tests.helpers import SHARED_DATA

# Importing this file changes nothing (benchmarks once imported it and inherited TRITON_INTERPRET=1 on a GPU).
# The Makefile sets TRITON_INTERPRET and the offline flags for the suite; the hooks below, which only pytest
# calls, give a bare ``pytest`` the rest for the length of its session.
_SESSION_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
_patch = pytest.MonkeyPatch()


def pytest_configure(config: pytest.Config) -> None:
    """Offline (a hub lookup would hang for over a minute before failing), and caches (embeddings, reference
    log-probs) in a folder of this session rather than the user's ~/.cache; before collection imports anything."""
    for name, value in _SESSION_ENV.items():
        if name not in os.environ:
            _patch.setenv(name, value)
    if "THRESHER_CACHE_DIR" not in os.environ:
        _patch.setenv("THRESHER_CACHE_DIR", tempfile.mkdtemp(prefix="thresher-test-cache-"))


def pytest_unconfigure(config: pytest.Config) -> None:
    _patch.undo()


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared data folder; its absence is an error, not a reason to skip."""
    if not (SHARED_DATA / "SOURCES.md").is_file():
        pytest.fail(f"real test data not found at {SHARED_DATA} (set THRESHER_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def tokenizer_dir(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small BPE tokenizer trained on LIMA, saved as tokenizer.json and as a transformers folder."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    texts = [r["instruction"] + "\n" + r["output"] for r in json.loads((shared_data / "sft/lima.json").read_text())]
    tok = Tokenizer(models.BPE(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=2000, special_tokens=["[UNK]"], show_progress=False))
    folder = tmp_path_factory.mktemp("tok")
    tok.save(str(folder / "tokenizer.json"))
    PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]").save_pretrained(str(folder / "hf"))
    return folder


from thresher.tiny import CHAT_TEMPLATE  # noqa: E402, F401  (re-exported for the tests)


def make_tiny_chat_model(shared_data: Path, folder: Path, sequence_classifier: bool = False) -> Path:
    """A tiny random Llama (causal LM, or a one-output reward model) with a chat-templated BPE
    tokenizer trained here on LIMA, saved as a transformers folder."""
    from thresher.tiny import lima_texts
    from thresher.tiny import make_tiny_chat_model as make

    return make(lima_texts(shared_data / "sft/lima.json", 400), folder, sequence_classifier=sequence_classifier)


@pytest.fixture(scope="session")
def tiny_chat_model(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_chat_model(shared_data, tmp_path_factory.mktemp("tiny-chat"))


@pytest.fixture(scope="session")
def tiny_reward_model(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_chat_model(shared_data, tmp_path_factory.mktemp("tiny-rm"), sequence_classifier=True)
