"""Noise schedules and samplers, k-diffusion style: short functions over a denoiser and sigmas.

A denoiser is any callable `denoiser(x, sigma) -> denoised` with `sigma` a per-sample vector;
the parametrisation of the network (eps, v) lives in the denoiser, not in the sampler.
"""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

Denoiser = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class SamplerStep:
    """What a sampler reports after each step: step `index` (0-based) of `total` is done."""

    index: int
    total: int


StepCallback = Callable[[SamplerStep], None]


class DiscreteEpsSchedule:
    """The 1000 discrete noise levels of an eps-prediction model with a linear beta schedule.

    sigma_k = sqrt((1 - alphabar_k) / alphabar_k); the cumulative product is taken in float64 and
    stored in float32, as the reference does, so that every derived float32 value matches.
    """

    def __init__(self, beta_start: float = 0.00085, beta_end: float = 0.020, num_timesteps: int = 1000):
        betas = np.linspace(beta_start, beta_end, num_timesteps, dtype=np.float64)
        alphas_cumprod = torch.tensor(np.cumprod(1.0 - betas), dtype=torch.float32)
        self.sigmas = ((1 - alphas_cumprod) / alphas_cumprod) ** 0.5
        self.log_sigmas = self.sigmas.log()

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The index of the nearest discrete level in log-sigma, per sample: (B,) float -> (B,) int64."""
        distances = sigma.log().to(self.log_sigmas.device) - self.log_sigmas[:, None]
        return distances.abs().argmin(dim=0).view(sigma.shape).to(sigma.device)

    def karras_sigmas(self, steps: int, rho: float = 7.0) -> torch.Tensor:
        """Karras et al. (2022) schedule from sigma_max down to sigma_min, then 0: `steps + 1` values."""
        ramp = torch.linspace(0, 1, steps)
        min_inv_rho = self.sigma_min ** (1 / rho)
        max_inv_rho = self.sigma_max ** (1 / rho)
        sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
        return torch.cat([sigmas, sigmas.new_zeros([1])])


@torch.no_grad()
def sample_dpmpp_2m(
    denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, callback: StepCallback | None = None
) -> torch.Tensor:
    """DPM-Solver++(2M), Lu et al. (2022), in k-diffusion's form (deterministic; no noise is added)."""
    sigma_in = x.new_ones([x.shape[0]])
    total = len(sigmas) - 1
    old_denoised = None
    for i in range(total):
        denoised = denoiser(x, sigmas[i] * sigma_in)
        t, t_next = -sigmas[i].log(), -sigmas[i + 1].log()
        h = t_next - t
        # x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h} - 1) D, with D extrapolated from the last two
        # denoised estimates after the first step; at sigma_{i+1} = 0 this returns D itself.
        if old_denoised is None or sigmas[i + 1] == 0:
            estimate = denoised
        else:
            r = (t - (-sigmas[i - 1].log())) / h
            estimate = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
        x = ((-t_next).exp() / (-t).exp()) * x - (-h).expm1() * estimate
        old_denoised = denoised
        if callback is not None:
            callback(SamplerStep(index=i, total=total))
    return x
