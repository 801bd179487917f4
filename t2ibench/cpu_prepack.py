"""fp32 CPU inference with oneDNN weights: Linear and Conv2d layers swapped for oneDNN kernels, restored after.

    with onednn_prepacked(unet):      # no autograd inside; the dense modules come back on exit
        eps = unet(x, t, encoder_hidden_states=context).sample

Why: on a CPU the transformer layers of a UNet at 256 px multiply 64- or 256-row activations by large
weight matrices. torch's default path (MKL sgemm via addmm) reaches about 40% of the machine's
2048^3 GEMM peak on those skinny products; oneDNN's inner product on a oneDNN weight tensor reaches
about 65% (benchmarks/bench_variants.py prints both, side by side). Convolutions get their weights
reordered once to oneDNN's blocked layout instead of on every call.

The results equal the dense ones to float rounding (about 1e-6 relative on the sdxl UNet), not bit for
bit: the kernels sum in another order. Memory: the oneDNN copies are made next to the dense weights
(restored on exit), so a model needs twice its fp32 size while inside.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn


class OneDNNLinear(nn.Module):
    """nn.Linear through oneDNN's inner product on a oneDNN copy of the weights, for any leading dims."""

    def __init__(self, dense: nn.Linear):
        super().__init__()
        self.dense = dense
        with torch.no_grad():
            self.weight = dense.weight.detach().to_mkldnn()
            bias = dense.bias if dense.bias is not None else torch.zeros(dense.out_features)
            self.bias = bias.detach().float().to_mkldnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
            return self.dense(x)
        lead = x.shape[:-1]
        y = torch._C._nn.mkldnn_linear(x.reshape(-1, x.shape[-1]).to_mkldnn(), self.weight, self.bias)
        return y.to_dense().reshape(*lead, self.dense.out_features)


class OneDNNConv2d(nn.Module):
    """nn.Conv2d (zero padding) through oneDNN with its weights reordered once to oneDNN's layout."""

    def __init__(self, dense: nn.Conv2d):
        super().__init__()
        self.dense = dense
        with torch.no_grad():
            self.weight = torch._C._nn.mkldnn_reorder_conv2d_weight(
                dense.weight.detach().to_mkldnn(), dense.padding, dense.stride, dense.dilation, dense.groups)
            bias = dense.bias if dense.bias is not None else torch.zeros(dense.out_channels)
            self.bias = bias.detach().float().to_mkldnn()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.is_grad_enabled() or x.dtype != torch.float32 or torch.is_autocast_enabled("cpu"):
            return self.dense(x)
        d = self.dense
        y = torch.mkldnn_convolution(x.contiguous().to_mkldnn(), self.weight, self.bias, d.padding, d.stride,
                                     d.dilation, d.groups)
        return y.to_dense()


def _swappable(module: nn.Module) -> type[nn.Module] | None:
    if type(module) is nn.Linear and module.weight.dtype == torch.float32 and module.weight.device.type == "cpu":
        return OneDNNLinear
    if (type(module) is nn.Conv2d and module.padding_mode == "zeros" and isinstance(module.padding, tuple)
            and module.weight.dtype == torch.float32 and module.weight.device.type == "cpu"):
        return OneDNNConv2d
    return None


def available() -> bool:
    return torch.backends.mkldnn.is_available()


@contextlib.contextmanager
def onednn_prepacked(model: nn.Module) -> Iterator[int]:
    """Inside: `model`'s fp32 CPU Linear and Conv2d layers run through oneDNN (yields how many were swapped).
    Under autograd, autocast or another dtype each layer falls back to its dense module."""
    if not available():
        raise RuntimeError("this torch build has no oneDNN (torch.backends.mkldnn.is_available() is False)")
    swapped: list[tuple[nn.Module, str, nn.Module]] = []
    try:
        for owner in list(model.modules()):
            for name, child in list(owner.named_children()):
                kind = _swappable(child)
                if kind is not None:
                    setattr(owner, name, kind(child))
                    swapped.append((owner, name, child))
        yield len(swapped)
    finally:
        for owner, name, child in swapped:
            setattr(owner, name, child)
