"""What a user reads about a running job: the stage under way, counted per phase ("Prior 2/2", "Decoder
1/3", "Rendering the turntable…"), never one sum of all steps, and a time left measured from the job's own
steps, never from the model load that came before its first step."""

from kubin.models.base import Phase
from kubin.progress import StepTracker

PRIOR_DECODER = [Phase("prior", 2), Phase("decoder", 3)]
SHAP_E = [Phase("denoise", 2), Phase("render", 1, "Rendering the turntable", counted=False)]


def steps(tracker: StepTracker, *timed: tuple[str, float]) -> list[str]:
    return [str(tracker.step(name, at)) for name, at in timed]


def test_each_phase_is_counted_on_its_own_and_the_next_shows_once_one_ends():
    tracker = StepTracker(PRIOR_DECODER, batches=1)

    seen = steps(tracker, ("prior", 1), ("prior", 2), ("decoder", 3), ("decoder", 4), ("decoder", 5))

    assert seen == ["Prior 1/2", "Decoder 0/3", "Decoder 1/3", "Decoder 2/3", "Decoder 3/3"]
    assert tracker.total == 5


def test_batches_are_named_and_each_starts_its_phases_again():
    tracker = StepTracker(PRIOR_DECODER, batches=2)

    first = steps(tracker, ("prior", 1), ("prior", 2), ("decoder", 3), ("decoder", 4), ("decoder", 5))
    tracker.start_batch(1)
    second = steps(tracker, ("prior", 6))

    assert first[0] == "Batch 1/2 · Prior 1/2" and first[-1] == "Batch 2/2 · Prior 0/2"
    assert second == ["Batch 2/2 · Prior 1/2"]


def test_a_phase_that_is_one_piece_of_work_says_what_it_does():
    tracker = StepTracker(SHAP_E, batches=1)

    assert steps(tracker, ("denoise", 1), ("denoise", 2)) == ["Step 1/2", "Rendering the turntable…"]


def test_a_step_of_a_later_phase_moves_there_when_a_model_reports_fewer_steps():
    tracker = StepTracker(PRIOR_DECODER, batches=1)  # e.g. a mix whose prior reports nothing

    assert steps(tracker, ("decoder", 1)) == ["Decoder 1/3"]


def test_the_first_step_is_not_timed_so_a_slow_load_does_not_make_up_the_time_left():
    tracker = StepTracker([Phase("denoise", 10)], batches=1)
    tracker.step("denoise", 60.0)  # the first step ended a minute after the job started: it loaded a model

    assert tracker.time_left(60.0) is None  # estimating, not "9 minutes left"
    tracker.step("denoise", 61.0)
    left = tracker.time_left(61.0)
    assert left is not None and left.whole_job and left.seconds == 8.0  # 8 steps of 1 s


def test_until_a_later_phase_has_run_only_the_stage_under_way_has_a_time_left():
    tracker = StepTracker(PRIOR_DECODER, batches=1)
    tracker.step("prior", 10.0)
    tracker.step("prior", 10.5)  # the prior is timed; the decoder is under way but not timed yet

    assert tracker.time_left(10.5) is None
    tracker.step("decoder", 12.5)
    tracker.step("decoder", 14.5)
    left = tracker.time_left(15.0)  # half a second into the last decoder step
    assert left is not None and left.whole_job and left.seconds == 1.5


def test_in_the_first_batch_a_later_phase_is_untimed_so_the_time_left_is_the_stage_s():
    tracker = StepTracker([Phase("prior", 3), Phase("decoder", 3)], batches=1)
    tracker.step("prior", 1.0)
    tracker.step("prior", 1.5)

    left = tracker.time_left(1.5)
    assert left is not None and not left.whole_job and left.seconds == 0.5
