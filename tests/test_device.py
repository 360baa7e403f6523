"""The compute path is chosen from what torch sees, and said out loud."""

from __future__ import annotations

import logging

import pytest
import torch

from thresher.device import faiss_has_gpu, pick_compute_path


def test_auto_picks_cuda_only_when_present(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="thresher"):
        path = pick_compute_path()
    assert path.is_gpu == torch.cuda.is_available()
    assert "compute path:" in caplog.text and path.reason in caplog.text
    assert pick_compute_path("cpu").device == "cpu"
    assert faiss_has_gpu() == (path.is_gpu and faiss_has_gpu())


def test_asking_for_cuda_without_it_is_an_error() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(RuntimeError, match="no CUDA device"):
        pick_compute_path("cuda")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        pick_compute_path("tpu")
