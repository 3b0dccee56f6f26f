"""torch.compile of the denoiser and diffusers' step caches, applied to a model's parts once they are placed.

`speed_up` is called by `placement.tune_modules` (after quantisation, the move to the device or offload,
and the VAE/attention options). Nothing here raises for an option a model cannot take: it says so in a
notice and leaves the model as it is.

Step caches are diffusers' hooks (`diffusers.hooks`) on a `CacheMixin` denoiser with registered blocks:
among Kandinsky's families only Kandinsky 5's transformer. Its pipelines call the transformer without
diffusers' `cache_context`, which the hooks need to keep the conditional and unconditional passes
apart, so Kubin adds a small hook on the transformer that names each call's context.
"""

from __future__ import annotations

import shutil
from typing import Any

# diffusers' documented defaults (FirstBlockCacheConfig.threshold, TaylorSeerCacheConfig.cache_interval).
FIRST_BLOCK_THRESHOLD = 0.05
TAYLORSEER_INTERVAL = 5
DENOISER_NAMES = ("transformer", "unet")
C_COMPILERS = ("cc", "gcc", "clang", "cl")
_CONTEXT_HOOK = "kubin_cache_context"


def speed_up(components: dict[str, Any], options, cache_modules: tuple[str, ...] = ()) -> list[str]:
    """Switch on the step cache (options.cache) and/or compile the denoiser among `components` (a
    pipeline's components) in place (options.compile); returns notices for what was done or skipped.
    `cache_modules`: the denoiser's module patterns TaylorSeer predicts (its family says which)."""
    name, denoiser = find_denoiser(components)
    if denoiser is None:
        # A 2.x prior pipeline: its decoder's pipeline holds the UNet and says what happened to it.
        return []
    notices: list[str] = []
    if options.cache != "none":
        notices += switch_on_cache(denoiser, options.cache, options.cache_threshold, cache_modules)
    if options.compile:
        notices += compile_denoiser(name, denoiser)
    return notices


def find_denoiser(components: dict[str, Any]) -> tuple[str, Any]:
    import torch

    for name in DENOISER_NAMES:
        module = components.get(name)
        if isinstance(module, torch.nn.Module):
            return name, module
    return "", None


def is_compiled(module) -> bool:
    """Whether `module` was compiled in place (`module.compile()`) or is torch.compile's wrapper."""
    return getattr(module, "_compiled_call_impl", None) is not None or hasattr(module, "_orig_mod")


def supports_step_cache(module) -> bool:
    """A diffusers CacheMixin whose blocks diffusers' cache hooks know (Kandinsky 5's transformer)."""
    try:
        from diffusers.hooks._helpers import TransformerBlockRegistry
        from diffusers.models.cache_utils import CacheMixin
    except ImportError:
        return False
    if not isinstance(module, CacheMixin):
        return False
    TransformerBlockRegistry._register()  # diffusers registers its known blocks lazily
    known = tuple(TransformerBlockRegistry._registry)
    return any(isinstance(block, known) for block in module.modules())


def cache_config(mode: str, threshold: float, modules: tuple[str, ...] = ()):
    """diffusers' config for `mode`; `threshold` 0 means diffusers' default. For taylorseer the value is
    the number of steps between full computations (rounded), the rest being predicted."""
    from diffusers.hooks import FirstBlockCacheConfig, TaylorSeerCacheConfig

    if mode == "first_block":
        return FirstBlockCacheConfig(threshold=threshold or FIRST_BLOCK_THRESHOLD)
    if mode == "taylorseer":
        return TaylorSeerCacheConfig(
            cache_interval=max(1, round(threshold)) if threshold else TAYLORSEER_INTERVAL,
            **({"cache_identifiers": list(modules)} if modules else {}),
        )
    raise ValueError(f"unknown step cache {mode!r}")


def switch_on_cache(denoiser, mode: str, threshold: float, modules: tuple[str, ...] = ()) -> list[str]:
    model = type(denoiser).__name__
    if not supports_step_cache(denoiser):
        return [f"Step caches apply to Kandinsky 5 only; ignored for {model}."]
    if getattr(denoiser, "_cache_config", None) is not None:
        denoiser.disable_cache()
    config = cache_config(mode, threshold, modules)
    if mode == "first_block":
        _fix_first_block_argument_names(denoiser)
    denoiser.enable_cache(config)
    _name_cache_contexts(denoiser)
    setting = (
        f"threshold {config.threshold}" if mode == "first_block" else f"every {config.cache_interval} steps"
    )
    return [
        f"Step cache {mode} ({setting}) is on for {model}: faster, with slightly different pixels than without it."
    ]


def _fix_first_block_argument_names(denoiser) -> None:
    """diffusers 0.42's first-block cache asks each block for its argument "hidden_states" by that
    name, but Kandinsky 5's decoder block calls it "visual_embed" (its registered metadata says so and
    is not consulted): the registered metadata of the block classes in this denoiser (only those) is
    given a lookup that translates the name."""
    from diffusers.hooks._helpers import TransformerBlockMetadata, TransformerBlockRegistry

    class TranslatedNames(TransformerBlockMetadata):
        def _get_parameter_from_args_kwargs(self, identifier, args=(), kwargs=None):
            if identifier == "hidden_states":
                identifier = self.hidden_states_argument_name
            elif identifier == "encoder_hidden_states":
                identifier = self.encoder_hidden_states_argument_name
            return super()._get_parameter_from_args_kwargs(identifier, args, kwargs)

    TransformerBlockRegistry._register()
    ours = {type(module) for module in denoiser.modules()}
    for block_class, metadata in list(TransformerBlockRegistry._registry.items()):
        if (
            block_class in ours
            and type(metadata) is TransformerBlockMetadata
            and metadata.hidden_states_argument_name != "hidden_states"
        ):
            TransformerBlockRegistry._registry[block_class] = TranslatedNames(
                return_hidden_states_index=metadata.return_hidden_states_index,
                return_encoder_hidden_states_index=metadata.return_encoder_hidden_states_index,
                hidden_states_argument_name=metadata.hidden_states_argument_name,
                encoder_hidden_states_argument_name=metadata.encoder_hidden_states_argument_name,
                _cls=metadata._cls,
            )


def _name_cache_contexts(denoiser) -> None:
    """Kandinsky 5's pipelines call the transformer twice per step (conditional, then unconditional)
    without `cache_context`; this hook names the calls so each keeps its own cache. A timestep above
    the last one means a new generation (also after a cancelled one, whose state diffusers did not
    reset): the cache starts afresh."""
    import torch
    from diffusers.hooks import HookRegistry, ModelHook

    class CacheContextHook(ModelHook):
        _is_stateful = True

        def __init__(self) -> None:
            super().__init__()
            self.last_timestep: float | None = None
            self.calls_at_timestep = 0

        def reset_state(self, module):
            self.last_timestep, self.calls_at_timestep = None, 0
            return module

        @torch.compiler.disable  # Python bookkeeping: a compiled denoiser runs it outside its graph
        def context_name(self, module, timestep) -> str:
            t = float(timestep.flatten()[0]) if timestep is not None else None
            if t is not None and self.last_timestep is not None and t > self.last_timestep:
                module._reset_stateful_cache()  # resets this hook too
            if t is not None and t == self.last_timestep:
                self.calls_at_timestep += 1
            else:
                self.calls_at_timestep = 0
            self.last_timestep = t
            n = self.calls_at_timestep
            return ("cond", "uncond")[n] if n < 2 else f"call{n}"

        def new_forward(self, module, *args, **kwargs):
            with module.cache_context(self.context_name(module, kwargs.get("timestep"))):
                return self.fn_ref.original_forward(*args, **kwargs)

    registry = HookRegistry.check_if_exists_or_initialize(denoiser)
    if registry.get_hook(_CONTEXT_HOOK) is None:
        registry.register_hook(CacheContextHook(), _CONTEXT_HOOK)


def c_compiler() -> str | None:
    for name in C_COMPILERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def compile_denoiser(name: str, denoiser) -> list[str]:
    """Compile `denoiser` in place (`nn.Module.compile`): the pipeline keeps the same object, with its
    `.config`, `.dtype` and hooks; the first call at each input size compiles."""
    import torch

    model = type(denoiser).__name__
    if is_compiled(denoiser):
        return []
    if not hasattr(torch.nn.Module, "compile"):
        return [f"torch.compile is not available in PyTorch {torch.__version__}; {model} runs uncompiled."]
    # Sequential offload (accelerate's hooks on every layer) moves weights inside the forward: dynamo
    # cannot trace that. Model offload moves the whole module before its call and compiles fine.
    if any(hasattr(layer, "_hf_hook") for layer in denoiser.modules() if layer is not denoiser):
        return [
            f"torch.compile does not work with sequential CPU offload (layer by layer); {model} runs uncompiled."
        ]
    # Inductor writes and builds C++ (CPU) or Triton's launchers (GPU): both need a C compiler.
    if c_compiler() is None:
        return [
            f"torch.compile needs a C/C++ compiler (none of {', '.join(C_COMPILERS)} was found); "
            f"{model} runs uncompiled. Install gcc or clang to use it."
        ]
    denoiser.compile()
    return [
        f"The denoiser ({name}) is compiled with torch.compile: the first job at each size compiles it (slow); "
        "later ones run faster."
    ]
