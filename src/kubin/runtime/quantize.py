"""Quantisation of a model's big parts (the denoiser, the text encoders) after they are loaded: their
Linear layers' weights in 8 or 4 bits through torchao, optimum-quanto or bitsandbytes, in place.

Quantising the loaded modules (rather than at load time) works the same for diffusers pipelines and for
our own native models. torchao and optimum-quanto run on CUDA and on the CPU, bitsandbytes on CUDA. The libraries are imported only when a
mode asks for them, so the app starts as fast without them.
"""

from __future__ import annotations

import logging
from typing import Any

from kubin.errors import InvalidParams

log = logging.getLogger(__name__)

# Component names of the big parts. In Kandinsky 2.x and Shap-E the "prior" is a transformer too.
DENOISERS = ("unet", "transformer", "prior")
TEXT_ENCODERS = ("text_encoder", "text_encoder_2")
PARTS = {"all": DENOISERS + TEXT_ENCODERS, "denoiser": DENOISERS, "text_encoder": TEXT_ENCODERS}
PART_WORDS = {"all": "denoiser or text encoder", "denoiser": "denoiser", "text_encoder": "text encoder"}
# mode -> (module to import, pip package, words for the user)
LIBRARIES = {
    "torchao-int8": ("torchao", "torchao", "torchao int8"),
    "quanto-int8": ("optimum.quanto", "optimum-quanto", "optimum-quanto int8"),
    "bnb-int8": ("bitsandbytes", "bitsandbytes", "bitsandbytes int8"),
    "bnb-nf4": ("bitsandbytes", "bitsandbytes", "bitsandbytes nf4"),
}
# bitsandbytes' int8 layers split out activation columns above this magnitude and multiply them in
# 16 bits (LLM.int8()); 6.0 is the default of transformers' and diffusers' BitsAndBytesConfig.
BNB_INT8_THRESHOLD = 6.0


def quantize_components(components: dict[str, Any], options, device: str) -> list[str]:
    """Quantise, in place, the denoiser and/or text encoder modules among `components` as
    `options.quantize` / `options.quantize_parts` say; returns notices (what was quantised, the memory
    its weights take before and after). Call it before the modules move to `device`: bitsandbytes
    quantises each weight as it moves there, and the others quantise where the weights are."""
    mode = options.quantize
    if mode == "none":
        return []
    check_combination(mode, options, device)
    require_library(mode)
    import torch

    names = [n for n in PARTS[options.quantize_parts] if isinstance(components.get(n), torch.nn.Module)]
    if not names:
        present = ", ".join(n for n, c in components.items() if isinstance(c, torch.nn.Module)) or "none"
        return [
            f"Quantisation ({mode}): this model has no {PART_WORDS[options.quantize_parts]} "
            f"(its modules: {present}); nothing was quantised."
        ]
    notices = []
    for name in names:
        module = components[name]
        layers = quantizable_linears(module)
        if not layers:
            if not any(is_quantized(m.weight) for m in module.modules() if isinstance(m, torch.nn.Linear)):
                notices.append(f"Quantisation ({mode}): {name} has no Linear layer to quantise.")
            continue  # else: already quantised (a module that two pipelines share)
        before = module_bytes(module)
        quantize_linears(module, layers, mode, device)
        after = module_bytes(module)
        notices.append(
            f"Quantised {name} with {LIBRARIES[mode][2]}: {_gb(before)} → {_gb(after)} "
            f"({len(layers)} Linear layers)"
        )
    return notices


def check_combination(mode: str, options, device: str) -> None:
    """Refuse what cannot work, before any weight is touched."""
    if mode.startswith("bnb-") and not device.startswith("cuda"):
        # bitsandbytes 0.50's CPU backend quantises int8 activations as 2-D or 3-D only (Kandinsky 5 and
        # 4 pass 4-D and 5-D ones) and its 4-bit CPU kernel refuses layers narrower than its blocks.
        raise InvalidParams(
            f"bitsandbytes needs a CUDA GPU; on this device ({device}) use torchao-int8 or quanto-int8."
        )
    if options.offload == "sequential" and not device.startswith("cpu") and mode != "torchao-int8":
        # accelerate's layer-by-layer hooks rebuild each weight as its own type on every move, which
        # quanto's and bitsandbytes' quantised weights do not survive (torchao's do); model offload moves
        # whole parts and works. (On the CPU offload is skipped anyway.)
        raise InvalidParams(
            f"{LIBRARIES[mode][2]} does not work with sequential CPU offload; use model offload, "
            "or torchao-int8 with sequential offload."
        )


def require_library(mode: str) -> None:
    module, package, _ = LIBRARIES[mode]
    try:
        __import__(module)
    except ImportError:
        raise InvalidParams(
            f"Quantisation {mode} needs the {package} package: pip install {package}"
        ) from None


def quantizable_linears(module) -> list[str]:
    """Names of the Linear layers of `module` to quantise: those with floating-point weights, not already
    quantised, not tied to another parameter (an output head sharing the embedding), and not inside the
    modules the model keeps in fp32 (`_keep_in_fp32_modules`, which diffusers and transformers also
    leave out of quantisation: Kandinsky 5's time embeddings and modulations, T5's `wo`)."""
    import torch

    keep = set()
    for sub in module.modules():
        keep.update(getattr(sub, "_keep_in_fp32_modules", None) or ())
    seen: dict[int, int] = {}
    for _, p in module.named_parameters(remove_duplicate=False):
        seen[id(p)] = seen.get(id(p), 0) + 1
    names = []
    for name, sub in module.named_modules():
        if not isinstance(sub, torch.nn.Linear) or is_quantized(sub.weight):
            continue
        if not sub.weight.is_floating_point() or seen.get(id(sub.weight), 0) > 1:
            continue
        if keep and any(part in keep for part in name.split(".")):
            continue
        names.append(name)
    return names


def is_quantized(tensor) -> bool:
    return tensor.dtype in (_int8(), _uint8()) or type(tensor).__name__ in QUANTIZED_TYPES


# The weight types each library leaves in a quantised Linear layer.
QUANTIZED_TYPES = ("Int8Tensor", "AffineQuantizedTensor", "WeightQBytesTensor", "Int8Params", "Params4bit")


def quantize_linears(module, names: list[str], mode: str, device: str) -> None:
    if mode == "torchao-int8":
        from torchao.quantization import Int8WeightOnlyConfig, quantize_

        chosen = set(names)
        quantize_(module, Int8WeightOnlyConfig(), filter_fn=lambda _, fqn: fqn in chosen)
    elif mode == "quanto-int8":
        from optimum.quanto import freeze, qint8, quantize

        # include= takes fnmatch patterns; layer names hold only letters, digits, dots and underscores.
        quantize(module, weights=qint8, include=names)
        freeze(module)
    else:
        _replace_with_bnb(module, names, nf4=mode == "bnb-nf4", device=device)


def _replace_with_bnb(module, names: list[str], nf4: bool, device: str) -> None:
    """Each Linear becomes a bitsandbytes layer carrying the same weights (the layer keeps the object
    identity of every parent module, so the pipeline's references stay valid). bitsandbytes quantises
    a weight when it moves from the CPU to a device, so each new layer moves to `device` now (on the
    CPU: quantised in place). transformers' and diffusers' `replace_with_bnb_linear` do the same at load
    time on empty weights; here the weights are already loaded."""
    import bitsandbytes as bnb
    import torch

    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = module.get_submodule(parent_name) if parent_name else module
        old = getattr(parent, child)
        weight = old.weight.detach().to("cpu")  # bnb quantises on a move from the CPU only
        bias = old.bias
        if nf4:
            new = bnb.nn.Linear4bit(
                old.in_features,
                old.out_features,
                bias=bias is not None,
                compute_dtype=old.weight.dtype,
                quant_type="nf4",
                device="meta",
            )
            new.weight = bnb.nn.Params4bit(weight, requires_grad=False, quant_type="nf4", module=new)
        else:
            new = bnb.nn.Linear8bitLt(
                old.in_features,
                old.out_features,
                bias=bias is not None,
                has_fp16_weights=False,
                threshold=BNB_INT8_THRESHOLD,
                device="meta",
            )
            new.weight = bnb.nn.Int8Params(weight, requires_grad=False, has_fp16_weights=False)
        if bias is not None:
            new.bias = torch.nn.Parameter(bias.detach().to("cpu"), requires_grad=False)
        new.train(old.training)
        setattr(parent, child, new.to(device))


def module_bytes(module) -> int:
    """The bytes of a module's parameters and buffers as they are stored, counting each tensor once and,
    for a quantised weight, the tensors inside it (the int8/4-bit data and its scales)."""
    seen: set[int] = set()
    total = 0
    for tensor in [*module.parameters(), *module.buffers()]:
        if id(tensor) not in seen:
            seen.add(id(tensor))
            total += tensor_bytes(tensor)
    return total


def tensor_bytes(tensor) -> int:
    """One tensor's stored bytes, looking inside the quantised tensor types of torchao (Int8Tensor:
    qdata + scale), optimum-quanto (WeightQBytesTensor: _data + _scale) and bitsandbytes (Int8Params:
    int8 data + SCB; Params4bit: packed data + its quant state's absmax, code and nested statistics)."""
    if tensor is None:
        return 0
    kind = type(tensor).__name__
    if kind == "Int8Params":
        scb = getattr(tensor, "SCB", None)
        return _plain_bytes(tensor) + (tensor_bytes(scb) if scb is not None else 0)
    if kind == "Params4bit":
        return _plain_bytes(tensor) + _quant_state_bytes(getattr(tensor, "quant_state", None))
    flatten = getattr(type(tensor), "__tensor_flatten__", None)
    if flatten is not None:
        inner, _ = tensor.__tensor_flatten__()
        return sum(tensor_bytes(getattr(tensor, n, None)) for n in inner)
    return _plain_bytes(tensor)


def _plain_bytes(tensor) -> int:
    return tensor.numel() * tensor.element_size()


def _quant_state_bytes(state) -> int:
    if state is None:
        return 0
    total = sum(tensor_bytes(getattr(state, n, None)) for n in ("absmax", "code", "offset"))
    return total + _quant_state_bytes(getattr(state, "state2", None))


def _gb(n: int) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e8 else f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def _int8():
    import torch

    return torch.int8


def _uint8():
    import torch

    return torch.uint8
