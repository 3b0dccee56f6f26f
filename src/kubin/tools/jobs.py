"""The tool models as engine jobs: the calls the UI, the CLI, the REST API and extensions make (which models
they use: kubin.tools.models). Each call queues a tool job behind the jobs already queued, so a tool never
shares the device with a generation; the model manager keeps the tool model between calls and frees it
when a generation model needs the memory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

if TYPE_CHECKING:
    from kubin.engine import Engine


def estimate_depth(
    engine: Engine, image: Image.Image, model_id: str | None = None, owner: str = ""
) -> Image.Image:
    """The depth map of `image` (mode L, its size), made in the engine's queue."""
    from kubin.tools.depth import estimate_depth as run
    from kubin.tools.depth import load_depth

    model_id = model_id or engine.tool_models.depth

    def job(tool) -> Image.Image:
        return run(tool.model(f"depth:{model_id}", lambda device: load_depth(model_id, device)), image)

    return engine.run_tool("Depth estimation", job, owner)


def own_vlm(engine: Engine, model_id: str | None) -> str | None:
    """The id of the generation model `model_id` names when its own vision-language text encoder captions and
    expands prompts (kubin.models.spec.OWN_VLM: Kandinsky 5 and 6), else None. None on a cluster too: its
    generation models live on the replicas, so the tool models serve there."""
    from kubin.errors import KubinError
    from kubin.models.spec import OWN_VLM

    if not model_id or engine.cluster is not None:
        return None
    try:
        spec = engine.manager.spec(model_id)
    except KubinError:  # a tool model's id or folder
        return None
    return spec.id if OWN_VLM in spec.features else None


def caption_model_for(engine: Engine, selected: str | None) -> str:
    """What captions for a user whose selected generation model is `selected`: that model when it has its own
    vision-language encoder (no caption model is loaded beside it), else the caption model."""
    return own_vlm(engine, selected) or engine.tool_models.caption


def enhance_model_for(engine: Engine, selected: str | None) -> str:
    """What expands prompts for the generation model `selected`: the model itself when it has its own
    vision-language encoder, else the prompt expansion model."""
    return own_vlm(engine, selected) or engine.tool_models.enhance


def caption_image(
    engine: Engine, image: Image.Image, model_id: str | None = None, mode: str = "short", owner: str = ""
) -> str:
    """What `image` shows, in words (a caption or tags, as `mode` asks: kubin.tools.caption.MODES), in the
    engine's queue: from the caption model `model_id` (default: the setting's), or from a Kandinsky 5 or 6
    model's own encoder when `model_id` names one (kubin.tools.vlm)."""
    return engine.run_tool("Caption", lambda tool: _describer(tool, model_id, mode)(image), owner)


def submit_captions(
    engine: Engine,
    files: list[Path],
    write_txt: bool,
    overwrite: bool = False,
    model_id: str | None = None,
    mode: str = "short",
    on_entry=None,
    owner: str = "",
):
    """Queue one tool job that captions `files` (see kubin.tools.caption.caption_files) and return its
    handle: cancel() stops it after the image under way; its value is the list of CaptionEntry."""
    from kubin.engine import ToolJob
    from kubin.tools.caption import caption_files

    def job(tool):
        def follow(entry, done: int, total: int) -> None:
            if on_entry is not None:
                on_entry(entry, done, total)
            tool.progress(done, total)  # raises JobCancelled once cancel was asked for

        tool.progress(0, len(files))
        return caption_files(_describer(tool, model_id, mode), files, write_txt, overwrite, follow)

    return engine.submit_tool(ToolJob("Captioning", job, owner))


def _describer(tool, model_id: str | None, mode: str) -> Callable[[Image.Image], str]:
    """image -> caption, from inside a tool job: a generation model's own encoder (that model, loaded as a
    generation would load it, or already loaded), or the caption model, kept by the model manager."""
    from kubin.tools.caption import caption, check_mode, load_captioner

    check_mode(mode)
    model_id = model_id or tool.engine.tool_models.caption
    own = own_vlm(tool.engine, model_id)
    if own is not None:
        model = tool.generation_model(own)
        return lambda image: model.caption(image, mode)
    captioner = tool.model(f"caption:{model_id}", lambda device: load_captioner(model_id, device))
    return lambda image: caption(captioner, image, mode)


def enhance_prompt(
    engine: Engine, prompt: str, target: str = "", model_id: str | None = None, owner: str = ""
) -> str:
    """`prompt` expanded for the generation model `target` (an id or a title), in the engine's queue: by the
    prompt expansion model `model_id` (default: the setting's), or, when `target` is a Kandinsky 5 or 6 model,
    by that model's own encoder whatever `model_id` says (kubin.tools.vlm)."""
    from kubin.errors import InvalidParams, KubinError
    from kubin.tools.enhance import enhance, load_enhancer

    if not prompt.strip():
        raise InvalidParams("Write a short prompt first; Enhance prompt expands it.")
    own = own_vlm(engine, target)
    model_id = model_id or engine.tool_models.enhance

    def job(tool) -> str:
        if own is not None:
            return tool.generation_model(own).expand_prompt(prompt)
        title = target
        if target:
            try:
                title = engine.manager.spec(target).title
            except KubinError:  # a title already
                pass
        enhancer = tool.model(f"enhance:{model_id}", lambda device: load_enhancer(model_id, device))
        return enhance(enhancer, prompt, title)

    return engine.run_tool("Prompt expansion", job, owner)


def enhancement_meta(original: str, enhanced: str, model_id: str, used: str) -> dict[str, Any]:
    """What an output's metadata says about the prompt expansion it was made with (`used`: the prompt the
    job ran with, which the user may have edited after expanding)."""
    return {
        "prompt_enhancement": {
            "model": model_id,
            "original": original,
            "enhanced": enhanced,
            "edited": used.strip() != enhanced.strip(),
        }
    }
