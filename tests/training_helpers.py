"""Training folders for the tests: small generated pictures (a coloured ground with a square) and short
clips (a box sliding on a coloured ground), with captions."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

# Options that make a tiny-kd22 decoder adapter learn visibly in a few dozen CPU steps: a high learning
# rate, and the resnets' convolutions besides the attention (the tiny UNet has little attention).
FAST = {
    "model": "tiny-kd22",
    "rank": 4,
    "learning_rate": 3e-2,
    "resolution": 64,
    "batch_size": 2,
    "seed": 3,
    "target_modules": ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2"],
}


def make_pictures(folder: Path, count: int = 8, size: int = 64) -> Path:
    """`count` PNG pictures with same-named .txt captions."""
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(count):
        array = np.zeros((size, size, 3), np.uint8)
        array[..., i % 3] = 200
        array[size // 4 : 3 * size // 4, size // 4 : 3 * size // 4] = rng.integers(0, 255, 3)
        Image.fromarray(array).save(folder / f"pic{i}.png")
        (folder / f"pic{i}.txt").write_text(f"a square on ground {i % 3}")
    return folder


def make_clips(folder: Path, count: int = 3, frames: int = 8, size: int = 64, fps: float = 8) -> Path:
    """`count` mp4 clips (a box sliding down a coloured ground), written by imageio-ffmpeg, with same-named
    .txt captions."""
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        write_clip(folder / f"clip{i}.mp4", [_box_frame(size, i, t) for t in range(frames)], fps)
        (folder / f"clip{i}.txt").write_text(f"a box sliding on ground {i % 3}")
    return folder


def write_clip(path: Path, frames: list, fps: float) -> Path:
    import imageio_ffmpeg

    size = (frames[0].shape[1], frames[0].shape[0])
    codec = "libvpx" if path.suffix == ".webm" else "libx264"  # WebM holds VP8/VP9/AV1 only
    writer = imageio_ffmpeg.write_frames(str(path), size, fps=fps, codec=codec, pix_fmt_out="yuv420p",
                                         macro_block_size=2, ffmpeg_log_level="error")  # fmt: skip
    writer.send(None)
    for frame in frames:
        writer.send(frame)
    writer.close()
    return path


def _box_frame(size: int, ground: int, t: int):
    import numpy as np

    array = np.zeros((size, size, 3), np.uint8)
    array[..., ground % 3] = 200
    top = (t * size // 10) % (size // 2)
    array[top : top + size // 4, size // 3 : 2 * size // 3] = 255
    return array


def stop_leftover_runs(url: str) -> None:
    """Cancel the training runs a failed test left on the shared server (a long run would keep its device busy
    and fail every later test of the file)."""
    import httpx

    for run in httpx.get(url + "/kubin/api/v1/training", timeout=60).json():
        if run["state"] in ("queued", "running"):
            httpx.post(f"{url}/kubin/api/v1/training/{run['id']}/cancel", timeout=120)


@contextmanager
def no_trace_of_training(server) -> Iterator[None]:
    """Around a Training tab test on the shared server: its LoRA folder as it was (other test files list
    it), and no run left going."""
    import httpx

    before = set(server.lora_dir.rglob("*.safetensors"))
    yield
    stop_leftover_runs(server.url)
    for path in set(server.lora_dir.rglob("*.safetensors")) - before:
        path.unlink()
    httpx.post(server.url + "/sdapi/v1/refresh-loras", timeout=60)


def fill(page, name: str, value: str) -> None:
    """A Training tab field (`#train-NAME`), committed as a user leaving it does (a Number commits on blur)."""
    field = page.locator(f"#train-{name} textarea, #train-{name} input").first
    field.fill(value)
    field.press("Tab")
