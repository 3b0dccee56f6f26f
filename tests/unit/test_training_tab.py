"""The Training tab's loss plot data: every step of a short run, window means for a long one (so that an
update every half second stays small), ending at the last step; the models it offers (text to image and
text to video) and how it describes a folder of clips."""

from types import SimpleNamespace

from kubin.ui.tabs.training import PLOT_POINTS, loss_frame


def test_the_plot_keeps_every_step_of_a_short_run_and_averages_a_long_one():
    short = loss_frame(SimpleNamespace(losses=[(1, 2.0), (2, 4.0)]))
    assert short.values.tolist() == [[1, 2.0], [2, 4.0]]
    long = loss_frame(SimpleNamespace(losses=[(i, 1.0 if i % 2 else 3.0) for i in range(1, 5001)]))
    assert len(long) <= PLOT_POINTS and long["step"].iloc[-1] == 5000
    assert set(long["loss"]) == {2.0}  # windows of an even length average the two values
    assert loss_frame(None).empty


def test_the_tab_offers_the_text_to_video_model_and_describes_a_folder_of_clips():
    from pathlib import Path

    from kubin.training.dataset import ClipShape, DatasetReport, TrainingItem
    from kubin.ui.tabs.training import describe_report, trainable_models

    models = trainable_models(None)
    assert models["tiny-kd50-t2v"] == ["transformer"] and models["tiny-kd50-t2i"] == ["transformer"]
    assert "tiny-kd50-i2v" not in models and "tiny-kd50-i2i" not in models
    items = tuple(TrainingItem(Path(f"{i}.mp4"), "", (64, 64), (64, 64), 8.0, 5) for i in range(3))
    report = DatasetReport(Path("clips"), items, (("bad.mp4", "cannot be read"),), "0", buckets={(64, 64): 3},
                           clip=ClipShape(5, 8))  # fmt: skip
    assert describe_report(report).splitlines() == [
        "**3 clip(s)** of 5 frames at 8 fps in buckets 64×64: 3.",
        "Skipped 1:",
        "- bad.mp4: cannot be read",
    ]
