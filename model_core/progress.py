"""Overall progress, ETA and cancellation of a render, turned into typed events.

Each stage gets a share of the whole in proportion to the work it is expected to do; a stage
reports how far it is (0..1) and `RenderProgress` maps that onto the overall fraction, which
never goes back and is exactly 1.0 when the last stage finishes. The ETA extrapolates the time
spent so far over the fraction done.
"""

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from model_core.errors import RenderCanceled
from model_core.events import RenderEvent, Stage, StageFinished, StageStarted, StepFinished

EventCallback = Callable[[RenderEvent], None]
CancelCheck = Callable[[], bool]


class RenderProgress:
    """Progress of one render over `work` (expected work per stage, in the order the stages run).

    on_event: receives every event; raising from it aborts the render.
    should_cancel: polled after every event; when it returns True the render raises RenderCanceled.
    """

    def __init__(
        self,
        work: dict[Stage, float],
        on_event: EventCallback | None = None,
        should_cancel: CancelCheck | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        total = sum(work.values())
        if total <= 0 or any(amount < 0 for amount in work.values()):
            raise ValueError(f"work must be non-negative with a positive total, got {work}.")
        self._share = {stage: amount / total for stage, amount in work.items()}
        self._offset, done = {}, 0.0
        for stage, share in self._share.items():
            self._offset[stage] = done
            done += share
        self._last_stage = list(work)[-1]
        self._on_event = on_event
        self._should_cancel = should_cancel
        self._clock = clock
        self._started_at = clock()
        self.fraction = 0.0

    def emit(self, stage: Stage, stage_fraction: float, event_type: type[RenderEvent], /, **fields: Any) -> RenderEvent:
        """Send an event of `event_type` with `stage` this far done (0..1), then honour a cancel request."""
        if stage == self._last_stage and stage_fraction >= 1.0:
            fraction = 1.0  # exact, whatever the shares' rounding
        else:
            fraction = min(1.0, self._offset[stage] + self._share[stage] * min(max(stage_fraction, 0.0), 1.0))
        self.fraction = max(self.fraction, fraction)
        elapsed = self._clock() - self._started_at
        eta = elapsed * (1.0 - self.fraction) / self.fraction if self.fraction > 0 else None
        event = event_type(progress=self.fraction, eta_seconds=eta, **fields)
        if self._on_event is not None:
            self._on_event(event)
        self.check_cancel()
        return event

    def step(self, stage: Stage, step: int, total: int, stage_fraction: float | None = None) -> None:
        """Step `step` (1-based) of `total` is done; the stage is step/total done unless told otherwise."""
        fraction = step / total if stage_fraction is None else stage_fraction
        self.emit(stage, fraction, StepFinished, stage=stage, step=step, total=total)

    def check_cancel(self) -> None:
        if self._should_cancel is not None and self._should_cancel():
            raise RenderCanceled("The render was canceled.")

    @contextmanager
    def stage(self, stage: Stage) -> Iterator[None]:
        """Bracket a stage with StageStarted and StageFinished (the latter only when it succeeds)."""
        started = self._clock()
        self.emit(stage, 0.0, StageStarted, stage=stage)
        yield
        self.emit(stage, 1.0, StageFinished, stage=stage, seconds=self._clock() - started)
