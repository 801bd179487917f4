"""Sampling speed-ups that must not change a pixel: cross-attention K/V reuse, the unconditional context
computed once, and t2ibench's low-precision loop in diffusers' own order (bf16 images equal to
StableDiffusionPipeline's under torch.autocast)."""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
import t2ibench.cross_attention_cache as kv  # noqa: E402
from t2ibench.generate import Protocol, T2IModelSampler, initial_noise, load_sampleable, sample_batch  # noqa: E402
from tiny_t2i import tiny_model  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_torch_thread")
PROMPTS = ["a red circle and a square", "two blue triangles"]


@contextlib.contextmanager
def kv_reuse(monkeypatch, off: bool = False):
    """Count what t2ibench's samplers reuse: yields the (hits, misses) of each call; `off` runs inside
    `kv.disabled()`, the switch the benchmarks time the plain loop with."""
    original, calls = kv.reuse_cross_attention_kv, []

    @contextlib.contextmanager
    def counted(model, enabled=True):
        with original(model, enabled) as wrappers:
            yield wrappers
            calls.append((sum(w.hits for w in wrappers), sum(w.misses for w in wrappers)))

    monkeypatch.setattr(kv, "reuse_cross_attention_kv", counted)
    with kv.disabled() if off else contextlib.nullcontext():
        yield calls
    monkeypatch.setattr(kv, "reuse_cross_attention_kv", original)


@pytest.mark.parametrize("family", ["sd", "pixart-alpha"])
def test_reused_keys_and_values_leave_pipeline_images_unchanged(family, tmp_path, monkeypatch):
    from builders.pipelines import build_pipeline_dir

    model = load_sampleable(build_pipeline_dir(family, tmp_path / family))
    protocol = Protocol(steps=4, resolution=16)
    with kv_reuse(monkeypatch, off=True) as calls:
        plain = sample_batch(model, PROMPTS, [0, 1], protocol)
    assert calls == [(0, 0)]
    with kv_reuse(monkeypatch) as calls:
        reused = sample_batch(model, PROMPTS, [0, 1], protocol)
    hits, misses = calls[0]
    assert misses > 0 and hits == 3 * misses  # computed on step 1 of 4, reused on steps 2-4
    assert np.array_equal(plain, reused)


def test_reused_keys_and_values_leave_t2ibench_images_unchanged(monkeypatch):
    sampler = T2IModelSampler(tiny_model(vae=True))
    protocol = Protocol(steps=4, resolution=16)
    with kv_reuse(monkeypatch, off=True):
        plain = sample_batch(sampler, PROMPTS, [0, 1], protocol)
    with kv_reuse(monkeypatch) as calls:
        reused = sample_batch(sampler, PROMPTS, [0, 1], protocol)
    assert calls[0][0] > 0 and np.array_equal(plain, reused)


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_t2ibench_loop_equals_stable_diffusion_pipeline_under_autocast(dtype):
    """Same UNet, VAE, context and noise: StableDiffusionPipeline's images, bit for bit, in bf16 as in fp32."""
    from diffusers import StableDiffusionPipeline

    model = tiny_model(vae=True).eval()
    sampler = T2IModelSampler(model)
    ours = sample_batch(sampler, PROMPTS, [5, 6], Protocol(steps=4, resolution=16, dtype=dtype))
    pipe = StableDiffusionPipeline(vae=model.vae, text_encoder=None, tokenizer=None, unet=model.backbone,
                                   scheduler=model.schedule.ddim(), safety_checker=None, feature_extractor=None,
                                   requires_safety_checker=False)
    pipe.vae.config.scaling_factor = model.vae_scaling
    pipe.set_progress_bar_config(disable=True)
    with torch.no_grad():
        cond, uncond = model.encode_text(PROMPTS), model.encode_text([""] * 2)
    latents, _ = initial_noise(sampler.noise_shape(16), [5, 6])
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bf16"):
        theirs = pipe(prompt_embeds=cond, negative_prompt_embeds=uncond, height=16, width=16, num_inference_steps=4,
                      guidance_scale=7.5, latents=latents, output_type="np").images
    theirs = (theirs * 255).round().astype("uint8")
    assert np.array_equal(ours, theirs)
    if dtype == "bf16":  # and bf16 really is another computation
        assert not np.array_equal(ours, sample_batch(sampler, PROMPTS, [5, 6], Protocol(steps=4, resolution=16)))


def test_unconditional_context_is_encoded_once_per_batch_size(monkeypatch):
    model = tiny_model(vae=False)
    sampler = T2IModelSampler(model)
    encoded: list[list[str]] = []
    real_encode = model.text_encoder.encode
    monkeypatch.setattr(model.text_encoder, "encode", lambda prompts, **kw: encoded.append(prompts) or real_encode(prompts, **kw))
    protocol = Protocol(steps=2, resolution=16)
    first = sample_batch(sampler, PROMPTS, [0, 1], protocol)
    again = sample_batch(sampler, PROMPTS, [0, 1], protocol)
    sample_batch(sampler, PROMPTS[:1], [0], protocol)
    assert [p for p in encoded if p == [""] * len(p)] == [["", ""], [""]]  # 2 rows once, then 1 row once
    assert np.array_equal(first, again)
    with torch.no_grad():  # a changed text encoder is encoded afresh
        next(model.text_encoder.parameters()).add_(1.0)
    sample_batch(sampler, PROMPTS, [0, 1], protocol)
    assert [p for p in encoded if p == [""] * len(p)] == [["", ""], [""], ["", ""]]


class _Count(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.linear, self.calls = torch.nn.Linear(4, 3), 0

    def forward(self, x):
        self.calls += 1
        return self.linear(x)


class _Attention(torch.nn.Module):
    is_cross_attention = True

    def __init__(self):
        super().__init__()
        self.to_k, self.to_v = _Count(), _Count()


def test_a_changed_context_is_projected_again_and_modules_are_restored():
    attn = _Attention()
    names = list(attn.state_dict())
    context = torch.randn(2, 5, 4)
    with torch.no_grad(), kv.reuse_cross_attention_kv(attn) as wrappers:
        first = attn.to_k(context)
        assert attn.to_k(context) is first and attn.to_k(context.view(10, 4).view(2, 5, 4)) is first  # views hit
        context.mul_(2)  # an in-place write bumps the version: recomputed, and right
        assert torch.equal(attn.to_k(context), attn.to_k.projection(context))
        assert not torch.equal(attn.to_k(context), first)
        with torch.autocast("cpu", dtype=torch.bfloat16):  # another autocast state is another computation
            assert attn.to_k(context).dtype == torch.bfloat16
        assert len(wrappers) == 2 and wrappers[0].hits >= 3
    assert isinstance(attn.to_k, _Count) and list(attn.state_dict()) == names
    with pytest.raises(RuntimeError), kv.reuse_cross_attention_kv(attn):
        raise RuntimeError("the sampler failed")
    assert isinstance(attn.to_k, _Count) and isinstance(attn.to_v, _Count)


def test_no_reuse_under_autograd_or_after_two_misses():
    attn = _Attention()
    with kv.reuse_cross_attention_kv(attn):
        context = torch.randn(2, 5, 4)
        attn.to_k(context), attn.to_k(context)
        assert attn.to_k.projection.calls == 2 and attn.to_k.hits == 0  # gradients on: never cached
        with torch.no_grad():
            for _ in range(3):
                attn.to_k(torch.randn(2, 5, 4))  # a new context every call (a per-step projection)
            attn.to_k(context), attn.to_k(context)
        assert attn.to_k.hits == 0 and attn.to_k.projection.calls == 7  # stopped caching after two misses
