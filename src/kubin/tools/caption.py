"""Captions and image-to-prompt: a vision-language model through transformers' `image-text-to-text`
pipeline (Florence-2 base by default, asked with its task tokens; another chat-style model is asked in
words), in one of MODES (a short or detailed caption, or tags), and captioning a whole folder into `.txt`
files beside the images (how LoRA training data is made)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from PIL import Image

DEFAULT_CAPTION_MODEL = "florence-community/Florence-2-base"
KNOWN_CAPTION_MODELS = (DEFAULT_CAPTION_MODEL, "tiny-caption")
SETTING = "tools.caption_model (--caption-model)"
MODES = ("short", "detailed", "more detailed", "tags")  # what a caption is asked to be
FLORENCE_TASKS = {
    "short": "<CAPTION>",
    "detailed": "<DETAILED_CAPTION>",
    "more detailed": "<MORE_DETAILED_CAPTION>",
    "tags": "<OD>",  # object detection: the names of the things it finds (see florence_tags)
}
CHAT_PROMPTS = {
    "short": "Describe this image in one sentence, as a prompt for an image generator.",
    "detailed": "Describe this image in detail, as a prompt for an image generator.",
    "more detailed": "Describe this image in one detailed paragraph, as a prompt for an image generator.",
    "tags": "List what this image shows as comma-separated tags: subjects, objects, setting, style, colours and "
    "lighting, the most important first. Reply with the tags only.",
}
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff")


def load_captioner(model_id: str, device: str = "cpu") -> Any:
    """The `image-text-to-text` pipeline of `model_id`, its model placed on `device`."""
    from transformers import AutoModelForImageTextToText, AutoProcessor, pipeline

    from kubin.runtime.placement import place_tool_model
    from kubin.tools.weights import tool_folder

    folder = tool_folder(model_id, "caption model", SETTING)
    model = AutoModelForImageTextToText.from_pretrained(folder).eval()
    place_tool_model(model, device)
    return pipeline(
        "image-text-to-text", model=model, processor=AutoProcessor.from_pretrained(folder), device=device
    )


def check_mode(mode: str) -> str:
    """`mode` if it is one of MODES, else a message that names them."""
    if mode not in MODES:
        from kubin.errors import InvalidParams

        raise InvalidParams(f"Unknown caption mode {mode!r}; choose {', '.join(MODES)}.")
    return mode


def florence_tags(answer: str) -> str:
    """Florence-2's object detection answer ("car<loc_52><loc_331><loc_407><loc_600>person<loc_...>...") as
    tags: each name once, in the order found, comma-separated."""
    import re

    names = re.split(r"(?:<loc_\d+>)+", re.sub(r"</?s>|<pad>", "", answer))
    return ", ".join(dict.fromkeys(name for name in (" ".join(n.split()) for n in names) if name))


def caption(captioner: Any, image: Image.Image, mode: str = "short") -> str:
    """What `image` shows, in words, as `mode` asks (greedy decoding, so the same image gives the same text)."""
    import torch

    mode = check_mode(mode)
    image = image.convert("RGB")
    with torch.no_grad():
        if type(captioner.processor).__name__.startswith("Florence2"):
            # Tags keep the special tokens: the <loc_*> tokens between the names separate them.
            tags = mode == "tags"
            out = captioner(images=image, text=FLORENCE_TASKS[mode], return_full_text=False,
                            skip_special_tokens=not tags)  # fmt: skip
            if tags:
                return florence_tags(str(out[0]["generated_text"]))
        else:
            content = [{"type": "image", "image": image}, {"type": "text", "text": CHAT_PROMPTS[mode]}]
            out = captioner(text=[{"role": "user", "content": content}], return_full_text=False)
    return " ".join(str(out[0]["generated_text"]).split())


@dataclass
class CaptionEntry:
    """One image of a captioning run: its caption, or why it has none."""

    path: Path
    caption: str | None = None
    txt: Path | None = None  # the .txt written beside it (folders only)
    skipped: bool = False  # its .txt existed and overwrite was off
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"file": str(self.path)}
        if self.caption is not None:
            out["caption"] = self.caption
        if self.txt is not None:
            out["txt"] = str(self.txt)
        if self.skipped:
            out["skipped"] = "its .txt exists (overwrite to replace it)"
        if self.error is not None:
            out["error"] = self.error
        return out


def image_files(target: Path) -> list[Path]:
    """The images to caption: the file itself, or a folder's image files (by name, not recursive)."""
    if target.is_dir():
        return sorted(p for p in target.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    return [target]


def caption_files(
    describe: Callable[[Image.Image], str],
    files: list[Path],
    write_txt: bool,
    overwrite: bool = False,
    on_entry: Callable[[CaptionEntry, int, int], None] | None = None,
) -> list[CaptionEntry]:
    """Caption each file with `describe(image)`; with `write_txt`, into name.txt beside it (an existing one is
    kept unless `overwrite`). An unreadable file is reported in its entry and the rest go on. `on_entry(entry,
    done, total)` follows each file (it may raise to stop, e.g. on cancel)."""
    from kubin.errors import KubinError
    from kubin.images import open_image

    entries = []
    for done, path in enumerate(files, 1):
        entry = CaptionEntry(path)
        txt = path.with_suffix(".txt")
        if write_txt and txt.exists() and not overwrite:
            entry.skipped, entry.txt = True, txt
        else:
            try:
                entry.caption = describe(open_image(str(path), "Image"))
            except KubinError as exc:
                entry.error = str(exc)
            if entry.caption is not None and write_txt:
                txt.write_text(entry.caption + "\n", encoding="utf-8")
                entry.txt = txt
        entries.append(entry)
        if on_entry is not None:
            on_entry(entry, done, len(files))
    return entries
