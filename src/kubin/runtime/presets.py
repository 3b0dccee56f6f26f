"""`--medvram` and `--lowvram`: the low-VRAM options that suit each model family, in one table.

As in AUTOMATIC1111's web UI, medvram keeps whole parts off the GPU until they run (model offload)
and lowvram goes layer by layer (sequential offload, the least VRAM and much slower); each family adds
the VAE and attention options that help it (VAE tiling and slicing only where the VAE has them: in
diffusers 0.42 the MoVQ of 2.x and 3.0, a VQModel, has neither). A preset only switches options on: what the user switched
on stays on, and the stronger offload of the two wins. The VRAM each preset aims at comes from the
size of the model's largest part in fp16/bf16 (see benchmarks/RESULTS.md); it is an aim, not a figure
measured on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kubin.errors import InvalidParams
from kubin.runtime.memory import OFFLOAD_MODES, PRESET_NAMES, MemoryOptions

__all__ = ["PRESETS", "PRESET_NAMES", "Preset", "apply_preset", "out_of_memory_advice", "preset_for"]


@dataclass(frozen=True)
class Preset:
    options: dict[str, Any]  # MemoryOptions fields this preset switches on
    aims_at: str  # the VRAM it aims at, and why (not measured on a GPU)


PRESETS: dict[str, dict[str, Preset]] = {
    "medvram": {
        "kd21": Preset(
            {"offload": "model"},
            "about 4 GB: one part on the GPU at a time, the largest the 1.25 B UNet (2.5 GB in fp16)",
        ),
        "kd22": Preset(
            {"offload": "model"},
            "about 4 GB: one part on the GPU at a time, the largest the 1.25 B UNet (2.5 GB in fp16)",
        ),
        "kd30": Preset(
            {"offload": "model", "attention_slicing": True},
            "24 GB: one part on the GPU at a time, the largest the 8.6 B T5 encoder (17 GB in fp16)",
        ),
        "kd50": Preset(
            {"offload": "model", "vae_tiling": True},
            "16 to 24 GB: one part on the GPU at a time, the largest the Qwen2.5-VL 7B encoder "
            "(about 16 GB in bf16); the video decoded in tiles",
        ),
    },
    "lowvram": {
        "kd21": Preset(
            {"offload": "sequential", "attention_slicing": True},
            "2 GB or less: layer by layer, attention in slices; much slower",
        ),
        "kd22": Preset(
            {"offload": "sequential", "attention_slicing": True},
            "2 GB or less: layer by layer, attention in slices; much slower",
        ),
        "kd30": Preset(
            {"offload": "sequential", "attention_slicing": True},
            "8 GB: layer by layer (the largest layer is T5's 0.5 GB embedding), attention in slices; much slower",
        ),
        "kd50": Preset(
            {"offload": "sequential", "vae_tiling": True},
            "8 GB: layer by layer (the largest layer is Qwen's 1.1 GB token embedding), the video decoded "
            "in tiles; much slower, and the waiting weights take about 24 GB of system RAM",
        ),
    },
}
# Kandinsky 3.1 is 3.0's architecture (the same T5 encoder, UNet and MoVQ): the same presets.
for _family_presets in PRESETS.values():
    _family_presets["kd31"] = _family_presets["kd30"]

# Families without an entry of their own (a model added later) get the options every pipeline has.
GENERIC = {
    "medvram": Preset({"offload": "model", "vae_tiling": True}, "not estimated for this family"),
    "lowvram": Preset({"offload": "sequential", "vae_tiling": True}, "not estimated for this family"),
}


INT8_HELPS = ("kd30", "kd31", "kd40", "kd50")


def check_preset(name: str) -> str:
    name = (name or "none").strip().lower()
    if name not in PRESET_NAMES:
        raise InvalidParams(f"Unknown memory preset {name!r}; use one of {', '.join(PRESET_NAMES)}.")
    return name


def preset_for(name: str, family: str) -> Preset | None:
    """The preset `name` for a family (None for "none")."""
    name = check_preset(name)
    if name == "none":
        return None
    return PRESETS[name].get(family, GENERIC[name])


def apply_preset(options: MemoryOptions, family: str) -> MemoryOptions:
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


def out_of_memory_advice(family: str, options: MemoryOptions, video: bool = False) -> str:
    """What to try after running out of memory, given what is on already: the next offload step, the
    family's VAE and attention options, a preset, then a smaller job."""
    tries: list[str] = []
    if options.offload == "none":
        tries.append("--offload model")
    elif options.offload == "model":
        tries.append("--offload sequential")
    tiling = family == "kd50"  # diffusers' VQModel (the MoVQ of 2.x and 3.0) has neither tiling nor slicing
    if tiling and not options.vae_tiling:
        tries.append("--vae-tiling")
    if family in ("kd21", "kd22", "kd30") and not options.attention_slicing:
        tries.append("--attention-slicing")
    # Families whose big parts are mostly Linear layers (T5, Qwen, DiTs): int8 halves their bf16/fp16
    # weights (benchmarks/RESULTS.md); a 2.x UNet is mostly convolutions and shrinks by about an eighth.
    if family in INT8_HELPS and options.quantize == "none":
        tries.append("--quantize torchao-int8")
    if options.preset != "lowvram":
        tries.append("--lowvram" if options.preset == "medvram" else "--medvram or --lowvram")
    tries.append("fewer frames or a smaller size" if video else "a smaller size or batch size")
    return ", ".join(tries[:-1]) + ", or " + tries[-1] if len(tries) > 1 else tries[0]


def describe_presets() -> list[dict[str, str]]:
    """One row per preset and family, for the README table and the Settings tab."""
    rows = []
    for preset_name, families in PRESETS.items():
        for family, preset in families.items():
            flags = []
            for name, value in preset.options.items():
                flags.append(f"--offload {value}" if name == "offload" else "--" + name.replace("_", "-"))
            rows.append(
                {"preset": preset_name, "family": family, "flags": " ".join(flags), "aims_at": preset.aims_at}
            )
    return rows
