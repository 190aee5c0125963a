"""Expert parallelism shards before materialising: a rank builds only its own experts, with
the weights the whole model's experts have under the same seed, and holds exactly the
parameters the memory estimate counts for one rank."""

from __future__ import annotations

import torch

from workloads.moe import (
    MoEWorkload,
    build_moe,
    local_experts,
    moe_layers,
    parameter_counts,
    per_rank_parameters,
)


def test_a_rank_builds_only_its_experts_with_the_whole_models_weights() -> None:
    params = MoEWorkload().resolve_params("tiny", {})
    n_expert, world = params["n_expert"], 4
    torch.manual_seed(3)
    whole = build_moe(params)
    whole_params = dict(whole.named_parameters())
    assert sum(p.numel() for p in whole_params.values()) == parameter_counts(params)[0]
    for rank in range(world):
        torch.manual_seed(3)
        shard = build_moe(params, local_experts(n_expert, rank, world))
        held = sum(p.numel() for p in shard.parameters())
        assert held == per_rank_parameters(params, world) < parameter_counts(params)[0]
        for mine, full in zip(moe_layers(shard), moe_layers(whole), strict=True):
            experts = slice(rank * n_expert // world, (rank + 1) * n_expert // world)
            for name in ("w_gate", "w_up", "w_down"):
                local, every = getattr(mine, name), getattr(full, name)
                assert local.shape[0] == n_expert // world
                torch.testing.assert_close(local, every[experts], rtol=0, atol=0)
        for name, parameter in shard.named_parameters():
            if not name.endswith(("w_gate", "w_up", "w_down")):
                torch.testing.assert_close(parameter, whole_params[name], rtol=0, atol=0)


def test_experts_do_not_depend_on_what_else_the_seed_drew() -> None:
    params = MoEWorkload().resolve_params("tiny", {})
    torch.manual_seed(3)
    first = moe_layers(build_moe(params))[0].w_up.detach().clone()
    torch.manual_seed(3)
    torch.randn(1000)  # draws before the build move every other weight, not the experts
    assert torch.equal(moe_layers(build_moe(params))[0].w_up, first)
    torch.manual_seed(4)
    assert not torch.equal(moe_layers(build_moe(params))[0].w_up, first)
