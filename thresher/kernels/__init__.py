"""Triton kernels (CUDA; the CPU under TRITON_INTERPRET=1) with autograd wrappers, plus PyTorch paths and references."""

from thresher.kernels.elementwise import rms_norm, rope, rope_qk, swiglu
from thresher.kernels.linear_logprobs import linear_cross_entropy, linear_logprobs
from thresher.kernels.patch import patch_model

__all__ = ["linear_cross_entropy", "linear_logprobs", "patch_model", "rms_norm", "rope", "rope_qk", "swiglu"]
