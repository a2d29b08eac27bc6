import pytest

from model_core.errors import RenderCanceled
from model_core.events import Stage, StageFinished, StageStarted, StepFinished
from model_core.progress import RenderProgress

TAGGING, KEYFRAMES, INTERPOLATION, ENCODING = Stage
WORK = {TAGGING: 1, KEYFRAMES: 3, INTERPOLATION: 6, ENCODING: 0}


def make_progress(work=WORK, should_cancel=None):
    """A RenderProgress on a fake clock that starts at 100 s; returns it, its events, and the clock's list."""
    now, events = [100.0], []
    progress = RenderProgress(work, on_event=events.append, should_cancel=should_cancel, clock=lambda: now[0])
    return progress, events, now


def test_stages_share_the_whole_in_proportion_to_their_work():
    progress, events, _ = make_progress()
    steps = [(TAGGING, 1, 2), (TAGGING, 2, 2), (KEYFRAMES, 1, 3), (KEYFRAMES, 3, 3), (INTERPOLATION, 3, 4)]
    for stage, step, total in steps:
        progress.step(stage, step, total)
    assert [event.progress for event in events] == pytest.approx([0.05, 0.1, 0.2, 0.4, 0.85])
    assert events[2] == StepFinished(progress=events[2].progress, eta_seconds=0.0, stage=KEYFRAMES, step=1, total=3)
    progress.step(INTERPOLATION, 1, 4, stage_fraction=1.0)  # an explicit fraction wins over step/total
    assert progress.fraction == pytest.approx(1.0)


def test_a_stage_with_no_work_does_not_move_progress():
    progress, events, _ = make_progress({TAGGING: 0, KEYFRAMES: 1, INTERPOLATION: 1})
    progress.step(TAGGING, 1, 1)
    progress.step(KEYFRAMES, 1, 2)
    assert [event.progress for event in events] == [0.0, 0.25]


def test_progress_never_decreases_and_is_clamped():
    progress, events, _ = make_progress()
    progress.emit(KEYFRAMES, 2 / 3, StageStarted, stage=KEYFRAMES)
    progress.emit(KEYFRAMES, 1 / 3, StageStarted, stage=KEYFRAMES)
    progress.emit(TAGGING, 0.5, StageStarted, stage=TAGGING)
    assert [event.progress for event in events] == pytest.approx([0.3, 0.3, 0.3])
    progress.emit(KEYFRAMES, 5.0, StageStarted, stage=KEYFRAMES)
    assert progress.fraction == pytest.approx(0.4)
    fresh, _, _ = make_progress()
    fresh.emit(KEYFRAMES, -2.0, StageStarted, stage=KEYFRAMES)
    assert fresh.fraction == pytest.approx(0.1)


def test_last_stage_finishing_gives_exactly_one():
    # These shares add up to 0.9999999999999999 in floating point.
    progress, events, _ = make_progress({TAGGING: 1 / 2, KEYFRAMES: 1 / 2, INTERPOLATION: 1 / 9, ENCODING: 0})
    progress.step(INTERPOLATION, 1, 1)
    assert 0.999 < progress.fraction < 1.0
    progress.step(ENCODING, 1, 1)
    assert progress.fraction == 1.0 and events[-1].progress == 1.0 and events[-1].eta_seconds == 0.0


def test_eta_extrapolates_elapsed_time_over_progress():
    progress, events, now = make_progress()
    progress.emit(TAGGING, 0.0, StageStarted, stage=TAGGING)
    now[0] = 110.0
    progress.step(KEYFRAMES, 1, 2)  # 0.25 done in 10 s
    now[0] = 130.0
    progress.step(INTERPOLATION, 1, 2)  # 0.7 done in 30 s
    now[0] = 150.0
    progress.step(ENCODING, 1, 1)
    etas = [event.eta_seconds for event in events]
    assert etas[0] is None
    assert etas[1:] == pytest.approx([30.0, 30 * 0.3 / 0.7, 0.0])


def test_stage_context_brackets_the_stage_with_timed_events():
    progress, events, now = make_progress()
    with progress.stage(KEYFRAMES):
        assert events == [StageStarted(progress=pytest.approx(0.1), eta_seconds=0.0, stage=KEYFRAMES)]
        now[0] += 2.5
    finished = StageFinished(
        progress=pytest.approx(0.4), eta_seconds=pytest.approx(2.5 * 0.6 / 0.4), stage=KEYFRAMES, seconds=2.5
    )
    assert events[1:] == [finished]


def test_stage_that_raises_emits_no_finished_event():
    progress, events, _ = make_progress()
    with pytest.raises(KeyError), progress.stage(TAGGING):
        raise KeyError("boom")
    assert [type(event) for event in events] == [StageStarted]


def test_cancel_is_polled_after_the_event_is_delivered():
    log, cancel = [], [False]
    progress = RenderProgress(
        WORK, on_event=lambda event: log.append(event.progress), should_cancel=lambda: log.append("poll") or cancel[0]
    )
    progress.step(TAGGING, 1, 2)
    cancel[0] = True
    with pytest.raises(RenderCanceled):
        progress.step(TAGGING, 2, 2)
    assert log == [pytest.approx(0.05), "poll", pytest.approx(0.1), "poll"]


def test_cancel_during_stage_start_skips_the_body():
    progress, events, _ = make_progress(should_cancel=lambda: True)
    ran = []
    with pytest.raises(RenderCanceled), progress.stage(TAGGING):
        ran.append(True)
    assert ran == [] and [type(event) for event in events] == [StageStarted]


def test_check_cancel_alone():
    cancel = [False]
    progress = RenderProgress(WORK, should_cancel=lambda: cancel[0])
    progress.check_cancel()
    cancel[0] = True
    with pytest.raises(RenderCanceled):
        progress.check_cancel()
    RenderProgress(WORK).check_cancel()  # no should_cancel: never canceled


@pytest.mark.parametrize("work", [{}, {TAGGING: 0, KEYFRAMES: 0}, {TAGGING: 2, KEYFRAMES: -1}])
def test_invalid_work_is_refused(work):
    with pytest.raises(ValueError, match="work"):
        RenderProgress(work)
