"""`--medvram` and `--lowvram`: the low-VRAM options that suit a model, and what to try after running out
of memory. The options that suit each model family are declared by the family (`Family.presets` and its
capabilities, in kubin.models.families); this module applies them and never names a family.

As in AUTOMATIC1111's web UI, medvram keeps whole parts off the GPU until they run (model offload)
and lowvram goes layer by layer (sequential offload, the least VRAM and much slower); each family adds
the VAE and attention options that help it (VAE tiling and slicing only where the VAE has them: in
diffusers 0.42 the MoVQ of 2.x and 3.0, a VQModel, has neither). A preset only switches options on: what
the user switched on stays on, and the stronger offload of the two wins. The VRAM each preset aims at comes
from the size of the model's largest part in fp16/bf16 (see benchmarks/RESULTS.md); it is an aim, not a
figure measured on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from kubin.errors import InvalidParams
from kubin.runtime.memory import OFFLOAD_MODES, PRESET_NAMES, MemoryOptions

__all__ = ["GENERIC", "PRESET_NAMES", "Preset", "apply_preset", "out_of_memory_advice", "preset_for"]


@dataclass(frozen=True)
class Preset:
    options: dict[str, Any]  # MemoryOptions fields this preset switches on
    aims_at: str  # the VRAM it aims at, and why (not measured on a GPU)


class Capabilities(Protocol):
    """What the runtime reads of a model family (kubin.models.spec.Family has these fields)."""

    presets: dict[str, Preset]
    vae_tiling: bool
    attention_slicing: bool
    int8_helps: bool


# Families that declare no preset of their own (a model added later) get the options every pipeline has.
GENERIC = {
    "medvram": Preset({"offload": "model", "vae_tiling": True}, "not estimated for this family"),
    "lowvram": Preset({"offload": "sequential", "vae_tiling": True}, "not estimated for this family"),
}


def check_preset(name: str) -> str:
    name = (name or "none").strip().lower()
    if name not in PRESET_NAMES:
        raise InvalidParams(f"Unknown memory preset {name!r}; use one of {', '.join(PRESET_NAMES)}.")
    return name


def preset_for(name: str, family: Capabilities) -> Preset | None:
    """The preset `name` for a family (None for "none")."""
    name = check_preset(name)
    if name == "none":
        return None
    return family.presets.get(name, GENERIC[name])


def apply_preset(options: MemoryOptions, family: Capabilities) -> MemoryOptions:
    """`options` with its preset's options for `family` switched on (the user's own stay on)."""
    preset = preset_for(options.preset, family)
    if preset is None:
        return options
    changes: dict[str, Any] = {}
    for name, value in preset.options.items():
        if name == "offload":
            stronger = max(options.offload, value, key=OFFLOAD_MODES.index)
            changes[name] = stronger
        elif value and not getattr(options, name):
            changes[name] = value
    return options.with_(**changes)


def out_of_memory_advice(family: Capabilities, options: MemoryOptions, video: bool = False) -> str:
    """What to try after running out of memory, given what is on already: the next offload step, the
    family's VAE and attention options, a preset, then a smaller job."""
    tries: list[str] = []
    if options.offload == "none":
        tries.append("--offload model")
    elif options.offload == "model":
        tries.append("--offload sequential")
    if family.vae_tiling and not options.vae_tiling:
        tries.append("--vae-tiling")
    if family.attention_slicing and not options.attention_slicing:
        tries.append("--attention-slicing")
    # Families whose big parts are mostly Linear layers (T5, Qwen, DiTs): int8 halves their bf16/fp16
    # weights (benchmarks/RESULTS.md); a 2.x UNet is mostly convolutions and shrinks by about an eighth.
    if family.int8_helps and options.quantize == "none":
        tries.append("--quantize torchao-int8")
    if options.preset != "lowvram":
        tries.append("--lowvram" if options.preset == "medvram" else "--medvram or --lowvram")
    tries.append("fewer frames or a smaller size" if video else "a smaller size or batch size")
    return ", ".join(tries[:-1]) + ", or " + tries[-1] if len(tries) > 1 else tries[0]


def describe_presets(families: dict[str, Capabilities]) -> list[dict[str, str]]:
    """One row per preset and family that declares its own, for the README table and the Settings tab."""
    rows = []
    for preset_name in PRESET_NAMES[1:]:
        for family_id, family in families.items():
            preset = family.presets.get(preset_name)
            if preset is None:
                continue
            flags = []
            for name, value in preset.options.items():
                flags.append(f"--offload {value}" if name == "offload" else "--" + name.replace("_", "-"))
            rows.append(
                {
                    "preset": preset_name,
                    "family": family_id,
                    "flags": " ".join(flags),
                    "aims_at": preset.aims_at,
                }
            )
    return rows
