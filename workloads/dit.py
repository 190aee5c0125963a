"""A small diffusion transformer (DiT) denoiser: patchify, sinusoidal timestep embedding,
adaLN-Zero blocks; trained by noise prediction, run as one denoising step or a sampling loop."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from workloads import flops
from workloads.base import (
    BuildContext,
    Instance,
    Work,
    Workload,
    WorkloadError,
    mode_error,
)
from workloads.images import labelled_images
from workloads.serving import ImageServer, ItemServer
from workloads.training import TrainableInstance
from workloads.transformer import Block

TIMESTEPS = 1000
FREQ_DIM = 256


def timestep_features(t: torch.Tensor, dim: int = FREQ_DIM) -> torch.Tensor:
    """Sinusoidal features [batch, dim] of (float) timesteps t [batch]."""
    half = dim // 2
    freqs = torch.exp(-math.log(10_000.0) * torch.arange(half, device=t.device) / half)
    angles = t.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=1)


def alpha_bars(device: torch.device) -> torch.Tensor:
    """Cumulative signal fractions of the linear DDPM schedule (beta 1e-4 .. 0.02)."""
    betas = torch.linspace(1e-4, 0.02, TIMESTEPS, dtype=torch.float64)
    return torch.cumprod(1.0 - betas, dim=0).float().to(device)


def dit_init(model: DiT) -> None:
    """DiT's initialisation (Peebles & Xie's reference code): every linear layer xavier
    uniform with zero bias, the patch embedding likewise on its flattened kernel, the
    timestep MLP's weights N(0, 0.02), and adaLN-Zero: every modulation layer and the output
    layer zero. The learned position table keeps its N(0, 0.02) (the reference's is a fixed
    sin-cos table)."""
    for module in model.modules():
        if isinstance(module, nn.Linear):
            nn.init.xavier_uniform_(module.weight)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
    nn.init.xavier_uniform_(model.embed.weight.view(model.embed.weight.shape[0], -1))
    if model.embed.bias is not None:
        nn.init.zeros_(model.embed.bias)
    for layer in (model.t_mlp[0], model.t_mlp[2]):
        nn.init.normal_(layer.weight, 0.0, 0.02)
    for linear in (*model.modulations, model.final_mod, model.out):
        nn.init.zeros_(linear.weight)
        nn.init.zeros_(linear.bias)


class DiT(nn.Module):
    """Patch embedding + learned positions, `n_layer` adaLN-Zero blocks conditioned on the
    timestep, and an adaLN final layer that un-patchifies to predicted noise; initialised as
    DiT (`dit_init`)."""

    def __init__(
        self, image_size: int, channels: int, patch: int, d_model: int, n_layer: int, n_head: int
    ) -> None:
        super().__init__()
        self.patch, self.channels = patch, channels
        self.grid = image_size // patch
        self.embed = nn.Conv2d(channels, d_model, patch, patch)
        self.pos = nn.Parameter(torch.randn(1, self.grid * self.grid, d_model) * 0.02)
        self.t_mlp = nn.Sequential(
            nn.Linear(FREQ_DIM, d_model), nn.SiLU(), nn.Linear(d_model, d_model)
        )
        self.blocks = nn.ModuleList(
            Block(d_model, n_head, 4 * d_model, causal=False, norm_affine=False)
            for _ in range(n_layer)
        )
        self.modulations = nn.ModuleList(nn.Linear(d_model, 6 * d_model) for _ in range(n_layer))
        self.final_norm = nn.LayerNorm(d_model, elementwise_affine=False)
        self.final_mod = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, patch * patch * channels)
        dit_init(self)

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Predicted noise for noised images x [B, C, H, W] at timesteps t [B]."""
        batch = x.shape[0]
        h = self.embed(x).flatten(2).transpose(1, 2) + self.pos
        c = F.silu(self.t_mlp(timestep_features(t).to(h.dtype)))
        for block, modulation in zip(self.blocks, self.modulations, strict=True):
            h = block(h, modulation=modulation(c).chunk(6, dim=1))
        shift, scale = self.final_mod(c).chunk(2, dim=1)
        h = self.final_norm(h) * (1 + scale[:, None]) + shift[:, None]
        patches = self.out(h).view(batch, self.grid, self.grid, self.channels, self.patch, -1)
        return patches.permute(0, 3, 1, 4, 2, 5).reshape(x.shape)


def forward_flops(p: dict[str, Any], batch: int) -> tuple[float, float]:
    """Forward FLOPs of a batch, and those of its layers fed by data (the patch embedding
    and the first timestep-MLP layer, whose input gradients training does not compute)."""
    d, n_layer, patch, channels = p["d_model"], p["n_layer"], p["patch"], p["channels"]
    grid = p["image_size"] // patch
    tokens = grid * grid
    embed = flops.conv2d(channels, d, patch, grid, grid, batch)
    t_first = flops.linear(batch, FREQ_DIM, d)
    conditioning = t_first + flops.linear(batch, d, d)
    layer = flops.transformer_layer(batch, tokens, tokens, d, 4 * d)
    blocks = n_layer * (layer + flops.linear(batch, d, 6 * d))
    final = flops.linear(batch, d, 2 * d) + flops.linear(
        batch * tokens, d, patch * patch * channels
    )
    return embed + conditioning + blocks + final, embed + t_first


class DiTInstance(TrainableInstance):
    model: DiT

    def __init__(self, ctx: BuildContext, params: dict[str, Any]) -> None:
        self.ctx = ctx
        self.p = params
        model = ctx.materialize(
            lambda: DiT(
                params["image_size"],
                params["channels"],
                params["patch"],
                params["d_model"],
                params["n_layer"],
                params["n_head"],
            )
        )
        self.alpha_bars = alpha_bars(ctx.device)
        self.attach(model, torch.optim.AdamW, lr=params["lr"])

    def batch_at(self, index: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Noised images, their timesteps and the noise, from seeded generators (CPU)."""
        p = self.p
        clean, _ = labelled_images(index, self.ctx.batch_size, p["image_size"], 10, p["channels"])
        generator = torch.Generator().manual_seed(3_000_017 * index + 7)
        t = torch.randint(0, TIMESTEPS, (self.ctx.batch_size,), generator=generator)
        noise = torch.randn(clean.shape, generator=generator)
        device = self.ctx.device
        a = alpha_bars(torch.device("cpu"))[t][:, None, None, None]
        noised = a.sqrt() * clean + (1 - a).sqrt() * noise
        return noised.to(device), t.to(device), noise.to(device)

    def loss(self, batch: object) -> torch.Tensor:
        noised, t, noise = batch  # type: ignore[misc]
        return F.mse_loss(self.train_forward(noised, t).float(), noise)

    def _sample(self, start: torch.Tensor) -> torch.Tensor:
        """Deterministic DDIM sampling from noise `start` in `steps` model evaluations."""
        steps = self.p["steps"]
        times = torch.linspace(TIMESTEPS - 1, 0, steps).long().tolist()
        x = start
        for i, t in enumerate(times):
            a = self.alpha_bars[t]
            a_prev = self.alpha_bars[times[i + 1]] if i + 1 < steps else torch.ones_like(a)
            ts = torch.full((x.shape[0],), t, device=x.device)
            eps = self.forward(x, ts).float()
            x0 = (x - (1 - a).sqrt() * eps) / a.sqrt()
            x = a_prev.sqrt() * x0 + (1 - a_prev).sqrt() * eps
        return x

    def step(self, mode: str) -> Callable[[], None]:
        noised, t, _ = self.batch
        if mode == "infer":
            return self.infer_step(noised, t)
        if mode == "train":
            return self.train_step()
        if mode == "sample":
            start = torch.randn(noised.shape, generator=torch.Generator().manual_seed(11))
            start = start.to(self.ctx.device)

            def sample() -> None:
                self.model.eval()
                with torch.inference_mode(), self.ctx.autocast():
                    self.last = self._sample(start)

            return sample
        raise mode_error("dit", mode, DiTWorkload.modes)

    def server(self, max_batch: int) -> ItemServer:
        """One request = one image sampled in `steps` denoising steps; a batch of requests is
        sampled together."""
        p = self.p
        shape = (max_batch, p["channels"], p["image_size"], p["image_size"])
        start = torch.randn(shape, generator=torch.Generator().manual_seed(13))
        return ImageServer(max_batch, self.serve_step(self._sample), start.to(self.ctx.device))

    def flops(self, mode: str) -> float:
        forward, data_fed = forward_flops(self.p, self.ctx.batch_size)
        if mode == "train":
            return flops.training(forward, data_fed)
        if mode == "sample":
            return self.p["steps"] * forward
        return forward

    def work(self, mode: str) -> Work:
        return Work(items=self.ctx.batch_size, unit="images")

    def extra_metrics(self, mode: str, seconds_per_step: float) -> dict[str, float]:
        if mode == "sample":
            return {
                "seconds_per_image": seconds_per_step / self.ctx.batch_size,
                "denoising_steps": float(self.p["steps"]),
            }
        return {}


class DiTWorkload(Workload):
    name = "dit"
    version = "3"  # 2: DiT's initialisation; 3: inference weights in the case dtype
    description = "Diffusion transformer denoiser (patchify, adaLN-Zero), noise-prediction MSE"
    modes = ("infer", "train", "sample")
    presets = {
        "tiny": {
            "batch": 2,
            "image_size": 16,
            "channels": 3,
            "patch": 4,
            "d_model": 32,
            "n_layer": 2,
            "n_head": 2,
            "steps": 4,
            "lr": 1e-3,
        },
        "small": {
            "batch": 8,
            "image_size": 32,
            "channels": 3,
            "patch": 4,
            "d_model": 128,
            "n_layer": 4,
            "n_head": 4,
            "steps": 10,
            "lr": 1e-3,
        },
        "base": {  # DiT-B/2 on 32x32x4 latents (256x256 images)
            "batch": 32,
            "image_size": 32,
            "channels": 4,
            "patch": 2,
            "d_model": 768,
            "n_layer": 12,
            "n_head": 12,
            "steps": 50,
            "lr": 1e-4,
        },
    }

    def validate_params(self, params: dict[str, Any]) -> None:
        super().validate_params(params)
        if params["image_size"] % params["patch"]:
            raise WorkloadError(
                f"dit: image_size ({params['image_size']}) must be divisible by patch "
                f"({params['patch']})."
            )
        if params["d_model"] % params["n_head"]:
            raise WorkloadError(
                f"dit: d_model ({params['d_model']}) must be divisible by n_head "
                f"({params['n_head']})."
            )

    def build(self, ctx: BuildContext) -> Instance:
        return DiTInstance(ctx, ctx.params)
