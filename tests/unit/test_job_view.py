"""How a panel that follows many jobs (a grid, a prompts file, a folder) sends its gallery to the page: at
most once an interval, each render with every image so far, and always the last one with all of them."""

from kubin.engine import Job
from kubin.ui import job_view
from kubin.ui.context import UIContext

SMALL = {"prompt": "a red cat", "width": 64, "height": 64, "steps": 1, "prior_steps": 2}


def test_many_quick_jobs_send_few_galleries_and_the_last_holds_every_image(engine, monkeypatch):
    monkeypatch.setattr(job_view, "GALLERY_INTERVAL_S", 600.0)  # longer than the test: only first and last
    ctx = UIContext(engine=engine, settings=None, model_id="tiny-kd22")
    handles = [engine.submit(Job("t2i", "tiny-kd22", SMALL | {"seed": seed})) for seed in range(6)]
    failures: list[str] = []

    renders = list(
        job_view.follow_jobs(
            ctx, ((f"job {n}", f"Job {n}", h) for n, h in enumerate(handles)), lambda *a, **k: None, failures
        )
    )

    assert failures == []
    assert len(renders) == 2  # one render per image and per job's end was 12 galleries sent, growing
    first_gallery, last_gallery = renders[0][0], renders[-1][0]
    assert len(first_gallery) == 1
    assert [path for path, _ in last_gallery] == [str(h.results[0].path) for h in handles]
    assert "job 5 · 6 image(s) so far" in renders[-1][1]
