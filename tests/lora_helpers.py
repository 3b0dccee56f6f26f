"""Small LoRA files for the tests, made with peft on the tiny models' parts (random, not zero, weights, so
an adapter changes the pixels), saved as diffusers' adapters are."""

from __future__ import annotations

from pathlib import Path

ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]  # the 2.2 UNet's and prior's attention projections
KD50_ATTENTION = ["to_query", "to_key", "to_value"]  # the Kandinsky 5 transformer's


def save_lora(module, path: Path, targets: list[str], seed: int, prefix: str = "") -> Path:
    """A rank-4 adapter on `targets` of `module` (a diffusers model), its keys under `prefix` (a whole
    pipeline's file writes "unet." or "transformer."), with a trigger phrase in its metadata."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    module.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False))
    state = get_peft_model_state_dict(module)
    module.delete_adapters("default")
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({f"{prefix}{k}": v.contiguous() for k, v in state.items()}, str(path),
              metadata={"format": "pt", "modelspec.trigger_phrase": "inkstyle"})  # fmt: skip
    return path


def kd22_decoder_lora(path: Path, seed: int = 1) -> Path:
    """An adapter for tiny-kd22's decoder UNet."""
    from diffusers import UNet2DConditionModel

    from kubin.models.tiny import tiny_model_folder

    unet = UNet2DConditionModel.from_pretrained(tiny_model_folder("tiny-kd22") / "decoder" / "unet")
    return save_lora(unet, path, ATTENTION, seed)


def save_injected_lora(module, path: Path, targets: list[str], seed: int) -> Path:
    """A rank-4 adapter on `targets` of a model class without diffusers' adapter methods (the Kandinsky 3
    UNet), injected with peft itself; `module` keeps the adapter layers (load a fresh one for each file)."""
    import torch
    from peft import LoraConfig, get_peft_model_state_dict, inject_adapter_in_model
    from safetensors.torch import save_file

    torch.manual_seed(seed)
    config = LoraConfig(r=4, lora_alpha=4, target_modules=targets, init_lora_weights=False)
    state = get_peft_model_state_dict(inject_adapter_in_model(config, module))
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(path), metadata={"format": "pt"})
    return path


def pixels(result):
    """An output image's RGB pixels as int16 (differences do not wrap)."""
    import numpy as np
    from PIL import Image

    with Image.open(result.path) as image:
        return np.asarray(image.convert("RGB")).astype(np.int16)


def diff(a, b) -> float:
    """The mean absolute pixel difference of two outputs (0: identical)."""
    return float(abs(pixels(a) - pixels(b)).mean())
