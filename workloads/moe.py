"""A DeepSeek-style mixture-of-experts decoder on byte-level text: the llama block (RMSNorm,
RoPE, grouped-query attention with a KV cache) with its MLP replaced, after `first_dense`
dense layers, by `n_expert` fine-grained routed SwiGLU experts (top-k of a softmax router)
plus `n_shared` shared experts every token passes through.

Training adds the auxiliary load-balancing loss (expert level, over the batch:
aux_alpha * sum_i f_i * P_i with f_i = n_expert / (top_k * N) x tokens routed to expert i and
P_i the mean router probability of i) and a capacity limit: each expert takes at most
ceil(capacity_factor * N * top_k / n_expert) of a step's N tokens, in token order, and the
token slots beyond it are dropped (the token keeps its residual and its other experts).
Inference never drops (capacity_factor 0 means no limit in training either).

Under `bench run --nproc N > 1` the experts are sharded over the N ranks (expert
parallelism; `expert_parallel=false` replicates them instead): tokens go to the rank holding
their expert and come back through `all_to_all_single`; everything else is data parallel.
FLOPs and bytes per step stay those of the whole model on one rank's batch.

The base preset is shaped like DeepSeek-V2-Lite: d_model 2048, 27 layers of which the first
is dense (MLP 10944), 64 routed experts of width 1408 with top-6 routing, 2 shared experts,
vocabulary 102400, untied head, 16 attention heads. DeepSeek's multi-head latent attention
(MLA) is replaced by grouped-query attention with 8 KV heads of 128, which has about the
same weights (12.6M against MLA's 13.8M per layer): 15.67B parameters in all against the
published 15.7B, 2.42B active per token (input embedding table excluded) against 2.4B.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_nn
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call
from torch.nn.parallel import DistributedDataParallel

from backends.base import dtype_name as dtype_name_of
from workloads import flops
from workloads.base import (
    TRAIN_MODE,
    BuildContext,
    CaseUnsupported,
    FidelityStep,
    Instance,
    Routing,
    WorkloadError,
    weight_bytes,
    weight_dtype,
)
from workloads.gpt import GPTWorkload
from workloads.llama import (
    Llama,
    LlamaInstance,
    SwiGLU,
    attention_params,
    check_heads,
)


class MoEMLP(nn.Module):
    """Routed experts (weights stacked [n_expert, ...]) chosen per token by a softmax router
    computed in fp32, plus optional shared experts (one SwiGLU of n_shared x d_expert).

    The module holds the routed experts `experts` (default all; expert parallelism builds
    each rank with its own range only, `local_experts`, so no rank allocates the others).
    Each expert's weights are drawn from its own generator (`expert_generator`: seed, layer
    and expert), so an expert has the same weights whichever rank builds it and whatever
    else is built; `normal_init` leaves them alone (`own_init`).

    After each forward it keeps what the harness reports: `last_experts` ([N, top_k] chosen
    experts, in order of probability), `aux_loss` (the load-balancing loss without its
    coefficient; None outside training) and `dropped` (token slots over capacity)."""

    def __init__(
        self,
        d_model: int,
        n_expert: int,
        top_k: int,
        d_expert: int,
        n_shared: int,
        capacity_factor: float,
        norm_topk: bool = False,
        experts: range | None = None,
        layer: int = 0,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.n_expert, self.top_k = n_expert, top_k
        self.capacity_factor, self.norm_topk = capacity_factor, norm_topk
        self.router = nn.Linear(d_model, n_expert, bias=False)
        self.experts = experts if experts is not None else range(n_expert)
        held = len(self.experts)
        self.w_gate = nn.Parameter(torch.empty(held, d_model, d_expert))
        self.w_up = nn.Parameter(torch.empty(held, d_model, d_expert))
        self.w_down = nn.Parameter(torch.empty(held, d_expert, d_model))
        self.init_experts(layer, torch.initial_seed() if seed is None else seed)
        self.shared = SwiGLU(d_model, n_shared * d_expert) if n_shared else None
        self.group: Any = None
        self.world = 1
        self.last_experts: torch.Tensor | None = None
        self.aux_loss: torch.Tensor | None = None
        self.dropped: torch.Tensor | None = None
        self.slots = 0

    own_init = ("w_gate", "w_up", "w_down")
    """Parameters this module initialises itself (`init_experts`); `normal_init` skips them."""

    def init_experts(self, layer: int, seed: int) -> None:
        """Draw each held expert's gate, up and down weights from N(0, DEEPSEEK_INIT_STD)
        with its own generator (`expert_generator(seed, layer, expert)`)."""
        with torch.no_grad():
            for index, expert in enumerate(self.experts):
                generator = expert_generator(seed, layer, expert)
                for weight in (self.w_gate, self.w_up, self.w_down):
                    weight[index].normal_(0.0, DEEPSEEK_INIT_STD, generator=generator)

    def route(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(top-k weights [N, k], experts [N, k], all probabilities [N, E]) of tokens x [N, d],
        the router logits and softmax in at least fp32 (fp64 on an fp64 reference) whatever
        the autocast dtype and the dtype the weights are stored in."""
        precision = torch.promote_types(self.router.weight.dtype, torch.float32)
        weight = self.router.weight
        with torch.autocast(x.device.type, enabled=False):
            if weight.dtype == precision:
                logits = self.router(x.to(precision))
            else:  # an inference model's weights are in the case dtype: read them up-cast
                up = {"weight": weight.to(precision)}
                logits = functional_call(self.router, up, (x.to(precision),))
        probs = logits.softmax(dim=-1)
        weights, experts = probs.topk(self.top_k, dim=-1)
        if self.norm_topk:
            weights = weights / weights.sum(dim=-1, keepdim=True)
        return weights, experts, probs

    def capacity(self, tokens: int) -> int | None:
        """Token slots one expert takes in a training step of `tokens` tokens (None: no limit)."""
        if not self.training or not self.capacity_factor:
            return None
        return math.ceil(self.capacity_factor * tokens * self.top_k / self.n_expert)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        tokens = flat.shape[0]
        weights, experts, probs = self.route(flat)
        self.last_experts = experts.detach()
        slot_expert = experts.reshape(-1)  # token-major: token t's slots at t*k .. t*k+k-1
        onehot = F.one_hot(slot_expert, self.n_expert)
        if self.training:
            routed = onehot.sum(dim=0).float() * self.n_expert / (self.top_k * tokens)
            self.aux_loss = (routed * probs.mean(dim=0)).sum()
        else:
            self.aux_loss = None
        slot_weight = weights.reshape(-1)
        limit = self.capacity(tokens)
        keep = torch.ones_like(slot_expert, dtype=torch.bool)
        if limit is not None:
            queue_position = (onehot.cumsum(dim=0) * onehot).sum(dim=-1) - 1
            keep = queue_position < limit
        self.dropped = (~keep).sum().detach()
        self.slots = slot_expert.numel()
        kept = keep.nonzero().squeeze(-1)
        order = kept[slot_expert[kept].argsort(stable=True)]
        counts = torch.bincount(slot_expert[kept], minlength=self.n_expert).tolist()
        rows = order // self.top_k
        h = flat[rows]  # the kept token slots, grouped by expert
        y = self.run_experts(h, counts) if self.group is None else self.exchange(h, counts)
        # Expert outputs (autocast dtype) are weighted and summed in at least fp32.
        accumulate = torch.promote_types(flat.dtype, torch.float32)
        out = torch.zeros(flat.shape, dtype=accumulate, device=flat.device)
        out.index_add_(0, rows, y.to(accumulate) * slot_weight[order, None])
        if self.shared is not None:
            out = out + self.shared(flat).to(accumulate)
        return out.to(x.dtype).reshape(shape)

    def run_experts(self, h: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """The local experts applied to `h`, rows grouped by local expert (counts[i] rows for
        local expert i, in order)."""
        # unbind: one view per expert whose backward stacks the gradients once (indexing
        # the stack per expert would fill a full-size zero gradient per expert).
        gates, ups, downs = self.w_gate.unbind(0), self.w_up.unbind(0), self.w_down.unbind(0)
        outputs = []
        for expert, chunk in enumerate(h.split(counts)):
            if chunk.shape[0]:
                g, u, d = gates[expert], ups[expert], downs[expert]
                outputs.append((F.silu(chunk @ g) * (chunk @ u)) @ d)
        if not outputs:
            return h.new_zeros(h.shape)
        return torch.cat(outputs)

    def shard(self, rank: int, world: int, group: Any) -> None:
        """Run as rank `rank`'s share of expert parallelism over `group`: rank r holds experts
        r * E/world .. (r + 1) * E/world - 1 (`local_experts`; the module must have been built
        with exactly those) and receives their tokens from every rank through
        all_to_all_single."""
        expected = local_experts(self.n_expert, rank, world)
        if self.experts != expected:
            raise ValueError(
                f"rank {rank} of {world} holds experts {expected.start}..{expected.stop - 1}, "
                f"but this layer was built with {self.experts.start}..{self.experts.stop - 1}"
            )
        for name in ("w_gate", "w_up", "w_down"):
            # Each rank's loss is the mean over its own tokens and data-parallel training
            # averages the replicated gradients over ranks; an expert's gradient arrives
            # summed over every rank's tokens, so it is averaged the same way.
            getattr(self, name).register_hook(lambda grad: grad / world)
        self.group, self.world = group, world

    def exchange(self, h: torch.Tensor, counts: list[int]) -> torch.Tensor:
        """Expert-parallel experts: send each slot of `h` (grouped by global expert) to the
        rank holding its expert, run the local experts on what arrives from every rank, and
        send the outputs back (all_to_all_single both ways, differentiable), in h's order."""
        world = self.world
        local = self.n_expert // world
        device = h.device
        send = torch.tensor(counts, dtype=torch.long, device=device).view(world, local)
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send, group=self.group)  # recv[src, e]: src's rows for e
        send_splits = send.sum(dim=1).tolist()
        recv_splits = recv.sum(dim=1).tolist()
        received = h.new_empty((sum(recv_splits), h.shape[1]))
        received = dist_nn.all_to_all_single(
            received, h.contiguous(), recv_splits, send_splits, group=self.group
        )
        # Arrived by source rank, then expert; the local experts want them by expert.
        expert_of_row = torch.arange(local, device=device).repeat(world)
        expert_of_row = expert_of_row.repeat_interleave(recv.reshape(-1))
        by_expert = expert_of_row.argsort(stable=True)
        y = self.run_experts(received[by_expert], recv.sum(dim=0).tolist())
        y = y[by_expert.argsort()]
        returned = y.new_empty((sum(send_splits), y.shape[1]))
        return dist_nn.all_to_all_single(
            returned, y.contiguous(), send_splits, recv_splits, group=self.group
        )


def local_experts(n_expert: int, rank: int, world: int) -> range:
    """The routed experts rank `rank` of `world` holds under expert parallelism: a contiguous
    n_expert / world of them (`world` 1: all)."""
    local = n_expert // world
    return range(rank * local, (rank + 1) * local)


def expert_generator(seed: int, layer: int, expert: int) -> torch.Generator:
    """A CPU generator of its own for expert `expert` of MoE layer `layer` under `seed`."""
    digest = hashlib.blake2b(f"moe-expert/{seed}/{layer}/{expert}".encode(), digest_size=8)
    return torch.Generator().manual_seed(int.from_bytes(digest.digest()) & (2**63 - 1))


def moe_layers(model: nn.Module) -> list[MoEMLP]:
    """The mixture-of-experts MLPs of `model`, in layer order."""
    return [m for m in model.modules() if isinstance(m, MoEMLP)]


DEEPSEEK_INIT_STD = 0.006
"""DeepSeek-V2's initialisation: every learnable weight matrix N(0, 0.006) (the paper's
hyper-parameters; its published configs' initializer_range), norm weights 1."""


def build_moe(params: dict[str, Any], experts: range | None = None) -> Llama:
    """The MoE decoder of a parameter set (see MoEWorkload.presets), initialised as
    DeepSeek-V2 (`DEEPSEEK_INIT_STD`), holding the routed experts `experts` of each MoE layer
    (default all: expert parallelism passes a rank's `local_experts`). Every other weight
    comes from torch's global generator as seeded, the experts from their own
    (`expert_generator` under `torch.initial_seed()`), so the experts a rank holds equal
    those of the whole model built under the same seed."""
    d_model = params["d_model"]
    seed = torch.initial_seed()

    def make_mlp(layer: int) -> nn.Module:
        if layer < params["first_dense"]:
            return SwiGLU(d_model, params["d_ff_dense"])
        return MoEMLP(
            d_model,
            params["n_expert"],
            params["top_k"],
            params["d_expert"],
            params["n_shared"],
            params["capacity_factor"],
            params["norm_topk"],
            experts=experts,
            layer=layer,
            seed=seed,
        )

    return Llama(
        params["vocab"],
        params["seq_len"],
        d_model,
        params["n_layer"],
        params["n_head"],
        params["n_kv_head"],
        make_mlp,
        tied=params["tied"],
        rope_theta=params["rope_theta"],
        init_std=DEEPSEEK_INIT_STD,
    )


def parameter_counts(params: dict[str, Any]) -> tuple[int, int]:
    """(total, active) parameters of the MoE decoder of `params`, counted from its shapes.

    Active: what one token's forward multiplies with: every weight but the routed experts it
    is not sent to (n_expert - top_k per MoE layer) and, when untied, the input embedding
    table (a lookup, not a matmul), as DeepSeek counts its activated parameters."""
    d, vocab = params["d_model"], params["vocab"]
    expert = 3 * d * params["d_expert"]
    moe = params["n_layer"] - params["first_dense"]
    attention = attention_params(d, params["n_head"], params["n_kv_head"])
    mlp_dense = 3 * d * params["d_ff_dense"]
    mlp_moe = d * params["n_expert"] + (params["n_expert"] + params["n_shared"]) * expert
    norms = (2 * params["n_layer"] + 1) * d
    embeddings = vocab * d * (1 if params["tied"] else 2)
    total = (
        params["n_layer"] * attention
        + params["first_dense"] * mlp_dense
        + moe * mlp_moe
        + norms
        + embeddings
    )
    active = total - moe * (params["n_expert"] - params["top_k"]) * expert
    if not params["tied"]:
        active -= vocab * d
    return total, active


def expert_parallel_world() -> int:
    """The number of processes experts are sharded over: the process group's size when one
    is initialized (bench run --nproc N), else 1."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return 1


_EXPERT_GROUP: list[tuple[Any, Any]] = []
"""(the default process group it was made under, the expert-parallel group): one per process."""


def expert_group() -> Any:
    """This process's expert-parallel process group (all ranks), made once per default group:
    `dist.new_group()` is collective and its communicator lives until destroyed, so one per
    build would pile communicators up."""
    world_group = dist.group.WORLD
    if _EXPERT_GROUP and _EXPERT_GROUP[0][0] is world_group:
        return _EXPERT_GROUP[0][1]
    group = dist.new_group()
    _EXPERT_GROUP[:] = [(world_group, group)]
    return group


TRAIN_COPIES = 4
"""Copies of the weights a training step holds at least, each in the weights' dtype
(`workloads.base.weight_dtype`, fp32 for training): weights, gradients and AdamW's two
moments (activations come on top)."""


SPLIT_HEADROOM = 0.85
"""The share of a device's memory an expert-parallel split may plan to fill with its lower
bound, leaving the rest for activations and the runtime."""


def per_rank_parameters(params: dict[str, Any], world: int) -> int:
    """Parameters one rank holds when the routed experts are sharded over `world` ranks."""
    total, _ = parameter_counts(params)
    routed = (params["n_layer"] - params["first_dense"]) * params["n_expert"]
    routed *= 3 * params["d_model"] * params["d_expert"]
    if world <= 1 or not params["expert_parallel"]:
        return total
    return total - routed + routed // world


def _size(n: int) -> str:
    """Bytes in GiB, or MiB below one GiB."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def copy_bytes(params: dict[str, Any], mode: str, dtype_name: str, world: int) -> int:
    """Bytes one rank's built copy of a `mode` case in `dtype_name` holds at least: its
    parameters at the bytes per parameter the build uses (`weight_bytes`: fp32 for train,
    the case dtype for the inference modes), times `TRAIN_COPIES` for train."""
    per_param = weight_bytes(dtype_name, mode) * (TRAIN_COPIES if mode == TRAIN_MODE else 1)
    return per_rank_parameters(params, world) * per_param


def _held(params: dict[str, Any], mode: str, dtype_name: str) -> str:
    """What a copy of a `mode` case holds, in words."""
    dtype = dtype_name_of(weight_dtype(dtype_name, mode))
    if mode == TRAIN_MODE:
        return f"{dtype} weights, gradients and AdamW state"
    return f"{dtype} weights"


def memory_refusal(
    params: dict[str, Any],
    mode: str,
    device_bytes: int | None,
    world: int,
    dtype_name: str = "fp32",
    alive_with: list[tuple[str, str]] | None = None,
) -> str | None:
    """Why a `mode` case in `dtype_name` of the MoE decoder of `params` cannot fit a device
    of `device_bytes` with experts over `world` ranks, beside the other copies of the model
    the run keeps built in the same process (`alive_with`, (mode, dtype) each; those too
    large to fit alone are refused too, never built, so they do not count), else None.
    The estimate is a lower bound (`copy_bytes`: weights, and for train gradients and AdamW
    state; no activations), so a refused case could never have run. The reason names
    `--interleave case` when this copy alone would fit, else the smallest `--nproc` with
    expert parallelism whose per-rank share fits, where one does."""
    if not device_bytes:
        return None
    own = copy_bytes(params, mode, dtype_name, world)
    # A copy too large on its own is refused before it allocates: it is never alive.
    others = [copy_bytes(params, m, d, world) for m, d in alive_with or []]
    others = [n for n in others if n <= device_bytes]
    need = own + sum(others)
    if need <= device_bytes:
        return None
    count = per_rank_parameters(params, world)
    held = f"{count / 1e9:.2f}B" if count >= 1e8 else f"{count / 1e6:.2f}M"
    per_param = own // count
    ranks = f" on each of {world} ranks" if world > 1 else ""
    if others and own <= device_bytes:
        return (
            f"moe {mode} needs {_size(own)} per device ({held} parameters{ranks}, "
            f"{per_param} bytes each: {_held(params, mode, dtype_name)}), and the run keeps "
            f"{len(others)} other built cop{'y' if len(others) == 1 else 'ies'} of the model "
            f"alive beside it ({_size(sum(others))}): {_size(need)} in all, but the device "
            f"has {_size(device_bytes)}. Run with --interleave case, which keeps one built "
            "case at a time."
        )
    reason = (
        f"moe {mode} needs at least {_size(own)} per device ({per_param} bytes "
        f"per parameter: {_held(params, mode, dtype_name)}, for {held} parameters{ranks}) "
        f"but the device has {_size(device_bytes)}."
    )
    n_expert = params["n_expert"]
    split = {**params, "expert_parallel": True}
    for n in range(max(world, 1) + 1, n_expert + 1):
        split_need = copy_bytes(split, mode, dtype_name, n)
        if n_expert % n == 0 and split_need <= SPLIT_HEADROOM * device_bytes:
            return (
                f"{reason} With expert parallelism over {n} devices it needs "
                f"{_size(split_need)} each: run with --nproc {n} "
                "(expert_parallel=true, the default)."
            )
    return f"{reason} No expert-parallel split over up to {n_expert} devices fits either."


def shard_experts(model: nn.Module, world: int) -> None:
    """Expert parallelism on a model built with this rank's experts only (`build_moe` with
    `local_experts`): every MoE layer exchanges tokens over this process's expert group
    (`expert_group`, apart from data parallelism's gradient all-reduce); data-parallel
    training (DDP) is told to leave the sharded weights alone."""
    group = expert_group()
    rank = dist.get_rank()
    ignored = []
    for name, module in model.named_modules():
        if isinstance(module, MoEMLP):
            module.shard(rank, world, group)
            ignored += [f"{name}.{weight}" for weight in ("w_gate", "w_up", "w_down")]
    DistributedDataParallel._set_params_and_buffers_to_ignore_for_model(model, ignored)


class MoEInstance(LlamaInstance):
    workload_name = "moe"

    def refuse_if_too_large(self, mode: str) -> None:
        """CaseUnsupported with `memory_refusal`'s reason when a `mode` step cannot fit the
        device: a clear reason before any allocation, never an out-of-memory midway. The
        weights count in the dtype they are built in: the case dtype for an inference case,
        fp32 for a context built for any mode (`BuildContext.mode` None)."""
        ctx = self.ctx
        reason = memory_refusal(
            self.p,
            mode,
            ctx.backend.describe().memory_bytes,
            expert_parallel_world(),
            ctx.dtype_name if ctx.mode is not None else "fp32",
            ctx.alive_with,
        )
        if reason is not None:
            raise CaseUnsupported(reason)

    def step(self, mode: str) -> Callable[[], None]:
        """The step of `mode`, refused first when its memory cannot fit (training needs four
        times the weights' memory)."""
        self.refuse_if_too_large(mode)
        return super().step(mode)

    def make_model(self, params: dict[str, Any]) -> nn.Module:
        """The MoE decoder; under --nproc > 1 (and expert_parallel) with its experts sharded
        over the ranks: each rank builds only its own experts (`local_experts`), whose
        weights are those of the single-process model (`build_moe`), so a rank's memory
        holds its share, never the whole model. Refused before building when the case it is
        built for (its copy, beside the copies the run keeps alive; the weights alone for a
        context of any mode) cannot fit."""
        self.refuse_if_too_large(self.ctx.mode or "infer")
        world = expert_parallel_world()
        if not params["expert_parallel"] or world == 1:
            return build_moe(params)
        if params["n_expert"] % world:
            raise WorkloadError(
                f"moe: n_expert ({params['n_expert']}) must be divisible by the number of "
                f"processes ({world}) for expert parallelism; pass "
                "--param expert_parallel=false to replicate the experts instead."
            )
        model = build_moe(params, local_experts(params["n_expert"], dist.get_rank(), world))
        shard_experts(model, world)
        return model

    def loss(self, batch: object) -> torch.Tensor:
        """Cross-entropy plus aux_alpha x the load-balancing losses of the MoE layers."""
        loss = super().loss(batch)
        aux = [m.aux_loss for m in moe_layers(self.model) if m.aux_loss is not None]
        if aux and self.p["aux_alpha"]:
            loss = loss + self.p["aux_alpha"] * torch.stack(aux).sum()
        return loss

    def forward_flops(self, queries: int, keys: int, head_rows: int | None = None) -> float:
        p, batch = self.p, self.ctx.batch_size
        rows = batch * queries
        d = p["d_model"]
        attention = flops.gqa_attention_layer(batch, queries, keys, d, p["n_head"], p["n_kv_head"])
        dense = flops.swiglu(rows, d, p["d_ff_dense"])
        moe = flops.moe_mlp(
            rows, d, p["n_expert"], p["top_k"], p["d_expert"], p["n_shared"] * p["d_expert"]
        )
        n_moe = p["n_layer"] - p["first_dense"]
        head = flops.linear(rows if head_rows is None else head_rows, d, p["vocab"])
        return p["n_layer"] * attention + p["first_dense"] * dense + n_moe * moe + head

    def bytes_moved(self, mode: str) -> float | None:
        """Memory traffic of a prefill or decode step (`flops.serving_bytes`). Weights read:
        all but the routed experts, plus the experts the step's tokens reach, expected
        n_expert * (1 - (1 - top_k / n_expert)^tokens) per MoE layer under uniform routing
        (a decode step of a few sequences reads a few experts; a prefill reads them all).
        Activations per new token and layer: about 8 * d_model + 2 * KV width, the router
        logits, and the gate, up and product of its top_k routed and its shared experts."""
        if mode not in ("prefill", "decode"):
            return None
        p, batch = self.p, self.ctx.batch_size
        new, cached = self.serving_tokens(mode)
        d, n_expert, top_k = p["d_model"], p["n_expert"], p["top_k"]
        kv_width = d // p["n_head"] * p["n_kv_head"]
        total, _ = parameter_counts(p)
        expert = 3 * d * p["d_expert"]
        reached = n_expert * (1 - (1 - top_k / n_expert) ** (batch * new))
        weights = total - (p["n_layer"] - p["first_dense"]) * (n_expert - reached) * expert
        mlp_width = 3 * (top_k + p["n_shared"]) * p["d_expert"] + n_expert
        return flops.serving_bytes(
            weights,
            batch,
            new,
            cached,
            p["n_layer"],
            kv_width=kv_width,
            activation_width=8 * d + 2 * kv_width + mlp_width,
            vocab=p["vocab"],
            dtype=self.ctx.dtype_name,
            head_rows=batch,
        )

    def routing(self) -> list[torch.Tensor]:
        """The experts each MoE layer chose for each token in the last forward ([N, top_k])."""
        return [m.last_experts for m in moe_layers(self.model) if m.last_experts is not None]

    def fidelity_step(self, index: int) -> FidelityStep:
        """The training step of every model workload, with the experts its forward chose."""
        step = super().fidelity_step(index)
        experts = [e.sort(dim=-1).values.reshape(-1).tolist() for e in self.routing()]
        step.routing = Routing(n_expert=self.p["n_expert"], top_k=self.p["top_k"], experts=experts)
        return step

    def dropped_slots(self) -> tuple[int, int]:
        """(token slots dropped over capacity, token slots routed) in the last forward."""
        layers = moe_layers(self.model)
        dropped = sum(int(m.dropped) for m in layers if m.dropped is not None)
        return dropped, sum(m.slots for m in layers)

    def extra_metrics(self, mode: str, seconds_per_step: float) -> dict[str, float]:
        """gpt's serving figures, the total and active parameters, the number of ranks the
        experts are sharded over (1: not expert-parallel), and, for train, the token slots
        the capacity limit dropped in this rank's last step (count and fraction)."""
        extra = super().extra_metrics(mode, seconds_per_step)
        total, active = parameter_counts(self.p)
        extra.update(params_total=float(total), params_active=float(active))
        layers = moe_layers(self.model)
        extra["expert_parallel_ranks"] = float(layers[0].world if layers else 1)
        if mode == "train":
            dropped, slots = self.dropped_slots()
            extra.update(dropped_tokens=float(dropped), dropped_fraction=dropped / max(slots, 1))
        return extra


class MoEWorkload(GPTWorkload):
    name = "moe"
    # 3: inference weights in the case dtype; 4: each expert drawn from its own generator
    version = "4"
    description = (
        "DeepSeek-style MoE decoder (routed top-k + shared experts, aux loss, capacity) "
        "on the llama block, byte text, AdamW"
    )
    modes = ("infer", "train", "prefill", "decode")
    non_negative = (
        "prompt_len",
        "cache_len",
        "first_dense",
        "n_shared",
        "capacity_factor",
        "aux_alpha",
    )
    presets = {
        "tiny": {
            "batch": 2,
            "seq_len": 32,
            "d_model": 32,
            "n_layer": 2,
            "n_head": 4,
            "n_kv_head": 2,
            "first_dense": 1,
            "d_ff_dense": 64,
            "n_expert": 8,
            "top_k": 2,
            "d_expert": 16,
            "n_shared": 1,
            "capacity_factor": 1.25,
            "aux_alpha": 0.01,
            "norm_topk": False,
            "expert_parallel": True,
            "vocab": 256,
            "tied": False,
            "rope_theta": 10000.0,
            "prompt_len": 0,
            "cache_len": 0,
            "lr": 1e-3,
        },
        "small": {
            "batch": 4,
            "seq_len": 128,
            "d_model": 128,
            "n_layer": 4,
            "n_head": 4,
            "n_kv_head": 2,
            "first_dense": 1,
            "d_ff_dense": 352,
            "n_expert": 16,
            "top_k": 4,
            "d_expert": 64,
            "n_shared": 1,
            "capacity_factor": 1.25,
            "aux_alpha": 0.01,
            "norm_topk": False,
            "expert_parallel": True,
            "vocab": 256,
            "tied": False,
            "rope_theta": 10000.0,
            "prompt_len": 0,
            "cache_len": 0,
            "lr": 1e-3,
        },
        "base": {  # DeepSeek-V2-Lite shape, MLA replaced by GQA (module docstring)
            "batch": 4,
            "seq_len": 2048,
            "d_model": 2048,
            "n_layer": 27,
            "n_head": 16,
            "n_kv_head": 8,
            "first_dense": 1,
            "d_ff_dense": 10944,
            "n_expert": 64,
            "top_k": 6,
            "d_expert": 1408,
            "n_shared": 2,
            "capacity_factor": 1.0,
            "aux_alpha": 0.001,
            "norm_topk": False,
            "expert_parallel": True,
            "vocab": 102400,
            "tied": False,
            "rope_theta": 10000.0,
            "prompt_len": 0,
            "cache_len": 0,
            "lr": 4.2e-4,
        },
    }

    def validate_params(self, params: dict[str, Any]) -> None:
        """gpt's rules, the GQA head grouping, top_k <= n_expert, first_dense <= n_layer."""
        super().validate_params(params)
        check_heads(self.name, params)
        if params["top_k"] > params["n_expert"]:
            raise WorkloadError(
                f"moe: top_k ({params['top_k']}) must be <= n_expert ({params['n_expert']})."
            )
        if params["first_dense"] > params["n_layer"]:
            raise WorkloadError(
                f"moe: first_dense ({params['first_dense']}) must be <= n_layer "
                f"({params['n_layer']})."
            )

    def build(self, ctx: BuildContext) -> Instance:
        return MoEInstance(ctx, ctx.params)
