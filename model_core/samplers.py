"""Noise schedules and samplers, k-diffusion style: short functions with the math visible.

Keyframes: DPM++ 2M over a denoiser `denoiser(x, sigma) -> denoised` (sigma a per-sample vector);
the network's parametrisation lives in the denoiser, not in the sampler.
Interpolation: the reference's dynamic-TSNR DDIM sampler over a v-prediction model
`velocity(x, timestep) -> v`, on a zero-terminal-SNR schedule.
"""

from collections.abc import Callable, Sequence
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
        self._log_sigmas_on: dict[torch.device, torch.Tensor] = {self.log_sigmas.device: self.log_sigmas}

    @property
    def sigma_min(self) -> torch.Tensor:
        return self.sigmas[0]

    @property
    def sigma_max(self) -> torch.Tensor:
        return self.sigmas[-1]

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """The index of the nearest discrete level in log-sigma, per sample: (B,) float -> (B,) int64.

        Computed on sigma's device (the levels are copied there once), so a sampler on the GPU never
        waits for the host.
        """
        if sigma.device not in self._log_sigmas_on:
            self._log_sigmas_on[sigma.device] = self.log_sigmas.to(sigma.device)
        distances = sigma.log() - self._log_sigmas_on[sigma.device][:, None]
        return distances.abs().argmin(dim=0).view(sigma.shape)

    def karras_sigmas(self, steps: int, rho: float = 7.0) -> torch.Tensor:
        """Karras et al. (2022) schedule from sigma_max down to sigma_min, then 0: `steps + 1` values."""
        ramp = torch.linspace(0, 1, steps)
        min_inv_rho = self.sigma_min ** (1 / rho)
        max_inv_rho = self.sigma_max ** (1 / rho)
        sigmas = (max_inv_rho + ramp * (min_inv_rho - max_inv_rho)) ** rho
        return torch.cat([sigmas, sigmas.new_zeros([1])])


@dataclass(frozen=True)
class DPMSolverStep:
    """The float32 coefficients of one DPM++ 2M step from sigma_i to sigma_{i+1} (Python floats: no device syncs)."""

    sigma: float  # sigma_i
    ratio: float  # sigma_{i+1} / sigma_i, as exp(-t_{i+1}) / exp(-t_i) with t = -log(sigma)
    expm1: float  # e^{-h} - 1, with h = t_{i+1} - t_i
    current_weight: float  # weight of this step's denoised estimate: 1, or 1 + 1/(2r) when extrapolating
    previous_weight: float  # weight of the last step's estimate: 0, or 1/(2r), with r = (t_i - t_{i-1}) / h


def dpmpp_2m_steps(sigmas: torch.Tensor) -> list[DPMSolverStep]:
    """The steps over `sigmas` (descending, ending at 0), in k-diffusion's float32 arithmetic.

    x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h} - 1) D, where D is the denoised estimate,
    extrapolated from the last two estimates after the first step; at sigma_{i+1} = 0 it is D itself.
    """
    t = -sigmas.log()
    steps = []
    for i in range(len(sigmas) - 1):
        h = t[i + 1] - t[i]
        if i == 0 or sigmas[i + 1] == 0:
            current, previous = 1.0, 0.0
        else:
            r = (t[i] - t[i - 1]) / h
            current, previous = (1 + 1 / (2 * r)).item(), (1 / (2 * r)).item()
        ratio = ((-t[i + 1]).exp() / (-t[i]).exp()).item()
        steps.append(DPMSolverStep(sigmas[i].item(), ratio, (-h).expm1().item(), current, previous))
    return steps


@torch.no_grad()
def sample_dpmpp_2m(
    denoiser: Denoiser, x: torch.Tensor, sigmas: torch.Tensor, *, callback: StepCallback | None = None
) -> torch.Tensor:
    """DPM-Solver++(2M), Lu et al. (2022), in k-diffusion's form (deterministic; no noise is added).

    The per-step coefficients are worked out before the loop, so the loop only queues device work.
    """
    sigma_in = x.new_ones([x.shape[0]])
    plan = dpmpp_2m_steps(sigmas)
    old_denoised = None
    for i, step in enumerate(plan):
        denoised = denoiser(x, step.sigma * sigma_in)
        estimate = denoised
        if step.previous_weight:
            estimate = step.current_weight * denoised - step.previous_weight * old_denoised
        x = step.ratio * x - step.expm1 * estimate
        old_denoised = denoised
        if callback is not None:
            callback(SamplerStep(index=i, total=len(plan)))
    return x


Velocity = Callable[[torch.Tensor, int], torch.Tensor]


@dataclass(frozen=True)
class DDIMStep:
    """The float32 coefficients of one step from timestep t to t_prev (Python floats: no device syncs)."""

    t: int
    sqrt_alpha: float  # sqrt(alphabar_t)
    sqrt_one_minus_alpha: float  # sqrt(1 - alphabar_t)
    x0_rescale: float  # s_{t_prev} / s_t, the dynamic-TSNR x0 scale
    sqrt_alpha_prev: float  # sqrt(alphabar_{t_prev})
    direction: float  # sqrt(1 - alphabar_{t_prev} - sigma^2), clamped at 0
    sigma: float  # eta * sqrt((1 - alphabar_{t_prev}) / (1 - alphabar_t) * (1 - alphabar_t / alphabar_{t_prev}))


class ZeroTerminalSNRSchedule:
    """Stable Diffusion's scaled-linear betas, rescaled so the last timestep has zero SNR (Lin et al., 2024).

    Also holds the dynamic-TSNR x0 scale s_t: 1.0 at t=0 falling linearly to `terminal_scale` at
    `turning_step`, constant after. Values are computed in float64 and stored in float32, as the reference does.
    """

    def __init__(
        self,
        beta_start: float = 0.00085,
        beta_end: float = 0.012,
        num_timesteps: int = 1000,
        turning_step: int = 400,
        terminal_scale: float = 0.7,
    ):
        betas = np.linspace(beta_start**0.5, beta_end**0.5, num_timesteps, dtype=np.float64) ** 2
        sqrt_alphas_bar = np.sqrt(np.cumprod(1.0 - betas))
        first, last = sqrt_alphas_bar[0], sqrt_alphas_bar[-1]
        alphas_bar = ((sqrt_alphas_bar - last) * first / (first - last)) ** 2
        # Back to betas and forward again, as the reference does, so that float64 rounding matches.
        betas = 1.0 - np.concatenate([alphas_bar[:1], alphas_bar[1:] / alphas_bar[:-1]])
        alphas_cumprod = np.cumprod(1.0 - betas)
        self.num_timesteps = num_timesteps
        self.alphas_cumprod = torch.tensor(alphas_cumprod, dtype=torch.float32)
        self.sqrt_alphas_cumprod = torch.tensor(np.sqrt(alphas_cumprod), dtype=torch.float32)
        self.sqrt_one_minus_alphas_cumprod = torch.tensor(np.sqrt(1.0 - alphas_cumprod), dtype=torch.float32)
        x0_scale = np.concatenate(
            [np.linspace(1.0, terminal_scale, turning_step), np.full(num_timesteps - turning_step, terminal_scale)]
        )
        self.x0_scale = torch.tensor(x0_scale, dtype=torch.float32)

    def trailing_timesteps(self, steps: int) -> np.ndarray:
        """`steps` evenly spaced timesteps ending at the last one ("trailing"): for 50, [19, 39, ..., 999]."""
        stride = self.num_timesteps / steps
        return np.flip(np.round(np.arange(self.num_timesteps, 0, -stride))).astype(np.int64) - 1

    def ddim_steps(self, steps: int, eta: float = 1.0) -> list[DDIMStep]:
        """The steps from the noisiest timestep down to t_prev = 0, in the order they run."""
        timesteps = self.trailing_timesteps(steps)
        previous = np.concatenate([[0], timesteps[:-1]])
        alpha, alpha_prev = self.alphas_cumprod[timesteps], self.alphas_cumprod[previous]
        sigma = eta * ((1 - alpha_prev) / (1 - alpha) * (1 - alpha / alpha_prev)).sqrt()
        # 1 - alphabar_prev - sigma^2 is exactly 0 at t = 999 but can round to a tiny negative in
        # float32 (at 6 or 25 steps), where the reference takes the square root and yields NaN.
        direction = (1.0 - alpha_prev - sigma**2).clamp(min=0).sqrt()
        rescale = self.x0_scale[previous] / self.x0_scale[timesteps]
        plan = [
            DDIMStep(
                t=int(timesteps[i]),
                sqrt_alpha=self.sqrt_alphas_cumprod[timesteps[i]].item(),
                sqrt_one_minus_alpha=self.sqrt_one_minus_alphas_cumprod[timesteps[i]].item(),
                x0_rescale=rescale[i].item(),
                sqrt_alpha_prev=alpha_prev[i].sqrt().item(),
                direction=direction[i].item(),
                sigma=sigma[i].item(),
            )
            for i in range(steps)
        ]
        return plan[::-1]


def rescaled_guidance(positive: torch.Tensor, negative: torch.Tensor, cfg: float, rescale: float) -> torch.Tensor:
    """Classifier-free guidance, then its per-sample std pulled back toward the positive prediction's.

    Lin et al. (2024), section 3.4: out = rescale * g * std(positive) / std(g) + (1 - rescale) * g, with
    g = negative + cfg * (positive - negative) and std over all but the batch dimension (unbiased).
    """
    guided = negative + cfg * (positive - negative)
    dims = list(range(1, guided.ndim))
    matched = guided * (positive.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True))
    return rescale * matched + (1 - rescale) * guided


def randn_per_sample(shape: Sequence[int], generators: Sequence[torch.Generator], device: torch.device) -> torch.Tensor:
    """One float32 normal draw of `shape` per generator, stacked along dim 0: (len(generators), *shape[1:]).

    Each sample draws with batch size 1, so a sample's noise is the same whatever batch it runs in.
    """
    return torch.cat([torch.randn(shape, generator=g, device=device, dtype=torch.float32) for g in generators])


@torch.no_grad()
def sample_dynamic_tsnr(
    velocity: Velocity,
    steps: list[DDIMStep],
    generators: Sequence[torch.Generator],
    shape: Sequence[int],
    device: torch.device,
    *,
    callback: StepCallback | None = None,
) -> torch.Tensor:
    """DDIM with eta = 1 (fresh noise every step) for a v-prediction model, with the dynamic x0 rescale.

    shape: one sample's shape, batch 1; sample i draws its noise from generators[i], first the
    initial state and then once per step, as the reference draws from the seeded global generator.
    """
    x = randn_per_sample(shape, generators, device)
    for i, step in enumerate(steps):
        v = velocity(x, step.t)
        eps = step.sqrt_alpha * v + step.sqrt_one_minus_alpha * x
        x0 = (step.sqrt_alpha * x - step.sqrt_one_minus_alpha * v) * step.x0_rescale
        noise = randn_per_sample(shape, generators, device)
        x = step.sqrt_alpha_prev * x0 + step.direction * eps + step.sigma * noise
        if callback is not None:
            callback(SamplerStep(index=i, total=len(steps)))
    return x
