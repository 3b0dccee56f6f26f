"""The Training tab's loss plot data: every step of a short run, window means for a long one (so that an
update every half second stays small), ending at the last step."""

from types import SimpleNamespace

from kubin.ui.tabs.training import PLOT_POINTS, loss_frame


def test_the_plot_keeps_every_step_of_a_short_run_and_averages_a_long_one():
    short = loss_frame(SimpleNamespace(losses=[(1, 2.0), (2, 4.0)]))
    assert short.values.tolist() == [[1, 2.0], [2, 4.0]]
    long = loss_frame(SimpleNamespace(losses=[(i, 1.0 if i % 2 else 3.0) for i in range(1, 5001)]))
    assert len(long) <= PLOT_POINTS and long["step"].iloc[-1] == 5000
    assert set(long["loss"]) == {2.0}  # windows of an even length average the two values
    assert loss_frame(None).empty
