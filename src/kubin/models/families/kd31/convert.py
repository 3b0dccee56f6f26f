"""Kandinsky 3.1's official checkpoints renamed onto diffusers' modules, converted once and cached.

The 3.1 UNet has Kandinsky 3.0's architecture, which diffusers ships as `Kandinsky3UNet`; that class also
holds the text projection the authors keep in a separate file (`projection*.pt`, a Linear and a LayerNorm
applied to the T5 hidden states). Their MoVQ is diffusers' `VQModel` with spatial norms. So nothing is
reimplemented here: each native state-dict key is renamed, by the explicit rules below, to the name the
diffusers module gives the same tensor, and the result is saved in diffusers layout under the Kubin cache.

The official files (repo `ai-forever/Kandinsky3.1`):
  weights/kandinsky3.pt, kandinsky3_flash.pt, kandinsky3_inpainting.pt  {"unet": state dict, "null_embedding"}
  weights/movq.pt                                                       plain state dict
  weights/flan_ul2_encoder/                  transformers T5 encoder + tokenizer, and projection*.pt
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from kubin.errors import WeightsMissing

log = logging.getLogger(__name__)

NATIVE_REPO = "ai-forever/Kandinsky3.1"
CONVERT_VERSION = "1"  # bump when the conversion changes, so cached copies are made again

# What each model variant reads from the official repo (paths inside it).
ENCODER_DIR = "weights/flan_ul2_encoder"
MOVQ_FILE = "weights/movq.pt"
UNET_FILES = {  # variant -> (UNet checkpoint, projection checkpoint)
    "base": ("weights/kandinsky3.pt", f"{ENCODER_DIR}/projection.pt"),
    "flash": ("weights/kandinsky3_flash.pt", f"{ENCODER_DIR}/projection_flash.pt"),
    "inpainting": ("weights/kandinsky3_inpainting.pt", f"{ENCODER_DIR}/projection_inpainting.pt"),
}
NULL_EMBEDDING_FILE = "null_embedding.safetensors"  # saved next to a converted UNet

# Two values of the UNet that no tensor shape reveals. The official ones are fixed; a model folder may give
# its own in weights/kubin_arch.json ({"groups": 4, "head_dim": 8}), which only the tiny test models need.
ARCH_FILE = "weights/kubin_arch.json"


@dataclass(frozen=True)
class UNetArch:
    groups: int = 32
    head_dim: int = 64


# --- UNet (+ text projection) ------------------------------------------------------------------------
_UNET_TOP = {  # native prefix -> diffusers prefix, for everything outside the down/up blocks
    "to_time_embed.1.": "time_embedding.linear_1.",
    "to_time_embed.3.": "time_embedding.linear_2.",
    "feature_pooling.": "add_time_condition.",
    "in_layer.": "conv_in.",
    "out_layer.0.": "conv_norm_out.",
    "out_layer.2.": "conv_out.",
}
_ATTENTION = {"to_query": "to_q", "to_key": "to_k", "to_value": "to_v", "output_layer": "to_out.0"}
# The projection file is an nn.Sequential(Linear, LayerNorm); diffusers keeps it inside the UNet.
PROJECTION_KEYS = {
    "0.weight": "encoder_hid_proj.projection_linear.weight",
    "1.weight": "encoder_hid_proj.projection_norm.weight",
    "1.bias": "encoder_hid_proj.projection_norm.bias",
}
# Native: <side>_samples.L.self_attention_block.* and <side>_samples.L.resnet_attn_blocks.J.{0,1,2}.*
# (resnet in, cross-attention, resnet out). diffusers: <side>_blocks.L.attentions.0 (the self-attention),
# attentions.J+1 (the cross-attentions), resnets_in.J and resnets_out.J.
_NATIVE_BLOCK = re.compile(
    r"^(down|up)_samples\.(\d+)\.(?:self_attention_block|resnet_attn_blocks\.(\d+)\.([012]))\.(.+)$"
)
_DIFFUSERS_BLOCK = re.compile(r"^(down|up)_blocks\.(\d+)\.(attentions|resnets_in|resnets_out)\.(\d+)\.(.+)$")
_NATIVE_ATTENTION = re.compile(r"(^|\.)attention\.(to_query|to_key|to_value|output_layer)\.")
_DIFFUSERS_ATTENTION = re.compile(r"(^|\.)attention\.(to_q|to_k|to_v|to_out\.0)\.")


def unet_key_to_diffusers(key: str) -> str:
    """The `Kandinsky3UNet` name of a native UNet state-dict key (KeyError for a key it does not know)."""
    match = _NATIVE_BLOCK.match(key)
    if match:
        side, level, block, part, rest = match.groups()
        if block is None:
            where = "attentions.0"
        else:
            where = {
                "0": f"resnets_in.{block}",
                "1": f"attentions.{int(block) + 1}",
                "2": f"resnets_out.{block}",
            }[part]
        key = f"{side}_blocks.{level}.{where}.{rest}"
    else:
        key = _swap_prefix(key, _UNET_TOP)
    return _NATIVE_ATTENTION.sub(lambda m: f"{m[1]}attention.{_ATTENTION[m[2]]}.", key)


def unet_key_to_native(key: str) -> str:
    """The inverse of `unet_key_to_diffusers` (for UNet keys; the projection's are in PROJECTION_KEYS)."""
    inverse = {v: k for k, v in _ATTENTION.items()}
    key = _DIFFUSERS_ATTENTION.sub(lambda m: f"{m[1]}attention.{inverse[m[2]]}.", key)
    match = _DIFFUSERS_BLOCK.match(key)
    if match:
        side, level, kind, index, rest = match.groups()
        i = int(index)
        if kind == "attentions":
            where = "self_attention_block" if i == 0 else f"resnet_attn_blocks.{i - 1}.1"
        else:
            where = f"resnet_attn_blocks.{i}.{0 if kind == 'resnets_in' else 2}"
        return f"{side}_samples.{level}.{where}.{rest}"
    return _swap_prefix(key, {v: k for k, v in _UNET_TOP.items()})


def _swap_prefix(key: str, table: dict[str, str]) -> str:
    for old, new in table.items():
        if key.startswith(old):
            return new + key[len(old) :]
    raise KeyError(f"no mapping for the key {key!r}")


def unet_state_to_diffusers(unet: dict[str, Any], projection: dict[str, Any]) -> dict[str, Any]:
    """One `Kandinsky3UNet` state dict from the native UNet and projection state dicts."""
    state = {unet_key_to_diffusers(k): v for k, v in unet.items()}
    for key, value in projection.items():
        if key not in PROJECTION_KEYS:
            raise KeyError(f"no mapping for the projection key {key!r}")
        state[PROJECTION_KEYS[key]] = value
    return state


def unet_state_to_native(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The native UNet and projection state dicts of a `Kandinsky3UNet` state dict."""
    to_native = {v: k for k, v in PROJECTION_KEYS.items()}
    projection = {to_native[k]: v for k, v in state.items() if k in to_native}
    unet = {unet_key_to_native(k): v for k, v in state.items() if k not in to_native}
    return unet, projection


def unet_config(unet: dict[str, Any], projection: dict[str, Any], arch: UNetArch) -> dict[str, Any]:
    """The `Kandinsky3UNet` constructor values of a native UNet, read from its tensor shapes."""
    levels = 1 + max(int(k.split(".")[1]) for k in unet if k.startswith("down_samples."))
    blocks = 1 + max(int(k.split(".")[3]) for k in unet if k.startswith("down_samples.0.resnet_attn_blocks."))
    widths = [unet[f"down_samples.{level}.resnet_attn_blocks.0.0.resnet_blocks.3.projection.weight"].shape[0]
              for level in range(levels)]  # fmt: skip
    config = {
        "in_channels": unet["in_layer.weight"].shape[1],
        "time_embedding_dim": unet["to_time_embed.1.weight"].shape[0],
        "groups": arch.groups,
        "attention_head_dim": arch.head_dim,
        "layers_per_block": blocks,
        "block_out_channels": widths,
        "cross_attention_dim": projection["0.weight"].shape[0],
        "encoder_hid_dim": projection["0.weight"].shape[1],
    }
    out_channels = unet["out_layer.2.weight"].shape[0]
    if out_channels != config["in_channels"]:  # the inpainting UNet: 9 channels in, 4 out
        config["out_channels"] = out_channels
    return config


# --- MoVQ --------------------------------------------------------------------------------------------
_MOVQ_MID = {"block_1": "resnets.0", "attn_1": "attentions.0", "block_2": "resnets.1"}
_MOVQ_ATTENTION = {"q": "to_q", "k": "to_k", "v": "to_v", "proj_out": "to_out.0"}


def movq_key_to_diffusers(key: str, levels: int) -> str:
    """The `VQModel` name of a native MoVQ key; `levels` is the number of resolutions (len(ch_mult))."""
    parts = key.split(".")
    coder = parts[0]
    if coder in ("quant_conv", "post_quant_conv") or parts[1:2] in (["conv_in"], ["conv_out"]):
        return key
    if coder not in ("encoder", "decoder"):
        raise KeyError(f"no mapping for the MoVQ key {key!r}")
    rest = parts[1:]
    if rest[0] == "norm_out":  # a GroupNorm in the encoder, a SpatialNorm in the decoder
        tail = rest[2:] if coder == "encoder" else rest[1:]
        return ".".join([coder, "conv_norm_out", *tail])
    if rest[0] == "mid":
        where, tail = ["mid_block", *_MOVQ_MID[rest[1]].split(".")], rest[2:]
        kind = "attn" if rest[1] == "attn_1" else "block"
    elif rest[0] in ("down", "up") and len(rest) > 3:
        level = int(rest[1]) if coder == "encoder" else levels - 1 - int(rest[1])  # decoder runs low to high
        blocks = "down_blocks" if coder == "encoder" else "up_blocks"
        kind = rest[2]
        if kind in ("downsample", "upsample"):
            return ".".join([coder, blocks, str(level), f"{kind}rs", "0", *rest[3:]])
        where, tail = (
            [blocks, str(level), {"block": "resnets", "attn": "attentions"}[kind], rest[3]],
            rest[4:],
        )
    else:
        raise KeyError(f"no mapping for the MoVQ key {key!r}")
    if kind == "attn":
        if tail[0] == "norm":
            tail = ["group_norm", *tail[2:]] if coder == "encoder" else ["spatial_norm", *tail[1:]]
        else:
            tail = [*_MOVQ_ATTENTION[tail[0]].split("."), *tail[1:]]
    else:  # a resnet: the encoder's norms are plain GroupNorms, the decoder's SpatialNorms keep their parts
        if tail[0] in ("norm1", "norm2") and coder == "encoder":
            tail = [tail[0], *tail[2:]]
        elif tail[0] == "nin_shortcut":
            tail = ["conv_shortcut", *tail[1:]]
    return ".".join([coder, *where, *tail])


def movq_key_to_native(key: str, levels: int) -> str:
    """The inverse of `movq_key_to_diffusers`."""
    parts = key.split(".")
    coder = parts[0]
    if coder in ("quant_conv", "post_quant_conv") or parts[1:2] in (["conv_in"], ["conv_out"]):
        return key
    rest = parts[1:]
    if rest[0] == "conv_norm_out":
        return ".".join([coder, "norm_out", *(["norm_layer"] if coder == "encoder" else []), *rest[1:]])
    if rest[0] == "mid_block":
        inverse_mid = {v: k for k, v in _MOVQ_MID.items()}
        where, kind, tail = ["mid", inverse_mid[f"{rest[1]}.{rest[2]}"]], rest[1], rest[3:]
    else:
        level = int(rest[1]) if coder == "encoder" else levels - 1 - int(rest[1])
        side = "down" if coder == "encoder" else "up"
        if rest[2] in ("downsamplers", "upsamplers"):
            return ".".join([coder, side, str(level), rest[2][:-2], *rest[4:]])
        kind = rest[2]
        where, tail = [side, str(level), "block" if kind == "resnets" else "attn", rest[3]], rest[4:]
    if kind == "attentions":
        if tail[0] in ("group_norm", "spatial_norm"):
            tail = ["norm", *(["norm_layer"] if tail[0] == "group_norm" else []), *tail[1:]]
        else:
            inverse = {v: k for k, v in _MOVQ_ATTENTION.items()}
            name = "to_out.0" if tail[0] == "to_out" else tail[0]
            tail = [inverse[name], *tail[(2 if tail[0] == "to_out" else 1) :]]
    else:
        if tail[0] in ("norm1", "norm2") and coder == "encoder":
            tail = [tail[0], "norm_layer", *tail[1:]]
        elif tail[0] == "conv_shortcut":
            tail = ["nin_shortcut", *tail[1:]]
    return ".".join([coder, *where, *tail])


def movq_levels(state: dict[str, Any]) -> int:
    return 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.down."))


def _is_attention_matrix(diffusers_key: str) -> bool:
    return ".attentions." in diffusers_key and diffusers_key.endswith(
        ("to_q.weight", "to_k.weight", "to_v.weight", "to_out.0.weight")
    )


def movq_state_to_diffusers(state: dict[str, Any]) -> dict[str, Any]:
    """A `VQModel` state dict from the native MoVQ's: renamed, and the attention's 1x1 convolutions as the
    linear layers diffusers uses (the same numbers). The codebook the VQModel carries is not in the native
    model (Kandinsky 3 decodes without quantizing): it is filled with zeros and never read."""
    levels = movq_levels(state)
    out = {}
    for key, value in state.items():
        name = movq_key_to_diffusers(key, levels)
        out[name] = value.reshape(value.shape[:2]) if _is_attention_matrix(name) else value
    z = state["quant_conv.weight"].shape[0]
    import torch

    out[MOVQ_CODEBOOK] = torch.zeros(MOVQ_CODEBOOK_SIZE, z, dtype=state["quant_conv.weight"].dtype)
    return out


def movq_state_to_native(state: dict[str, Any], levels: int) -> dict[str, Any]:
    out = {}
    for key, value in state.items():
        if key == MOVQ_CODEBOOK:
            continue
        out[movq_key_to_native(key, levels)] = value[:, :, None, None] if _is_attention_matrix(key) else value
    return out


# The one VQModel tensor with no native counterpart (see movq_state_to_diffusers); one row is enough.
MOVQ_CODEBOOK = "quantize.embedding.weight"
MOVQ_CODEBOOK_SIZE = 1


def movq_config(state: dict[str, Any]) -> dict[str, Any]:
    """The `VQModel` constructor values of a native MoVQ, read from its tensor shapes."""
    levels = movq_levels(state)
    widths = [state[f"encoder.down.{i}.block.0.conv1.weight"].shape[0] for i in range(levels)]
    attention = [any(k.startswith(f"encoder.down.{i}.attn.") for k in state) for i in range(levels)]
    blocks = 1 + max(int(k.split(".")[4]) for k in state if k.startswith("encoder.down.0.block."))
    z = state["quant_conv.weight"].shape[0]
    return {
        "in_channels": state["encoder.conv_in.weight"].shape[1],
        "out_channels": state["decoder.conv_out.weight"].shape[0],
        "down_block_types": ["AttnDownEncoderBlock2D" if a else "DownEncoderBlock2D" for a in attention],
        "up_block_types": ["AttnUpDecoderBlock2D" if a else "UpDecoderBlock2D" for a in reversed(attention)],
        "block_out_channels": widths,
        "layers_per_block": blocks,
        "latent_channels": z,
        "vq_embed_dim": z,
        "num_vq_embeddings": MOVQ_CODEBOOK_SIZE,
        "norm_num_groups": 32,
        "norm_type": "spatial",
    }


# --- building the diffusers modules -----------------------------------------------------------------
def build_unet(unet: dict[str, Any], projection: dict[str, Any], arch: UNetArch = UNetArch()):
    """A `Kandinsky3UNet` (or, with 9 input channels, our inpainting subclass) holding the native
    weights, loaded strictly: a key missing or left over is an error."""
    import torch

    config = unet_config(unet, projection, arch)
    cls = unet_class(config)
    with torch.device("meta"):
        model = cls(**config)
    model.load_state_dict(unet_state_to_diffusers(unet, projection), strict=True, assign=True)
    return model.eval()


def unet_class(config: dict[str, Any]):
    if "out_channels" in config:
        from kubin.models.families.kd31.inpaint import Kandinsky3InpaintUNet

        return Kandinsky3InpaintUNet
    from diffusers import Kandinsky3UNet

    return Kandinsky3UNet


def build_movq(state: dict[str, Any]):
    import torch
    from diffusers import VQModel

    with torch.device("meta"):
        model = VQModel(**movq_config(state))
    model.load_state_dict(movq_state_to_diffusers(state), strict=True, assign=True)
    return model.eval()


# --- finding the official files ----------------------------------------------------------------------
def is_local(source: str) -> bool:
    path = Path(source).expanduser()
    return path.is_absolute() or source.startswith((".", "~")) or path.exists()


def native_file(source: str, name: str, model_id: str) -> Path:
    """The path of one file of the official repo layout: in a local folder, in the Hugging Face cache, or
    downloaded (unless offline). A file that cannot be had is a WeightsMissing naming it."""
    from kubin.models.weights import hub_offline

    if is_local(source):
        path = Path(source).expanduser() / name
        if not path.exists():
            raise WeightsMissing(
                f"Model {model_id}: {path} is missing; the folder {source} must be laid out like the "
                f"{NATIVE_REPO} repo (it needs {name})."
            )
        return path
    from huggingface_hub import hf_hub_download, snapshot_download

    fetch = snapshot_download if name.endswith("/") else hf_hub_download
    args = {"allow_patterns": f"{name}*"} if name.endswith("/") else {"filename": name}
    try:  # the cache first, without touching the network
        found = Path(fetch(source, local_files_only=True, **args))
        if not name.endswith("/"):
            return found
        if (found / name / "config.json").is_file():  # a cached snapshot may lack the folder
            return found / name
    except Exception:
        pass
    hint = (
        f"run `python -m kubin download {model_id}` on a machine with internet access, or point the "
        f"config's models.{model_id}.repo at a local folder laid out like {NATIVE_REPO}"
    )
    if hub_offline():
        raise WeightsMissing(
            f"Model {model_id} needs {name} from {source}, which is not in the Hugging Face cache and "
            f"downloads are off (HF_HUB_OFFLINE); {hint}."
        )
    log.warning("Downloading %s of %s for %s (first use)...", name, source, model_id)
    try:
        found = Path(fetch(source, **args))
    except Exception as exc:
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise WeightsMissing(
            f"Model {model_id} needs {name} from {source}, which could not be downloaded ({reason}); {hint}."
        ) from None
    return found / name if name.endswith("/") else found


def unet_arch(source: str) -> UNetArch:
    """The official values, or those the folder's (or cached snapshot's) weights/kubin_arch.json gives."""
    if is_local(source):
        path = Path(source).expanduser() / ARCH_FILE
    else:
        from huggingface_hub import hf_hub_download

        try:  # never downloaded: the official repo has no such file
            path = Path(hf_hub_download(source, ARCH_FILE, local_files_only=True))
        except Exception:
            return UNetArch()
    if path.is_file():
        return UNetArch(**json.loads(path.read_text(encoding="utf-8")))
    return UNetArch()


# --- converting once, with a cache -------------------------------------------------------------------
def load_native(path: Path) -> dict[str, Any]:
    import torch

    try:  # memory-mapped: a 12 GB checkpoint is read as its tensors are used
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except RuntimeError:  # saved in the legacy (non-zip) format, which cannot be mapped
        return torch.load(path, map_location="cpu", weights_only=True)


def _fingerprint(paths: list[Path], extra: str) -> str:
    """Which source files (path, size, modification time) and settings a converted folder came from."""
    digest = hashlib.sha256(f"{CONVERT_VERSION}|{extra}".encode())
    for path in paths:
        stat = path.stat()
        digest.update(f"|{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()[:16]


def cached(kind: str, sources: list[Path], extra: str, write: Callable[[Path], None]) -> Path:
    """converted/<kind>-<fingerprint>/ under the Kubin cache, written by `write` on first use (into a temp
    folder that is renamed when complete, so a half-written conversion is never used)."""
    from kubin.models.weights import cache_root, cached_folder

    folder = cache_root() / "converted" / f"{kind}-{_fingerprint(sources, extra)}"
    if not (folder / "complete").exists():
        log.info("Converting %s to diffusers layout (once) ...", ", ".join(p.name for p in sources))
    return cached_folder(folder, write, CONVERT_VERSION)


def converted_unet(unet_file: Path, projection_file: Path, arch: UNetArch, kind: str) -> Path:
    """A folder holding the UNet (with its projection) in diffusers layout and the null embedding."""

    def write(folder: Path) -> None:
        from safetensors.torch import save_file

        checkpoint = load_native(unet_file)
        model = build_unet(checkpoint["unet"], load_native(projection_file), arch)
        model.save_pretrained(folder)
        null = checkpoint["null_embedding"].detach().clone().contiguous()
        save_file({"null_embedding": null}, str(folder / NULL_EMBEDDING_FILE))

    return cached(kind, [unet_file, projection_file], json.dumps(asdict(arch)), write)


def converted_movq(movq_file: Path) -> Path:
    def write(folder: Path) -> None:
        build_movq(load_native(movq_file)).save_pretrained(folder)

    return cached("kd31-movq", [movq_file], "", write)


def load_null_embedding(unet_folder: Path):
    from safetensors.torch import load_file

    return load_file(str(Path(unet_folder) / NULL_EMBEDDING_FILE))["null_embedding"]


# --- writing the official layout (the tiny model, tests) ---------------------------------------------
@dataclass
class OfficialLayout:
    """Modules written as the official repo holds them, so that the tiny model goes through the same
    conversion as real weights: `save_pretrained(folder)` writes folder/weights/... in the authors' formats."""

    unets: dict[str, tuple[Any, Any]]  # variant ("base", "flash", "inpainting") -> (UNet, null embedding)
    movq: Any  # a VQModel
    text_encoder: Any  # a transformers T5EncoderModel
    tokenizer: Any
    arch: UNetArch | None = None  # written to weights/kubin_arch.json when not the official values

    def save_pretrained(self, folder: str | Path) -> None:
        import torch

        folder = Path(folder)
        encoder = folder / ENCODER_DIR
        encoder.mkdir(parents=True, exist_ok=True)
        self.text_encoder.save_pretrained(encoder)
        self.tokenizer.save_pretrained(encoder)
        for variant, (unet, null_embedding) in self.unets.items():
            native, projection = unet_state_to_native(_plain(unet.state_dict()))
            unet_name, projection_name = UNET_FILES[variant]
            torch.save(
                {"unet": native, "null_embedding": null_embedding.detach().clone()}, folder / unet_name
            )
            torch.save(projection, folder / projection_name)
        levels = len(self.movq.config.block_out_channels)
        torch.save(movq_state_to_native(_plain(self.movq.state_dict()), levels), folder / MOVQ_FILE)
        if self.arch is not None and self.arch != UNetArch():
            (folder / ARCH_FILE).write_text(json.dumps(asdict(self.arch)), encoding="utf-8")


def _plain(state: dict[str, Any]) -> dict[str, Any]:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in state.items()}
