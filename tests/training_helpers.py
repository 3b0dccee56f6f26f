"""Training folders for the tests: small generated pictures (a coloured ground with a square) with captions."""

from __future__ import annotations

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
