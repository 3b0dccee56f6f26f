"""LoRA adapters: finding them in a folder, recognising each file by its keys (which family and part it fits,
its rank, its trigger words), and switching a loaded model's adapters per job through diffusers and peft.

A family says which parts of its models take adapters (`Family.lora_parts`); a loaded model that takes
them answers `lora_modules()` (part name -> the diffusers module, a PeftAdapterMixin). Adapters are loaded
once per module (named by their file's hash) and switched per job with `set_adapters`; a job without any
disables them, which gives the base model's exact pixels.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubin.errors import InvalidParams

log = logging.getLogger(__name__)

SUFFIX = ".safetensors"
DEFAULT_FOLDER = "models/lora"
# <lora:name:weight> (A1111): the weight is optional.
TAG = re.compile(r"<lora:([^:>]+)(?::([^:>]*))?>")
_ADAPTER_SUFFIX = re.compile(r"\.(lora_A|lora_B|lora_down|lora_up)(\.[^.]+)?\.weight$|\.alpha$")
# diffusers converts kohya's files for Stable Diffusion's UNet and for Flux, Wan, HunyuanVideo..., none for
# a Kandinsky model (its Kandinsky 5 loader reads diffusers' own keys only).
KOHYA = (
    "kohya-style keys (lora_unet_..., lora_te_...), which Kubin cannot read: diffusers has no converter for "
    "them on the Kandinsky models. Expected: diffusers/peft keys (down_blocks.1.attentions.0.to_q.lora_A.weight, "
    "optionally under unet., prior. or transformer.), as diffusers' save_lora_adapter or save_lora_weights, "
    "peft, and Kubin's Training tab write them"
)
# Safetensors metadata keys that trainers write trigger words under.
_TRIGGER_KEYS = ("modelspec.trigger_phrase", "trigger_words", "ss_trigger_words", "activation_text")


@dataclass(frozen=True)
class LoraFile:
    """One adapter file and what its keys say about it. `family` and `part` are empty when it fits no
    family (`reason` says why)."""

    name: str  # its path under the folder without the suffix, "/"-separated ("styles/ink")
    path: Path
    family: str = ""
    part: str = ""
    part_title: str = ""
    prefix: str = ""  # the prefix its keys carry (a whole pipeline's file), "" for one part's
    also: tuple[str, ...] = ()  # other families whose part has the same layers, names and shapes alike
    rank: int = 0
    triggers: tuple[str, ...] = ()
    reason: str = ""
    metadata: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def fits(self) -> bool:
        return bool(self.family)

    def fits_family(self, family_id: str) -> bool:
        return self.fits and family_id in (self.family, *self.also)

    def describe(self) -> str:
        """What it fits, as a user reads it: "the decoder UNet of family kd22, rank 4"."""
        if not self.fits:
            return f"no model family ({self.reason})"
        also = f" (or {', '.join(self.also)}: its layers are alike there)" if self.also else ""
        return f"the {self.part_title} of family {self.family}{also}, rank {self.rank}"

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "path": str(self.path), "family": self.family, "part": self.part,
                "also": list(self.also), "rank": self.rank, "triggers": list(self.triggers), "fits": self.fits,
                "reason": self.reason}  # fmt: skip


@dataclass(frozen=True)
class ActiveLora:
    """An adapter chosen for a job, with its weight and the short hash outputs record."""

    file: LoraFile
    weight: float
    hash: str

    def as_json(self) -> dict[str, Any]:
        return {"name": self.file.name, "weight": self.weight, "hash": self.hash}


def inspect_lora(path: Path, name: str, families: Iterable) -> LoraFile:
    """Read a file's header (not its tensors) and recognise it against each family's `lora_parts`.
    A file that is not a readable safetensors file raises InvalidParams naming it."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as f:
            keys = list(f.keys())
            metadata = f.metadata() or {}
            shapes = {k: tuple(f.get_slice(k).get_shape()) for k in keys if _ADAPTER_SUFFIX.search(k)}
    except Exception as exc:  # safetensors raises its own error types for a damaged header
        raise InvalidParams(
            f"The LoRA file {path.name} cannot be read ({type(exc).__name__}: {exc}); "
            "a LoRA must be a .safetensors file of adapter weights."
        ) from None
    downs = [shape for k, shape in shapes.items() if ".lora_A." in k or ".lora_down." in k]
    rank = min((shape[0] for shape in downs), default=0)
    triggers = _triggers(metadata)
    found = dict(name=name, path=path, rank=rank, triggers=triggers, metadata=metadata)
    modules = {_ADAPTER_SUFFIX.sub("", k) for k in keys if _ADAPTER_SUFFIX.search(k)}
    if not modules:
        return LoraFile(
            **found, reason="it holds no LoRA weights (no lora_A/lora_B or lora_down/lora_up keys)"
        )
    if any(k.startswith(("lora_unet_", "lora_te")) for k in modules):
        return LoraFile(**found, reason=KOHYA)
    matches, unlike = [], []  # (family, part, prefix, what its telltale says)
    for family in families:
        for part in family.lora_parts:
            prefix = _common_prefix(modules, part.prefix)
            names = {m.removeprefix(prefix) for m in modules}
            if all(re.fullmatch(part.modules, m) for m in names):
                said = part.telltale(_layer_shapes(shapes, prefix)) if part.telltale else None
                (unlike if said is False else matches).append((family, part, prefix, said))
    if matches:
        # The part whose telltale knows the file first; else the first of those the file says nothing against.
        matches.sort(key=lambda m: m[3] is not True)
        family, part, prefix, said = matches[0]
        also = () if said else tuple(m[0].id for m in matches[1:] if m[1].name == part.name)
        return LoraFile(
            **found, family=family.id, part=part.name, part_title=part.title, prefix=prefix, also=also
        )
    if unlike:
        parts = ", ".join(f"the {part.title} of family {family.id}" for family, part, _, _ in unlike)
        return LoraFile(**found, reason=f"its layers are named as in {parts}, but shaped for another model")
    example = sorted(modules)[0]
    return LoraFile(**found, reason=f"its layers (e.g. {example}) match no model part Kubin knows")


def _layer_shapes(shapes: dict[str, tuple], prefix: str) -> dict[str, tuple[int, int]]:
    """{module name (without the file's prefix): (in features, out features)} from its down and up weights."""
    layers: dict[str, list[int]] = {}
    for key, shape in shapes.items():
        if len(shape) < 2:  # an alpha
            continue
        module = _ADAPTER_SUFFIX.sub("", key).removeprefix(prefix)
        sides = layers.setdefault(module, [0, 0])
        if ".lora_A." in key or ".lora_down." in key:
            sides[0] = shape[1]
        else:
            sides[1] = shape[0]
    return {m: (sides[0], sides[1]) for m, sides in layers.items()}


def _common_prefix(modules: set[str], prefix: str) -> str:
    """The part's prefix with its dot when every module name carries it (a whole pipeline's file)."""
    dotted = f"{prefix}." if prefix else ""
    return dotted if dotted and all(m.startswith(dotted) for m in modules) else ""


def _triggers(metadata: dict[str, str]) -> tuple[str, ...]:
    for key in _TRIGGER_KEYS:
        value = metadata.get(key, "").strip()
        if value:
            return tuple(w.strip() for w in value.split(",") if w.strip())
    tags: dict[str, int] = {}
    try:  # kohya's trainer: {dataset: {tag: count}}; the most frequent tags say what it was trained on
        for counts in json.loads(metadata.get("ss_tag_frequency", "{}")).values():
            for tag, count in counts.items():
                tags[tag.strip()] = tags.get(tag.strip(), 0) + int(count)
    except (ValueError, AttributeError, TypeError):
        return ()
    return tuple(sorted(tags, key=lambda t: -tags[t])[:3])


def file_hash(path: Path) -> str:
    """The short hash outputs record (A1111's `Lora hashes`): the first 12 hex digits of the file's sha256."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:12]


class LoraLibrary:
    """The adapters under one folder (subfolders too), recognised by their keys. Scanned on first use and
    on `refresh()`; a name may also be a path to a file outside the folder."""

    def __init__(
        self, folder: str | Path = DEFAULT_FOLDER, families: Iterable | None = None, fuse: bool = False
    ):
        self.folder = Path(folder)
        # Merge the job's adapters into the weights (`lora.fuse`, --fuse-lora): as fast as no adapter while
        # the same set runs job after job; each change of set or weights merges again.
        self.fuse = fuse
        self._families = families
        self._files: dict[str, LoraFile] | None = None
        self._hashes: dict[tuple[str, float, int], str] = {}

    def families(self) -> list:
        if self._families is None:
            from kubin.models.registry import FAMILIES

            return list(FAMILIES.values())
        return list(self._families)

    def refresh(self) -> list[LoraFile]:
        files: dict[str, LoraFile] = {}
        if self.folder.is_dir():
            for path in sorted(self.folder.rglob(f"*{SUFFIX}")):
                name = path.relative_to(self.folder).with_suffix("").as_posix()
                try:
                    files[name] = inspect_lora(path, name, self.families())
                except InvalidParams as exc:
                    files[name] = LoraFile(name=name, path=path, reason=str(exc))
        self._files = files
        return list(files.values())

    def list(self) -> list[LoraFile]:
        if self._files is None:
            self.refresh()
        return list(self._files.values())  # type: ignore[union-attr]

    def find(self, name: str) -> LoraFile:
        """The adapter a user named: a name in the folder (with or without subfolders, when unique) or a
        path to a file. InvalidParams says what is there when nothing matches."""
        path = Path(name).expanduser()
        if path.suffix == SUFFIX and path.is_file():  # named by its path, so restoring finds it again
            return inspect_lora(path, name, self.families())
        files = {f.name: f for f in self.list() if f.path.is_file()}  # one removed since the scan is gone
        if name not in files:
            stems = [f for f in files.values() if f.name.rsplit("/", 1)[-1] == name]
            if len(stems) == 1:
                return self._checked(stems[0])
            files = {f.name: f for f in self.refresh()}  # a file added since the last scan
        if name not in files:
            known = ", ".join(sorted(files)) or "none"
            raise InvalidParams(
                f"No LoRA named {name!r} in {self.folder} (found: {known}); put the .safetensors file there "
                "or give its path."
            )
        return self._checked(files[name])

    def _checked(self, found: LoraFile) -> LoraFile:
        if not found.fits and found.reason.startswith("The LoRA file"):
            raise InvalidParams(found.reason)  # a damaged file: say so now
        return found

    def hash(self, file: LoraFile) -> str:
        stat = file.path.stat()
        key = (str(file.path), stat.st_mtime, stat.st_size)
        if key not in self._hashes:
            self._hashes[key] = file_hash(file.path)
        return self._hashes[key]

    def resolve(self, entries: Iterable[str], family, model_title: str) -> list[ActiveLora]:
        """The job's adapters ("name" or "name:weight" each), checked against the model's family: one that
        fits another family or none is refused with InvalidParams naming the file and what it fits."""
        active = []
        for entry in entries:
            name, weight = parse_entry(entry)
            found = self.find(name)
            parts = {p.name: p for p in family.lora_parts}
            if not found.fits_family(family.id) or found.part not in parts:
                wanted = ", ".join(p.title for p in family.lora_parts)
                needs = f"a LoRA for its {wanted}" if wanted else "no LoRA (this model takes none)"
                raise InvalidParams(
                    f"The LoRA {found.path.name} fits {found.describe()}; {model_title} (family {family.id}) "
                    f"needs {needs}."
                )
            active.append(ActiveLora(found, weight, self.hash(found)))
        return active


def parse_entry(entry: str | dict) -> tuple[str, float]:
    """("name", weight) from "name", "name:0.8" or {"name": ..., "weight": ...}; a path may hold colons
    (C:\\...), so only a number after the last colon is a weight."""
    if isinstance(entry, dict):
        name, weight = str(entry.get("name", "")), entry.get("weight", 1.0)
    else:
        name, _, tail = str(entry).rpartition(":")
        name, weight = (name, tail) if name and _is_number(tail) else (str(entry), 1.0)
    try:
        weight = float(weight)
    except (TypeError, ValueError):
        raise InvalidParams(f"The weight of LoRA {name!r} must be a number (got {weight!r}).") from None
    if not name.strip():
        raise InvalidParams("A LoRA entry has no name; write name or name:weight.")
    return name.strip(), weight


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def entry_text(entry: str | dict) -> str:
    """An entry as "name:weight", the form params and metadata keep."""
    name, weight = parse_entry(entry)
    return f"{name}:{weight:g}"


def take_prompt_tags(prompt: str) -> tuple[str, list[str]]:
    """The prompt without its <lora:name:weight> tags (spaces tidied), and the tags as "name:weight"."""
    found = [f"{m.group(1).strip()}:{m.group(2).strip() or '1'}" if m.group(2) is not None else m.group(1).strip()
             for m in TAG.finditer(prompt)]  # fmt: skip
    if not found:
        return prompt, []
    text = TAG.sub("", prompt)
    text = re.sub(r"\s*,\s*(,\s*)+", ", ", text)  # "a, <lora:x>, b" -> "a, b"
    text = re.sub(r"[ \t]{2,}", " ", text).strip().strip(",").strip()
    return text, found


class AdapterSlots:
    """The adapters loaded into one loaded model's parts, by part name: each file is loaded once per part
    (named by its hash) and the job's set switched on with its weights; an empty set disables them.

    Fused, the set is merged into the weights of the layers it adapts, whose own weights are kept aside (on
    the CPU) and copied back before another set or none runs: merging and unmerging in floating point would
    not give the model's exact weights back."""

    def __init__(self):
        self._loaded: dict[int, set[str]] = {}  # id(module) -> adapter names in it
        self._fused: dict[int, tuple] = {}  # id(module) -> the (names, weights) merged into it
        self._kept: dict[int, list] = {}  # id(module) -> [(peft layer, its own weight)] while fused
        self._not_fused: set[int] = set()  # id(module) of quantised parts already said to run unfused

    def activate(self, modules: dict[str, Any], loras: list[ActiveLora], fuse: bool = False) -> list[str]:
        """Switch on `loras` (none: every adapter off); returns notices for the job (a fuse not done)."""
        notices = []
        by_part: dict[str, list[ActiveLora]] = {part: [] for part in modules}
        for lora in loras:
            by_part.setdefault(lora.file.part, []).append(lora)
        for part, chosen in by_part.items():
            module = modules.get(part)
            if module is None:
                if chosen:
                    raise InvalidParams(f"This model has no {part} to apply {chosen[0].file.name} to.")
                continue
            loaded = self._loaded.setdefault(id(module), set())
            names, weights = [], []
            for lora in chosen:
                adapter = f"lora_{lora.hash}"
                if adapter not in names:
                    names.append(adapter)
                    weights.append(lora.weight)
                else:  # the same file twice: the weights add up
                    weights[names.index(adapter)] += lora.weight
            wanted = (tuple(names), tuple(weights))
            # Merged into quantised weights, an adapter is lost (optimum-quanto) or the merge fails (torchao):
            # a quantised part runs its adapters unfused, as fast as peft makes them, and says so once.
            fused_here = fuse and not has_quantized_weights(module)
            if fuse and chosen and not fused_here and id(module) not in self._not_fused:
                self._not_fused.add(id(module))
                notices.append(f"LoRA: the {part} is quantised, so its adapters run unfused (lora.fuse, "
                               "--fuse-lora, merges only into unquantised weights).")  # fmt: skip
            if self._fused.get(id(module)) == wanted and fused_here:
                continue  # merged already: nothing to switch
            self._unfuse(module)
            if not chosen:
                if loaded:
                    module.disable_adapters()
                continue
            for lora in chosen:
                adapter = f"lora_{lora.hash}"
                if adapter not in loaded:
                    load_adapter(module, lora.file, adapter)
                    loaded.add(adapter)
            module.enable_adapters()
            module.set_adapters(names, weights)
            if fused_here:
                self._fuse(module, names)
                self._fused[id(module)] = wanted
        return notices

    def _fuse(self, module, names: list[str]) -> None:
        import torch
        from peft.tuners.tuners_utils import BaseTunerLayer

        kept = []
        with torch.no_grad():
            for layer in module.modules():
                if isinstance(layer, BaseTunerLayer) and any(n in layer.lora_A for n in names):
                    kept.append((layer, layer.get_base_layer().weight.detach().to("cpu", copy=True)))
                    layer.merge(adapter_names=[n for n in names if n in layer.lora_A])
        self._kept[id(module)] = kept

    def _unfuse(self, module) -> None:
        """The module's own weights back, exactly, where a set was merged."""
        import torch

        self._fused.pop(id(module), None)
        with torch.no_grad():
            for layer, weight in self._kept.pop(id(module), []):
                layer.get_base_layer().weight.copy_(weight)
                layer.merged_adapters.clear()


def has_quantized_weights(module) -> bool:
    """Whether any of `module`'s weights were quantised (kubin.runtime.quantize: torchao, quanto, bnb)."""
    from kubin.runtime.quantize import is_quantized

    return any(is_quantized(p) for p in module.parameters())


def with_peft(module):
    """`module` with diffusers' peft adapter methods (`load_lora_adapter`, `set_adapters`, ...): a model
    class without them (the Kandinsky 3 UNet) gets a subclass of the same name that adds PeftAdapterMixin,
    whose loader injects the adapters with peft. The weights and hooks stay as they are."""
    from diffusers.loaders.peft import PeftAdapterMixin

    if not isinstance(module, PeftAdapterMixin):
        module.__class__ = _with_peft_mixin(type(module))
    return module


@functools.cache
def _with_peft_mixin(cls: type) -> type:
    from diffusers.loaders.peft import PeftAdapterMixin

    # Same name and module: saving the pipeline still writes the diffusers class it loads back as.
    return type(cls.__name__, (cls, PeftAdapterMixin), {"__module__": cls.__module__})


def load_adapter(module, file: LoraFile, adapter: str) -> None:
    """One file's weights into a module as a named adapter (peft), with the alpha its metadata records."""
    from safetensors.torch import load_file

    try:
        state = load_file(str(file.path))
    except Exception as exc:
        raise InvalidParams(
            f"The LoRA file {file.path.name} cannot be read ({type(exc).__name__})."
        ) from None
    if file.prefix:
        state = {k.removeprefix(file.prefix): v for k, v in state.items() if k.startswith(file.prefix)}
    metadata = None
    if "lora_adapter_metadata" in file.metadata:
        metadata = json.loads(file.metadata["lora_adapter_metadata"])
    try:
        with warnings.catch_warnings():  # peft warns that a second adapter makes several: that is the point
            warnings.filterwarnings("ignore", message="Already found a `peft_config`")
            module.load_lora_adapter(state, prefix=None, adapter_name=adapter, metadata=metadata)
    except (RuntimeError, ValueError, KeyError) as exc:
        if adapter in getattr(module, "peft_config", {}):  # half-injected: drop it, so the model stays usable
            module.delete_adapters(adapter)
        raise InvalidParams(
            f"The LoRA {file.path.name} does not fit this model's {file.part_title} ({_first_line(exc)}); it was "
            "probably trained for another size of the model."
        ) from None
    log.info("Loaded LoRA %s (%s) into the %s", file.name, adapter, file.part_title)


def _first_line(exc: BaseException) -> str:
    return str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
