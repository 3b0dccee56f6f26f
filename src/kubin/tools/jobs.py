"""The tool models as engine jobs: the calls the UI, the CLI, the REST API and extensions make (which models
they use: kubin.tools.models). Each call queues a tool job behind the jobs already queued, so a tool never
shares the device with a generation; the model manager keeps the tool model between calls and frees it
when a generation model needs the memory."""

from __future__ import annotations

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


def caption_image(
    engine: Engine, image: Image.Image, model_id: str | None = None, detail: str = "short", owner: str = ""
) -> str:
    """What `image` shows, in words, from the caption model, in the engine's queue."""
    from kubin.tools.caption import caption

    model_id = model_id or engine.tool_models.caption
    return engine.run_tool("Caption", lambda tool: caption(_captioner(tool, model_id), image, detail), owner)


def submit_captions(
    engine: Engine,
    files: list[Path],
    write_txt: bool,
    overwrite: bool = False,
    model_id: str | None = None,
    detail: str = "short",
    on_entry=None,
    owner: str = "",
):
    """Queue one tool job that captions `files` (see kubin.tools.caption.caption_files) and return its
    handle: cancel() stops it after the image under way; its value is the list of CaptionEntry."""
    from kubin.engine import ToolJob
    from kubin.tools.caption import caption_files

    model_id = model_id or engine.tool_models.caption

    def job(tool):
        def follow(entry, done: int, total: int) -> None:
            if on_entry is not None:
                on_entry(entry, done, total)
            tool.progress(done, total)  # raises JobCancelled once cancel was asked for

        tool.progress(0, len(files))
        return caption_files(_captioner(tool, model_id), files, write_txt, overwrite, detail, follow)

    return engine.submit_tool(ToolJob("Captioning", job, owner))


def _captioner(tool, model_id: str) -> Any:
    from kubin.tools.caption import load_captioner

    return tool.model(f"caption:{model_id}", lambda device: load_captioner(model_id, device))


def enhance_prompt(
    engine: Engine, prompt: str, target: str = "", model_id: str | None = None, owner: str = ""
) -> str:
    """`prompt` expanded by the prompt expansion model for the model titled `target`, in the engine's queue."""
    from kubin.tools.enhance import enhance, load_enhancer

    model_id = model_id or engine.tool_models.enhance

    def job(tool) -> str:
        return enhance(
            tool.model(f"enhance:{model_id}", lambda device: load_enhancer(model_id, device)), prompt, target
        )

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
