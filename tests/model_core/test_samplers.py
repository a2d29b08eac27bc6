import numpy as np
import pytest
import torch

from model_core.samplers import (
    DiscreteEpsSchedule,
    SamplerStep,
    ZeroTerminalSNRSchedule,
    randn_per_sample,
    rescaled_guidance,
    sample_dpmpp_2m,
    sample_dynamic_tsnr,
)


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


@pytest.fixture(scope="module")
def video_schedule() -> ZeroTerminalSNRSchedule:
    return ZeroTerminalSNRSchedule()


def test_zero_terminal_snr_schedule_ends_at_pure_noise(video_schedule):
    alphas = video_schedule.alphas_cumprod
    assert alphas.dtype == torch.float32 and alphas[-1].item() == 0.0
    assert torch.all(alphas[1:] < alphas[:-1])
    # The first level is untouched by the rescale: SD's scaled-linear value 1 - 0.00085.
    assert alphas[0].item() == pytest.approx(1 - 0.00085, rel=1e-6)
    # The x0 scale falls linearly from 1 to 0.7 over the first 400 timesteps, then stays.
    scale = video_schedule.x0_scale
    assert scale[0].item() == 1.0 and scale[399].item() == pytest.approx(0.7) and torch.all(scale[399:] == scale[-1])


@pytest.mark.parametrize("steps", [1, 4, 25, 50, 60])
def test_trailing_timesteps_end_at_the_last_level_evenly_spaced(video_schedule, steps):
    timesteps = video_schedule.trailing_timesteps(steps)
    assert len(timesteps) == steps and timesteps[-1] == 999 and timesteps[0] >= 0
    assert np.all(np.abs(np.diff(timesteps) - 1000 / steps) <= 1)


def test_ddim_steps_run_from_noise_to_timestep_zero_without_nan(video_schedule):
    for steps in range(1, 61):
        plan = video_schedule.ddim_steps(steps)
        assert [step.t for step in plan] == list(video_schedule.trailing_timesteps(steps)[::-1])
        values = [getattr(step, field) for step in plan for field in ("direction", "sigma", "sqrt_alpha_prev")]
        assert all(np.isfinite(values)) and min(values) >= 0
        # The first step starts from pure noise: no signal in x, so x0 comes from v alone.
        assert plan[0].t == 999 and plan[0].sqrt_alpha == 0.0 and plan[0].sqrt_one_minus_alpha == 1.0


def test_first_step_radicand_rounds_negative_and_is_clamped(video_schedule):
    # The reason for the clamp: in float32, 1 - alphabar_prev - sigma^2 at t = 999 (exactly 0 in exact
    # arithmetic) rounds below zero at many step counts, where a plain sqrt gives NaN (black frames).
    # Which counts depends on the CPU's float32 sqrt kernel (AVX2 and AVX512 differ), so find them.
    def radicand(steps: int) -> float:
        t_prev = int(video_schedule.trailing_timesteps(steps)[-2])
        alpha_prev = video_schedule.alphas_cumprod[t_prev]
        sigma = ((1 - alpha_prev) / (1 - video_schedule.alphas_cumprod[999]) * (1 - 0 / alpha_prev)).sqrt()
        return (1.0 - alpha_prev - sigma**2).item()

    negative = [steps for steps in range(2, 61) if radicand(steps) < 0]
    assert len(negative) >= 3
    assert all(video_schedule.ddim_steps(steps)[0].direction == 0.0 for steps in negative)


def test_rescaled_guidance_matches_the_positive_std_per_sample():
    g = torch.Generator().manual_seed(0)
    positive = torch.randn(3, 4, 5, 6, 7, generator=g) * torch.tensor([1.0, 2.0, 3.0]).view(3, 1, 1, 1, 1)
    negative = torch.randn(3, 4, 5, 6, 7, generator=g)
    plain = negative + 7.5 * (positive - negative)
    assert torch.allclose(rescaled_guidance(positive, negative, 7.5, 0.0), plain)
    full = rescaled_guidance(positive, negative, 7.5, 1.0)
    assert torch.allclose(full.flatten(1).std(dim=1), positive.flatten(1).std(dim=1), rtol=1e-5)
    mixed = rescaled_guidance(positive, negative, 7.5, 0.7)
    assert torch.allclose(mixed, 0.7 * full + 0.3 * plain, atol=1e-5)
    # Per sample: a sample's result does not depend on the others in the batch.
    assert torch.allclose(rescaled_guidance(positive[1:2], negative[1:2], 7.5, 0.7), mixed[1:2])


def test_randn_per_sample_draws_each_sample_from_its_own_generator():
    draw = randn_per_sample((1, 2, 3), [torch.Generator().manual_seed(s) for s in (5, 6)], torch.device("cpu"))
    assert draw.shape == (2, 2, 3)
    assert torch.equal(draw[1:], torch.randn((1, 2, 3), generator=torch.Generator().manual_seed(6)))


def test_dynamic_tsnr_sampler_is_per_sample_and_reports_every_step(video_schedule):
    plan = video_schedule.ddim_steps(8)

    def velocity(x, t):
        return 0.5 * x + t / 1000

    def run(seeds, callback=None):
        generators = [torch.Generator().manual_seed(s) for s in seeds]
        return sample_dynamic_tsnr(velocity, plan, generators, (1, 2, 3, 4), torch.device("cpu"), callback=callback)

    reported = []
    both = run([11, 12], reported.append)
    assert reported == [SamplerStep(i, 8) for i in range(8)]
    assert torch.equal(both[1:], run([12])) and torch.equal(both, run([11, 12]))
    assert not torch.equal(both[0], both[1]) and torch.isfinite(both).all()


def test_dynamic_tsnr_sampler_recovers_the_data_of_an_exact_model(video_schedule):
    # A model that knows x0 predicts v = sqrt(a) eps - sqrt(1 - a) x0 exactly. The last step (t = 19 to 0)
    # rescales that x0 by s_0 / s_19 and adds a little noise, so the sample ends near 1.0145 x0.
    x0 = torch.full((1, 1, 32, 32), 0.5)
    sqrt_a, sqrt_1ma = video_schedule.sqrt_alphas_cumprod, video_schedule.sqrt_one_minus_alphas_cumprod

    def velocity(x, t):
        eps = (x - sqrt_a[t] * x0) / sqrt_1ma[t]
        return sqrt_a[t] * eps - sqrt_1ma[t] * x0

    plan = video_schedule.ddim_steps(50)
    out = sample_dynamic_tsnr(velocity, plan, [torch.Generator().manual_seed(0)], x0.shape, torch.device("cpu"))
    expected = 0.5 * sqrt_a[0] * video_schedule.x0_scale[0] / video_schedule.x0_scale[19]
    assert out.mean().item() == pytest.approx(expected.item(), abs=0.01)
    assert 0.01 < out.std().item() < 0.06  # the last step's noise (sigma 0.0285) plus the direction term
