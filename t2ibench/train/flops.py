"""Compute accounting of a run: cumulative training FLOPs, throughput and MFU.

Two counts are recorded (both per training sample, multiplied by samples seen):
- `train_flops` (exact): the registry's `compute_stats(spec).train_flops_per_sample` for the spec
  actually trained (its width, depth, input size and text length);
- `train_flops_paper`: the paper's axis, "3x FLOPs of a single DDPM step x batch size x steps", with
  the forward pass in the paper's MAC convention (attention score/value products left out) x 2.
The frozen VAE and text encoder are not counted (the paper counts the backbone only).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ComputeAccount:
    flops_per_sample: float  # exact training FLOPs of one sample (forward + backward)
    paper_flops_per_sample: float  # 3 x 2 x paper-convention forward GMACs x 1e9
    params: int
    gmacs: float  # forward GMACs, full count
    source: str  # where the counts came from

    def achieved(self, samples: float, seconds: float, processes: int, peak_tflops: float) -> dict[str, float]:
        """Throughput and model FLOPs utilisation over an interval."""
        rate = samples / seconds if seconds > 0 else 0.0
        flops_rate = rate * self.flops_per_sample
        mfu = flops_rate / (peak_tflops * 1e12 * processes) if peak_tflops > 0 else 0.0
        return {"samples_per_s": rate, "tflops_per_s": flops_rate / 1e12, "mfu": mfu}


def account_for(spec) -> ComputeAccount:
    """The registry's counts for `spec` (fields read by their exact names: a renamed field fails loudly
    here instead of silently counting 0); torch's FLOP counter only for a spec the registry cannot count."""
    from t2ibench.variants import compute_stats

    try:
        stats = compute_stats(spec)
    except NotImplementedError:
        return _measured(spec)
    gmacs, paper_gmacs = float(stats.gmacs), float(stats.gmacs_paper)
    per_sample = float(stats.train_flops_per_sample)
    if not (gmacs > 0 and paper_gmacs > 0 and per_sample > 0):
        raise ValueError(f"compute_stats({spec.name}) counted no work: gmacs={gmacs}, paper={paper_gmacs}, "
                         f"train FLOPs/sample={per_sample}")
    return ComputeAccount(per_sample, 3 * 2 * paper_gmacs * 1e9, int(stats.params), gmacs, "t2ibench.variants")


def _measured(spec) -> ComputeAccount:
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    model = spec.build()
    params = sum(p.numel() for p in model.parameters())
    sample, t, context = spec.dummy_inputs(1)
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        spec.denoise(model, sample, t, context)
    forward = float(counter.get_total_flops())
    return ComputeAccount(3 * forward, 3 * forward, params, forward / 2e9, "torch FlopCounterMode")
