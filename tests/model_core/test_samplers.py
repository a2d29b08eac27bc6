import numpy as np
import pytest
import torch

from model_core.samplers import DiscreteEpsSchedule, SamplerStep, sample_dpmpp_2m


@pytest.fixture(scope="module")
def schedule() -> DiscreteEpsSchedule:
    return DiscreteEpsSchedule(0.00085, 0.020)


def test_linear_schedule_spans_the_published_sigma_range(schedule):
    # Linear betas 0.00085..0.020 reach sigma_max ~190 (SD's scaled-linear schedule stops at 14.6).
    assert schedule.sigmas.dtype == torch.float32
    assert schedule.sigma_min.item() == pytest.approx(0.0291675, rel=1e-5)
    assert schedule.sigma_max.item() == pytest.approx(190.1217, rel=1e-5)
    assert torch.all(schedule.sigmas[1:] > schedule.sigmas[:-1])


def test_karras_sigmas_run_from_max_to_min_then_zero(schedule):
    sigmas = schedule.karras_sigmas(50)
    assert sigmas.shape == (51,)
    assert sigmas[0].item() == pytest.approx(schedule.sigma_max.item(), rel=1e-6) and sigmas[-1] == 0
    assert sigmas[-2].item() == pytest.approx(schedule.sigma_min.item(), rel=1e-5)
    assert torch.all(sigmas[1:] < sigmas[:-1])
    # The Karras ramp is linear in sigma^(1/7).
    inv_rho = sigmas[:-1].double() ** (1 / 7)
    assert torch.allclose(inv_rho.diff(), inv_rho.diff().mean().expand(49), rtol=1e-4)


def test_timesteps_are_the_nearest_levels_in_log_sigma(schedule):
    sigmas = schedule.karras_sigmas(50)[:-1]
    timesteps = schedule.timestep(sigmas)
    assert timesteps.dtype == torch.int64
    assert timesteps[0] == 999 and timesteps[-1] == 0
    brute_force = [int(np.argmin(np.abs(np.log(schedule.sigmas.numpy()) - np.log(s)))) for s in sigmas.numpy()]
    assert timesteps.tolist() == brute_force


def test_dpmpp_2m_solves_the_probability_flow_ode_of_gaussian_data():
    # For data ~ N(0, s^2) the ideal denoiser is D(x, sigma) = x s^2 / (s^2 + sigma^2), and the ODE
    # carries x(sigma_max) to x(0) = x(sigma_max) * s / sqrt(s^2 + sigma_max^2).
    # (The jump from sigma_min to 0 is one denoising step, so a small error remains at any step count.)
    s = 0.5

    def relative_error(steps: int) -> torch.Tensor:
        sigmas = DiscreteEpsSchedule().karras_sigmas(steps).double()
        x = torch.linspace(-3, 3, 7, dtype=torch.float64) * sigmas[0]
        result = sample_dpmpp_2m(lambda x, sigma: x * s**2 / (s**2 + sigma[:, None] ** 2), x[:, None], sigmas)
        exact = x * s / (s**2 + sigmas[0] ** 2).sqrt()
        return ((result[:, 0] - exact).abs() / exact.abs().clamp(min=1e-12))[exact != 0].max()

    assert relative_error(50) < 1e-2
    assert relative_error(50) < relative_error(25) / 3


def test_dpmpp_2m_last_step_returns_the_denoised_estimate_and_reports_every_step():
    target = torch.tensor([[0.25, -1.0]])
    steps: list[SamplerStep] = []
    sigmas = DiscreteEpsSchedule().karras_sigmas(5)
    result = sample_dpmpp_2m(
        lambda x, sigma: target.expand_as(x), torch.randn(1, 2) * sigmas[0], sigmas, callback=steps.append
    )
    assert torch.equal(result, target)
    assert steps == [SamplerStep(index=i, total=5) for i in range(5)]
