"""oneDNN-prepacked CPU inference (t2ibench.cpu_prepack): the same outputs as torch's default kernels to
float rounding, every swapped layer restored, and no use under autograd or autocast."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from t2ibench.cpu_prepack import OneDNNConv2d, OneDNNLinear, available, onednn_prepacked  # noqa: E402
from tiny_t2i import tiny_model  # noqa: E402

pytestmark = [pytest.mark.usefixtures("one_torch_thread"),
              pytest.mark.skipif(not available(), reason="torch built without oneDNN")]


def test_unet_forward_matches_default_kernels_and_layers_come_back():
    model = tiny_model(vae=True).eval()
    unet = model.backbone
    before = {name: type(m) for name, m in unet.named_modules()}
    state = {k: v.clone() for k, v in unet.state_dict().items()}
    x = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    context = model.encode_text(["a red circle", "two squares"])
    t = torch.tensor([10, 500])
    with torch.inference_mode():
        dense = unet(x, t, encoder_hidden_states=context).sample
        with onednn_prepacked(unet) as swapped:
            kinds = {type(m) for m in unet.modules()}
            packed = unet(x, t, encoder_hidden_states=context).sample
    assert swapped == sum(t in (torch.nn.Linear, torch.nn.Conv2d) for t in before.values())
    assert OneDNNLinear in kinds and OneDNNConv2d in kinds
    assert not torch.equal(packed, dense)  # other kernels really ran ...
    torch.testing.assert_close(packed, dense, rtol=1e-5, atol=1e-5 * dense.abs().max().item())  # ... to rounding
    assert {name: type(m) for name, m in unet.named_modules()} == before
    assert all(torch.equal(v, state[k]) for k, v in unet.state_dict().items())


def test_linear_of_any_leading_shape_and_fallbacks():
    linear = torch.nn.Linear(6, 5)
    packed = OneDNNLinear(linear)
    x = torch.randn(2, 3, 4, 6)
    with torch.no_grad():
        torch.testing.assert_close(packed(x), linear(x), rtol=1e-5, atol=1e-6)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # autocast: the dense module's own bf16 path
            assert packed(x).dtype == torch.bfloat16
    y = packed(x.requires_grad_())  # autograd: the dense module, so gradients flow
    y.sum().backward()
    assert linear.weight.grad is not None and x.grad is not None


def test_layers_are_restored_when_the_body_fails():
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.Linear(8, 2))
    with pytest.raises(ValueError), onednn_prepacked(conv):
        assert isinstance(conv[0], OneDNNConv2d)
        raise ValueError("inside")
    assert type(conv[0]) is torch.nn.Conv2d and type(conv[1]) is torch.nn.Linear
