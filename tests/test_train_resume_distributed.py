"""Resuming from a checkpoint continues the identical loss curve (and a resume that loses the
optimizer state does not); two CPU processes (torchrun, gloo, FSDP2) train exactly like one."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from thresher.train.config import load_config


def _config(tmp_path: Path, model: Path, shared_data: Path, **extra: object) -> Path:
    path = tmp_path / "sft.yaml"
    lines = [
        f"model: {model}",
        f"data: {{train: {shared_data}/sft/lima.json}}",
        "max_length: 128",
        "pack_length: 512",
        "gradient_accumulation: 2",
        "optim: {lr: 0.002, warmup_ratio: 0.2, schedule: cosine}",
        "max_steps: 6",
        "seed: 3",
        f"output_dir: {tmp_path / 'run'}",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def _losses(folder: Path, key: str = "loss") -> dict[int, float]:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r[key] for r in records if key in r}


@pytest.mark.slow
def test_resume_continues_the_identical_loss_curve(tiny_chat_model: Path, shared_data: Path, tmp_path: Path) -> None:
    from thresher.train.sft import run_sft

    config = _config(tmp_path, tiny_chat_model, shared_data, save_every=3)
    run_sft(load_config(config))
    straight = _losses(tmp_path / "run")
    assert sorted(straight) == [1, 2, 3, 4, 5, 6] and (tmp_path / "run/checkpoint-3/trainer_state.pt").is_file()
    assert list((tmp_path / "run/tensorboard").glob("events.out.tfevents.*"))  # TensorBoard (a [dev] dependency) gets the scalars

    run_sft(load_config(config, ["resume_from=latest", f"output_dir={tmp_path / 'run'}"]))  # picks checkpoint-3 (the only one)
    resumed = _losses(tmp_path / "run")  # steps 4-6 of the first run are dropped, then written by the resumed run
    lines = (tmp_path / "run/metrics.jsonl").read_text().splitlines()
    steps = [json.loads(line)["step"] for line in lines if '"loss"' in line]
    assert steps == [1, 2, 3, 4, 5, 6]  # no step written twice
    assert all("time" in json.loads(line) and "wall_s" in json.loads(line) for line in lines)
    assert any("resumed_from" in line for line in lines)
    again = [
        json.loads(line)["loss"] for line in lines[lines.index(next(x for x in lines if "resumed_from" in x)) + 1 :] if '"loss"' in line
    ]
    assert again == [straight[4], straight[5], straight[6]] and resumed[6] == straight[6]

    # negative control: the same checkpoint with a fresh optimizer drifts after its first step
    broken = tmp_path / "broken"
    shutil.copytree(tmp_path / "run/checkpoint-3", broken)
    state = torch.load(broken / "trainer_state.pt", weights_only=False)
    state["optimizer"]["state"] = {}
    torch.save(state, broken / "trainer_state.pt")
    run_sft(load_config(config, [f"resume_from={broken}", f"output_dir={tmp_path / 'broken-run'}"]))
    drifted = _losses(tmp_path / "broken-run")
    assert drifted[4] == straight[4] and abs(drifted[6] - straight[6]) > 1e-4


@pytest.mark.slow
def test_two_gloo_processes_under_fsdp2_equal_one_process(tiny_chat_model: Path, shared_data: Path, tmp_path: Path) -> None:
    from safetensors.torch import load_file

    config = _config(tmp_path, tiny_chat_model, shared_data, device="cpu")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    one = subprocess.run(
        [sys.executable, "-m", "thresher.cli", "train", "sft", str(config), f"output_dir={tmp_path / 'one'}", "-q"],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert one.returncode == 0, one.stderr[-3000:]
    # two processes, one micro-batch each per step: the same 2 micro-batches per step as one process accumulating 2
    two = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            "-m",
            "thresher.cli",
            "train",
            "sft",
            str(config),
            "gradient_accumulation=1",
            "save_every=3",
            f"output_dir={tmp_path / 'two'}",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        env=env,
    )
    assert two.returncode == 0, two.stderr[-5000:]
    a, b = _losses(tmp_path / "one"), _losses(tmp_path / "two")
    assert sorted(a) == sorted(b) == [1, 2, 3, 4, 5, 6]
    torch.testing.assert_close(torch.tensor(list(b.values())), torch.tensor(list(a.values())), rtol=1e-5, atol=1e-6)
    # the gradient itself, not only Adam's scale-free step: a wrongly averaged gradient shows here
    torch.testing.assert_close(
        torch.tensor(list(_losses(tmp_path / "two", "grad_norm").values())),
        torch.tensor(list(_losses(tmp_path / "one", "grad_norm").values())),
        rtol=1e-4,
        atol=1e-7,
    )
    wa, wb = load_file(tmp_path / "one/final/model.safetensors"), load_file(tmp_path / "two/final/model.safetensors")
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wb[key], wa[key], rtol=1e-4, atol=1e-5)
    assert (tmp_path / "two/checkpoint-3/trainer_state.pt").is_file()
    # negative control: the initial weights differ from the trained ones by far more than the tolerance
    w0 = load_file(tiny_chat_model / "model.safetensors")
    assert max(float((wa[k] - w0[k]).abs().max()) for k in wa) > 1e-3


@pytest.mark.slow
def test_training_with_the_triton_kernels_equals_the_pytorch_path(tiny_chat_model: Path, shared_data: Path, tmp_path: Path) -> None:
    """kernels=triton (fused log-probs, patched RMSNorm/RoPE/SwiGLU; on the CPU under TRITON_INTERPRET=1) gives the
    loss curve of kernels=torch. Run as subprocesses: patching a model family is process-wide."""
    from thresher.kernels.dispatch import OPS, triton_usable

    if not triton_usable(torch.device("cpu")):
        pytest.skip("needs triton and TRITON_INTERPRET=1 (the Makefile sets it)")
    config = _config(tmp_path, tiny_chat_model, shared_data, device="cpu")
    runs = {}
    for backend in ("torch", "triton"):
        done = subprocess.run(
            [
                sys.executable,
                "-m",
                "thresher.cli",
                "train",
                "sft",
                str(config),
                f"kernels={backend}",
                "max_steps=2",
                "gradient_accumulation=1",
                "max_length=40",
                "pack_length=80",
                f"output_dir={tmp_path / backend}",
                "-q",
            ],
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, "TRITON_INTERPRET": "1"},
        )
        assert done.returncode == 0, done.stderr[-3000:]
        intro = json.loads((tmp_path / backend / "metrics.jsonl").read_text().splitlines()[0])
        assert intro["kernels"] == dict.fromkeys(OPS, backend)  # every op as asked, recorded in the run's metrics
        runs[backend] = (_losses(tmp_path / backend), _losses(tmp_path / backend, "grad_norm"))
    torch.testing.assert_close(
        torch.tensor(list(runs["triton"][0].values())), torch.tensor(list(runs["torch"][0].values())), rtol=1e-5, atol=1e-6
    )
    torch.testing.assert_close(
        torch.tensor(list(runs["triton"][1].values())), torch.tensor(list(runs["torch"][1].values())), rtol=1e-4, atol=1e-6
    )
