"""Run under torchrun by test_train_loop.py::test_fsdp2_ema_and_full_states: a scaled-down SDXL UNet
sharded with FSDP2 (fully_shard, gloo, CPU), trained 2 steps next to an unsharded copy, checking that the
trainer's EMA over shards equals the EMA of the gathered weights' history, and that the full-state
save/restore helpers of t2ibench/train/state.py round-trip sharded weights, EMA and optimizer state."""

import copy
import sys

import torch
import torch.distributed as dist
from diffusers.models.attention import BasicTransformerBlock
from diffusers.models.resnet import ResnetBlock2D
from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict, set_optimizer_state_dict
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import fully_shard

from t2ibench.train.ema import EMA
from t2ibench.train.state import _options, full_model_state, load_full_model_state
from t2ibench.variants import get_variant


def sharded(spec, seed, mesh):
    net = spec.build(seed=seed)
    for m in net.modules():
        if isinstance(m, (BasicTransformerBlock, ResnetBlock2D)):
            fully_shard(m, mesh=mesh)
    return fully_shard(net, mesh=mesh)


def main() -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    mesh = init_device_mesh("cpu", (world,))
    spec = get_variant("sdxl").scaled(channels=8, transformer_depth=(0, 1, 1), norm_groups=8, head_dim=8,
                                      in_channels=3, context_dim=32, context_tokens=8, sample_size=16)
    net = sharded(spec, 0, mesh)
    assert type(next(net.parameters())).__name__ == "DTensor"
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3)
    ema = EMA(net.named_parameters(), 0.9)
    history = [full_model_state(net)]
    g = torch.Generator().manual_seed(0)
    for _ in range(2):
        x, t, c = torch.randn(4, 3, 16, 16, generator=g), torch.randint(0, 1000, (4,), generator=g), torch.randn(4, 8, 32, generator=g)
        part = slice(rank * 4 // world, (rank + 1) * 4 // world)
        out = net(x[part], t[part], encoder_hidden_states=c[part]).sample
        (out.pow(2).mean(dim=(1, 2, 3)).sum() * world / 4).backward()
        opt.step()
        opt.zero_grad()
        ema.update()
        history.append(full_model_state(net))
    weights = full_model_state(net)
    ema_state = ema.full_state(weights)
    expected = {k: v.clone() for k, v in history[0].items()}
    for h in history[1:]:
        for k in expected:
            expected[k] = expected[k] + 0.1 * (h[k] - expected[k])
    optim_state = get_optimizer_state_dict(net, opt, options=_options())
    if rank == 0:  # full states land on rank 0 (cpu_offload); the trainer writes them from there
        worst = max((ema_state[k] - expected[k]).abs().max().item() for k in expected)
        assert worst < 1e-6, f"EMA over shards differs from the EMA of the gathered history by {worst}"
    # every rank reads the checkpoint files when resuming: hand rank 0's states to all
    shared = [weights, ema_state, optim_state]
    dist.broadcast_object_list(shared, src=0)
    weights, ema_state, optim_state = shared
    # restore everything into a differently initialised sharded model
    net2 = sharded(spec, 1, mesh)
    opt2 = torch.optim.AdamW(net2.parameters(), lr=1e-3)
    load_full_model_state(net2, copy.deepcopy(weights))
    set_optimizer_state_dict(net2, opt2, copy.deepcopy(optim_state), options=_options())
    ema2 = EMA(net2.named_parameters(), 0.9)
    ema2.load_full_state(ema_state)
    restored = full_model_state(net2)
    back = ema2.full_state(restored)
    again = get_optimizer_state_dict(net2, opt2, options=_options())
    if rank == 0:
        assert all(torch.equal(a, weights[k]) for k, a in restored.items())
        assert all(torch.equal(back[k], ema_state[k]) for k in ema_state)
        assert all(torch.equal(again["state"][k]["exp_avg"], optim_state["state"][k]["exp_avg"]) for k in optim_state["state"])
    dist.barrier()
    if rank == 0:
        print("FSDP2 OK")
    dist.destroy_process_group()


if __name__ == "__main__":
    sys.exit(main())
