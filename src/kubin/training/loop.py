"""The training loop: a LoRA on one target part, trained with AdamW and a diffusers learning-rate schedule,
checkpointed every N steps with everything a resume needs (adapter, optimizer, schedule, every random
generator, the loss history), and written at the end as a .safetensors file the LoRA loader reads.

A video target trains on short clips the same way: each clip is sampled at the run's frame rate to the run's
frame count (or the longest shorter bucket it holds), and its samples are short mp4 videos.

Every random draw of a step comes from one CPU generator whose state the checkpoints keep, and the order of
the pictures depends only on (seed, epoch), so a run resumed from a checkpoint ends with the same weights
as one that never stopped (on a deterministic device)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from kubin.errors import InvalidParams, JobCancelled
from kubin.training.dataset import BatchOrder, ClipShape, DatasetReport, TrainingItem, scan_dataset
from kubin.training.options import TrainingOptions
from kubin.training.targets import TrainTarget, model_folders, target_class

log = logging.getLogger(__name__)

ADAPTER_FILE, STATE_FILE, OPTIONS_FILE = "adapter.safetensors", "state.pt", "options.json"
KEEP_CHECKPOINTS = 3


@dataclass(frozen=True)
class TrainingEvent:
    """What a run tells its watchers: "notice" (text), "step" (step, total, loss, lr, eta), "sample"
    (paths of the sample images, or mp4 videos for a video model, made at `step`), "checkpoint" (path)."""

    kind: str
    step: int = 0
    total: int = 0
    loss: float | None = None
    lr: float | None = None
    eta: float | None = None  # seconds left
    text: str = ""
    paths: tuple[str, ...] = ()


@dataclass
class TrainingResult:
    path: Path  # the adapter in the LoRA folder
    steps: int
    losses: list[float]
    dataset: DatasetReport
    metadata: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"path": str(self.path), "steps": self.steps, "final_loss": self.losses[-1] if self.losses else None,
                "dataset": self.dataset.as_json(), "metadata": self.metadata}  # fmt: skip


def run_folder(root: Path, output: str) -> Path:
    """Where a run keeps its checkpoints, cache, samples and options: one folder per adapter name."""
    return Path(root) / output.strip("/").replace("/", "__")


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted((run_dir / "checkpoints").glob("step-*")) if (run_dir / "checkpoints").is_dir() else []
    complete = [p for p in found if (p / STATE_FILE).is_file() and (p / ADAPTER_FILE).is_file()]
    return complete[-1] if complete else None


def saved_options(run_dir: Path) -> TrainingOptions | None:
    path = run_dir / OPTIONS_FILE
    if not path.is_file():
        return None
    return TrainingOptions.from_dict(json.loads(path.read_text(encoding="utf-8")))


class Trainer:
    """One run of `options` on the model `spec` (its folders found from `sources`), keeping its files in
    `run_dir` and writing the adapter to `lora_folder`."""

    def __init__(self, options: TrainingOptions, spec, sources: dict[str, str], run_dir: Path,
                 lora_folder: Path, device: str = "cpu"):  # fmt: skip
        from kubin.models.registry import family_of

        self.family = family_of(spec)
        self.target_cls = target_class(self.family, spec, options.target)
        # What the model makes by default: its size, and for a video model its frames and frame rate.
        self.defaults = dict(spec.defaults.get("t2v" if self.target_cls.video else "t2i", {}))
        if not options.resolution:
            options = replace(options, resolution=int(self.defaults.get("width", 768)))
        if self.target_cls.video:
            options = replace(options, frames=options.frames or int(self.defaults.get("frames", 17)),
                              fps=options.fps or float(self.defaults.get("fps", 24)))  # fmt: skip
        self.options = options.validate()
        self.spec, self.sources = spec, sources
        self.run_dir, self.lora_folder, self.device = Path(run_dir), Path(lora_folder), device
        self.clip = self._clip_shape()
        check_device_options(self.options, device)

    def _clip_shape(self) -> ClipShape | None:
        """A video target's frames and frame rate; None for a picture target."""
        if not self.target_cls.video:
            return None
        o, step = self.options, self.target_cls.frame_step
        if (o.frames - 1) % step:
            raise InvalidParams(
                f"frames must be 1 more than a multiple of {step} for {self.spec.title} (1, 5, 9, 13, 17, ...; "
                f"got {o.frames}): its video VAE packs {step} frames into one."
            )
        return ClipShape(o.frames, float(o.fps), step)

    def check_dataset(self) -> DatasetReport:
        """The folder checked; with `epochs`, the options' steps become what that many passes take."""
        o = self.options
        dataset = scan_dataset(o.data, o.resolution, self.target_cls.divisibility, o.trigger, clip=self.clip)
        if o.epochs:
            batches = sum(-(-count // o.batch_size) for count in dataset.groups.values())
            self.options = replace(o, steps=max(1, -(-o.epochs * batches // o.gradient_accumulation)))
        return dataset

    def run(
        self,
        on_event: Callable[[TrainingEvent], None] = lambda event: None,
        should_stop: Callable[[], bool] = lambda: False,
        resume: bool = False,
    ) -> TrainingResult:
        """Train to `options.steps`, from the last checkpoint when `resume`. A stop request writes a
        checkpoint at the step reached and raises JobCancelled (a resume goes on from there)."""
        import torch

        dataset = self.check_dataset()
        o = self.options
        on_event(TrainingEvent("notice", text=f"Dataset: {dataset.summary()}"))
        self.run_dir.mkdir(parents=True, exist_ok=True)
        (self.run_dir / OPTIONS_FILE).write_text(json.dumps(o.to_dict(), indent=2), encoding="utf-8")
        target = self._load_target()
        module = target.module
        modules = o.target_modules or target.default_modules
        self._add_adapter(module, modules)
        trainable = [p for p in module.parameters() if p.requires_grad]
        if o.optimizer == "adamw8bit":
            import bitsandbytes

            optimizer = bitsandbytes.optim.AdamW8bit(trainable, lr=o.learning_rate)
        else:
            optimizer = torch.optim.AdamW(trainable, lr=o.learning_rate)
        from diffusers.optimization import get_scheduler

        schedule = get_scheduler(o.lr_scheduler, optimizer, num_warmup_steps=o.warmup_steps,
                                 num_training_steps=o.steps)  # fmt: skip
        scaler = (
            torch.amp.GradScaler("cuda")
            if o.mixed_precision == "fp16" and self.device.startswith("cuda")
            else None
        )
        generator = torch.Generator().manual_seed(o.seed)
        step, losses = 0, []
        if resume:
            found = latest_checkpoint(self.run_dir)
            if found is None:
                raise InvalidParams(f"There is no checkpoint of {o.output} to resume from; start a new run.")
            step, losses = self._load_checkpoint(found, module, optimizer, schedule, generator, scaler)
            on_event(TrainingEvent("notice", text=f"Resumed from step {step} ({found.name})."))
        encoded = self._cache(target, dataset, on_event) if o.cache_latents else None
        module.train()
        order = BatchOrder(dataset, o.batch_size, o.seed)
        started, first_step = time.monotonic(), step
        while step < o.steps:
            optimizer.zero_grad(set_to_none=True)
            total = 0.0
            for micro in range(o.gradient_accumulation):
                index = step * o.gradient_accumulation + micro
                batch = self._batch(target, dataset, order(index), encoded)
                with self._autocast():
                    loss = target.loss(batch, generator) / o.gradient_accumulation
                (scaler.scale(loss) if scaler else loss).backward()
                total += float(loss.detach())
            if scaler:
                scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            if scaler:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            schedule.step()
            step += 1
            losses.append(total)
            per_step = (time.monotonic() - started) / (step - first_step)
            on_event(TrainingEvent("step", step, o.steps, loss=total, lr=schedule.get_last_lr()[0],
                                   eta=per_step * (o.steps - step)))  # fmt: skip
            if o.sample_every and step % o.sample_every == 0 and step < o.steps:
                self._samples(target, step, on_event)
            stop = step < o.steps and should_stop()
            if stop or step % o.checkpoint_every == 0 or step == o.steps:
                self._checkpoint(step, losses, module, optimizer, schedule, generator, scaler, on_event)
            if stop:
                raise JobCancelled(
                    f"Training stopped at step {step} of {o.steps}; Resume goes on from there."
                )
        if o.sample_every:
            self._samples(target, step, on_event)
        path, metadata = self._write_adapter(module, modules, dataset, step)
        on_event(TrainingEvent("notice", text=f"Wrote {path.name} to the LoRA folder."))
        return TrainingResult(path, step, losses, dataset, metadata)

    # --- parts of a run ---------------------------------------------------------------------------
    def _load_target(self) -> TrainTarget:
        import torch

        o = self.options
        weight_dtype = torch.float32
        if self.device.startswith("cuda") and o.mixed_precision != "no":
            weight_dtype = torch.float16 if o.mixed_precision == "fp16" else torch.bfloat16
        folders = model_folders(self.family, self.spec, self.sources)
        settings = dict(self.defaults)
        if self.clip:  # sample videos as long as the training clips: short, and what was taught
            settings.update(frames=self.clip.frames, fps=self.clip.fps)
        target = self.target_cls(folders, self.device, weight_dtype, settings)
        if o.gradient_checkpointing and hasattr(target.module, "enable_gradient_checkpointing"):
            target.module.enable_gradient_checkpointing()
        return target

    def _add_adapter(self, module, modules: list[str]) -> None:
        import torch
        from peft import LoraConfig

        o = self.options
        config = LoraConfig(
            r=o.rank, lora_alpha=o.lora_alpha, init_lora_weights="gaussian", target_modules=modules
        )
        with torch.random.fork_rng(devices=[]):  # peft draws the A matrices from torch's global generator
            torch.manual_seed(o.seed)
            try:
                module.add_adapter(config)
            except ValueError as exc:
                raise InvalidParams(
                    f"The {self.target_cls.part} of {self.spec.title} cannot take an adapter on "
                    f"{', '.join(modules)} ({str(exc).splitlines()[0][:160]})."
                ) from None
        for p in module.parameters():  # the adapter trains in fp32 even over half-precision weights
            if p.requires_grad:
                p.data = p.data.float()

    def _autocast(self):
        import contextlib

        import torch

        o = self.options
        if o.mixed_precision == "no":
            return contextlib.nullcontext()
        device = "cuda" if self.device.startswith("cuda") else "cpu"
        return torch.autocast(device, dtype=torch.float16 if o.mixed_precision == "fp16" else torch.bfloat16)

    def _cache_key(self, item: TrainingItem) -> str:
        stat = item.path.stat()
        clip = f"|{item.frames}@{self.clip.fps:g}" if self.clip else ""
        text = f"{self.spec.id}|{self.target_cls.part}|{item.path.name}|{stat.st_size}|{stat.st_mtime_ns}|{item.bucket}|{item.caption}{clip}"
        return hashlib.sha256(text.encode()).hexdigest()[:24]

    def _cache(self, target: TrainTarget, dataset: DatasetReport, on_event) -> list[dict[str, Any]]:
        """Each picture's (or clip's) encoding, made once into the run's cache folder (a resume reuses the files) and
        held in memory while the run goes (a few hundred kB a picture at 768 px)."""
        import torch
        from safetensors.torch import load_file, save_file

        folder = self.run_dir / "cache"
        folder.mkdir(parents=True, exist_ok=True)
        paths = [folder / f"{self._cache_key(item)}.safetensors" for item in dataset.items]
        missing = [
            (item, path) for item, path in zip(dataset.items, paths, strict=True) if not path.is_file()
        ]
        if missing:
            what = "clip(s)" if self.clip else "picture(s)"
            on_event(TrainingEvent("notice", text=f"Caching the encodings of {len(missing)} {what}."))
        for item, path in missing:
            with torch.no_grad():
                tensors = target.encode(self._load(item), item.caption)
            staging = path.with_suffix(".tmp")
            save_file({k: v.detach().cpu().contiguous() for k, v in tensors.items()}, str(staging))
            os.replace(staging, path)
        return [load_file(str(path)) for path in paths]

    def _batch(self, target, dataset: DatasetReport, indices: list[int], encoded: list[dict] | None):
        import torch

        if encoded is not None:
            parts = [encoded[i] for i in indices]
        else:
            with torch.no_grad():
                parts = [
                    target.encode(self._load(dataset.items[i]), dataset.items[i].caption) for i in indices
                ]
        return target.collate(parts)

    def _load(self, item: TrainingItem):
        return load_clip(item, self.clip) if self.clip else load_picture(item)

    def _samples(self, target: TrainTarget, step: int, on_event) -> None:
        prompts = self.options.sample_prompts or [self.options.trigger or "a picture"]
        folder = self.run_dir / "samples"
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, made in enumerate(target.sample(prompts, self.options.seed)):
            path = folder / f"step-{step:06d}-{i}.{'mp4' if self.clip else 'png'}"
            if self.clip:
                write_clip(made, self.clip.fps, path)
            else:
                made.save(path)
            paths.append(str(path))
        on_event(TrainingEvent("sample", step, self.options.steps, paths=tuple(paths)))

    def _checkpoint(self, step, losses, module, optimizer, schedule, generator, scaler, on_event) -> Path:
        import numpy as np
        import torch
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        folder = self.run_dir / "checkpoints"
        final, staging = folder / f"step-{step:06d}", folder / f".step-{step:06d}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        state = get_peft_model_state_dict(module)
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(staging / ADAPTER_FILE))
        rng = {"torch": torch.get_rng_state(), "python": random.getstate(), "numpy": np.random.get_state(),
               "generator": generator.get_state()}  # fmt: skip
        if torch.cuda.is_available():
            rng["cuda"] = torch.cuda.get_rng_state_all()
        torch.save({"step": step, "losses": losses, "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(), "scaler": scaler.state_dict() if scaler else None,
                    "rng": rng}, staging / STATE_FILE)  # fmt: skip
        shutil.rmtree(final, ignore_errors=True)
        os.replace(staging, final)
        for old in sorted(folder.glob("step-*"))[:-KEEP_CHECKPOINTS]:
            shutil.rmtree(old, ignore_errors=True)
        on_event(TrainingEvent("checkpoint", step, self.options.steps, text=str(final)))
        return final

    def _load_checkpoint(
        self, folder: Path, module, optimizer, schedule, generator, scaler
    ) -> tuple[int, list]:
        import numpy as np
        import torch
        from peft import set_peft_model_state_dict
        from safetensors.torch import load_file

        set_peft_model_state_dict(module, load_file(str(folder / ADAPTER_FILE)))
        state = torch.load(folder / STATE_FILE, weights_only=False)
        optimizer.load_state_dict(state["optimizer"])
        schedule.load_state_dict(state["schedule"])
        if scaler and state["scaler"]:
            scaler.load_state_dict(state["scaler"])
        rng = state["rng"]
        torch.set_rng_state(rng["torch"])
        random.setstate(rng["python"])
        np.random.set_state(rng["numpy"])
        generator.set_state(rng["generator"])
        if "cuda" in rng and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(rng["cuda"])
        return int(state["step"]), list(state["losses"])

    def _write_adapter(
        self, module, modules, dataset: DatasetReport, step: int
    ) -> tuple[Path, dict[str, str]]:
        """The adapter as the LoRA loader reads it: the part's own keys (peft's names), its LoraConfig under
        `lora_adapter_metadata` (diffusers' key), and what it was trained on."""
        from peft import get_peft_model_state_dict
        from safetensors.torch import save_file

        o = self.options
        metadata = {
            "format": "pt",
            "modelspec.trigger_phrase": o.trigger,
            "lora_adapter_metadata": json.dumps(
                {"r": o.rank, "lora_alpha": o.lora_alpha, "target_modules": sorted(modules)}
            ),  # fmt: skip
            "kubin.base_model": self.spec.id,
            "kubin.family": self.spec.family,
            "kubin.part": self.target_cls.part,
            "kubin.rank": str(o.rank),
            "kubin.alpha": f"{o.lora_alpha:g}",
            "kubin.steps": str(step),
            "kubin.learning_rate": f"{o.learning_rate:g}",
            "kubin.resolution": str(o.resolution),
            **(
                {
                    "kubin.clips": str(len(dataset.items)),
                    "kubin.frames": str(o.frames),
                    "kubin.fps": f"{o.fps:g}",
                }
                if self.clip
                else {"kubin.images": str(len(dataset.items))}
            ),
            "kubin.dataset_hash": dataset.digest,
        }
        state = get_peft_model_state_dict(module)
        path = self.lora_folder / f"{o.output.strip('/')}.safetensors"
        path.parent.mkdir(parents=True, exist_ok=True)
        staging = path.with_name(f".{path.name}.tmp")
        save_file(
            {k: v.detach().float().cpu().contiguous() for k, v in state.items()}, str(staging), metadata
        )
        os.replace(staging, path)
        return path, metadata


def check_device_options(options: TrainingOptions, device: str) -> None:
    """InvalidParams for an option the device cannot do: 8-bit Adam wants bitsandbytes on a CUDA GPU, fp16
    mixed precision a CUDA GPU (its gradient scaler runs there; on the CPU fp16 gradients underflow unscaled),
    and bf16 a CUDA GPU or the CPU (autocast's devices)."""
    import importlib.util

    cuda = device.startswith("cuda")
    if options.optimizer == "adamw8bit" and not (cuda and importlib.util.find_spec("bitsandbytes")):
        where = "bitsandbytes is not installed" if cuda else f"this Kubin trains on {device}"
        raise InvalidParams(
            f"8-bit Adam needs the bitsandbytes package and a CUDA GPU ({where}); choose the optimizer adamw here."
        )
    if options.mixed_precision == "fp16" and not cuda:
        raise InvalidParams(
            f"fp16 mixed precision needs a CUDA GPU (this Kubin trains on {device}); choose bf16 or no here."
        )
    if options.mixed_precision == "bf16" and not (cuda or device == "cpu"):
        raise InvalidParams(
            f"bf16 mixed precision runs on a CUDA GPU or the CPU (this Kubin trains on {device}); choose no here."
        )


def load_clip(item: TrainingItem, clip: ClipShape) -> list:
    """The clip's frames at the run's frame rate (its `frames` from its start), each at the bucket's size:
    scaled to cover it and centre-cropped."""
    import imageio_ffmpeg
    from PIL import Image, ImageOps

    height, width = item.bucket
    wanted = clip.indices(item.source_fps, item.frames)
    reader = imageio_ffmpeg.read_frames(str(item.path))
    frames: dict[int, Any] = {}
    try:
        size = tuple(next(reader)["size"])
        for index, raw in enumerate(reader):
            if index in wanted:
                frame = Image.frombytes("RGB", size, raw)
                frames[index] = ImageOps.fit(frame, (width, height), Image.Resampling.BICUBIC)
            if index >= wanted[-1]:
                break
    finally:
        reader.close()
    if len(frames) < len(set(wanted)):  # the check counted more frames than ffmpeg now gives
        raise InvalidParams(f"{item.path.name} has fewer frames than it had when the folder was checked.")
    return [frames[i] for i in wanted]


def write_clip(frames: list, fps: float, path: Path) -> None:
    """A sample video as an mp4 (H.264) that browsers play."""
    import imageio_ffmpeg
    import numpy as np

    staging = path.with_name(f".{path.name}.tmp.mp4")
    writer = imageio_ffmpeg.write_frames(str(staging), frames[0].size, fps=fps, codec="libx264",
                                         pix_fmt_out="yuv420p", macro_block_size=2, ffmpeg_log_level="error")  # fmt: skip
    writer.send(None)
    for frame in frames:
        writer.send(np.ascontiguousarray(np.asarray(frame.convert("RGB"))))
    writer.close()
    os.replace(staging, path)


def load_picture(item: TrainingItem):
    """The picture at its bucket's size: scaled to cover it and centre-cropped."""
    from PIL import Image, ImageOps

    height, width = item.bucket
    with Image.open(item.path) as image:
        return ImageOps.fit(image.convert("RGB"), (width, height), Image.Resampling.BICUBIC)
