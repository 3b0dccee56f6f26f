"""LoRA adapters on Kandinsky 6's video-and-sound transformer (diffusers' loader): a file is told from a
Kandinsky 5 one by its layer names, changes the frames, does nothing at weight 0 and nothing after it is
switched off. Files made here with peft on tiny-kd6's and tiny-kd50-t2i's transformers."""

import imageio_ffmpeg
import numpy as np
import pytest
from lora_helpers import KD50_ATTENTION, save_lora

from kubin.engine import Engine, Job
from kubin.errors import InvalidParams
from kubin.models.lora import LoraLibrary

SMALL = {"prompt": "a red cat meows on a fence", "steps": 2, "seed": 1, "frames": 17, "fps": 8}


@pytest.fixture(scope="module")
def lora_folder(tmp_path_factory):
    from diffusers import Kandinsky5Transformer3DModel, Kandinsky6Transformer3DModel

    from kubin.models.tiny import tiny_model_folder

    folder = tmp_path_factory.mktemp("lora6")
    transformer = Kandinsky6Transformer3DModel.from_pretrained(
        tiny_model_folder("tiny-kd6") / "pipeline" / "transformer"
    )
    save_lora(transformer, folder / "reel.safetensors", KD50_ATTENTION, 1, prefix="transformer.")
    kd50 = Kandinsky5Transformer3DModel.from_pretrained(
        tiny_model_folder("tiny-kd50-t2i") / "pipeline" / "transformer"
    )
    save_lora(kd50, folder / "k5style.safetensors", KD50_ATTENTION, 2)
    return folder


@pytest.fixture(scope="module")
def kd6_engine(fresh_manager, lora_folder, tmp_path_factory):
    engine = Engine(fresh_manager, tmp_path_factory.mktemp("out6"), loras=LoraLibrary(lora_folder))
    yield engine
    engine.close(wait=True)


def frames(engine, **values) -> np.ndarray:
    result = engine.run(Job("t2v", "tiny-kd6", {**SMALL, **values})).results[0]
    reader = imageio_ffmpeg.read_frames(str(result.path))
    width, height = next(reader)["size"]
    return np.stack([np.frombuffer(raw, np.uint8).reshape(height, width, 3) for raw in reader]).astype(
        np.int16
    )


def test_a_kandinsky_6_file_is_told_from_a_kandinsky_5_one(lora_folder):
    found = {f.name: f for f in LoraLibrary(lora_folder).list()}
    assert (found["reel"].family, found["reel"].part, found["reel"].also) == ("kd6", "transformer", ())
    assert (found["k5style"].family, found["k5style"].also) == ("kd50", ())


def test_kandinsky_6_takes_its_transformer_adapter_and_refuses_a_kandinsky_5_one(kd6_engine):
    base = frames(kd6_engine)
    styled = frames(kd6_engine, loras=["reel:1"])
    zero = frames(kd6_engine, loras=["reel:0"])
    after = frames(kd6_engine)
    assert np.abs(base - styled).mean() > 1
    assert np.array_equal(base, zero) and np.array_equal(base, after)
    with pytest.raises(
        InvalidParams, match=r"The LoRA k5style.safetensors fits the transformer of family kd50"
    ):
        kd6_engine.submit(Job("t2v", "tiny-kd6", {**SMALL, "loras": ["k5style"]}))
