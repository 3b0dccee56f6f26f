"""Training a LoRA for Kandinsky 5 text to image and text to video: the diffusion transformer learns the
flow-matching velocity (noise minus clean latents) at a shifted random noise level, from the VAE latents of a
picture (one frame) or a short clip (its video VAE packs 4 frames into one latent frame) and the caption's
Qwen and CLIP encodings, as the pipeline's scheduler steps it. Image-to-video and editing are not trained."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubin.errors import InvalidParams
from kubin.training.targets import TrainTarget, pixels_tensor

# The attention projections of the text and visual blocks (their out_layer is named by its block: the
# model has other out_layers).
ATTENTION = ["to_query", "to_key", "to_value", "attention.out_layer"]


class TransformerTarget(TrainTarget):
    """The text-to-image transformer, on pictures."""

    part = "transformer"
    default_modules = ATTENTION
    divisibility = 16  # the VAE's 8x factor and the transformer's 2x2 patches
    pipeline_class = "Kandinsky5T2IPipeline"

    def __init__(self, folders: dict[str, str], device: str, weight_dtype, sample_settings: dict[str, Any]):
        import diffusers
        import torch

        from kubin.models.common import folder_attributes
        from kubin.models.families.kd50.model import ATTRIBUTES

        path = folders["pipeline"]
        self.pipe = getattr(diffusers, self.pipeline_class).from_pretrained(path, dtype=weight_dtype)
        for name, value in folder_attributes(Path(path), ATTRIBUTES).items():  # what diffusers does not save
            setattr(self.pipe, name, [tuple(v) for v in value] if name == "resolutions" else value)
        self.pipe.to(device)
        self.pipe.set_progress_bar_config(disable=True)
        for component in self.pipe.components.values():
            if isinstance(component, torch.nn.Module):
                component.requires_grad_(False).eval()
        self.device, self.weight_dtype, self.sample_settings = device, weight_dtype, sample_settings

    @classmethod
    def check_model(cls, spec) -> None:
        if spec.tasks[0] not in ("t2i", "t2v"):
            raise InvalidParams(
                f"{spec.title} cannot be trained yet: Kandinsky 5 training is for the text-to-image and "
                "text-to-video models."
            )

    @property
    def module(self):
        return self.pipe.transformer

    def encode(self, image, caption: str) -> dict[str, Any]:
        vae = self.pipe.vae
        pixels = pixels_tensor(image).to(self.device, vae.dtype)
        latents = vae.encode(pixels[None]).latent_dist.mode()[0] * vae.config.scaling_factor
        qwen, clip, _ = self.pipe.encode_prompt(prompt=[caption], num_images_per_prompt=1, device=self.device,
                                                dtype=self.weight_dtype)  # fmt: skip
        # The transformer takes (frames, height, width, channels): one frame, channels last.
        return {"latents": latents.permute(1, 2, 0)[None], "text": qwen[0], "pooled": clip[0]}

    def collate(self, parts: list[dict[str, Any]]) -> dict[str, Any]:
        """Captions encode to different lengths: the shorter are padded with zeros to the longest."""
        import torch
        import torch.nn.functional as F

        longest = max(p["text"].shape[0] for p in parts)
        return {
            "latents": torch.stack([p["latents"] for p in parts]),
            "text": torch.stack([F.pad(p["text"], (0, 0, 0, longest - p["text"].shape[0])) for p in parts]),
            "pooled": torch.stack([p["pooled"] for p in parts]),
        }

    def loss(self, batch: dict[str, Any], generator) -> Any:
        import torch
        import torch.nn.functional as F

        latents = batch["latents"].to(self.device, self.weight_dtype)  # (B, frames, H, W, C)
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        config = self.pipe.scheduler.config
        shift = float(config.get("shift", 1.0))
        u = torch.rand((latents.shape[0],), generator=generator)
        sigma = (shift * u / (1 + (shift - 1) * u)).to(latents)  # the scheduler's shifted noise levels
        noisy = (1 - sigma.view(-1, 1, 1, 1, 1)) * latents + sigma.view(-1, 1, 1, 1, 1) * noise
        frames, height, width = latents.shape[1:4]
        text = batch["text"].to(self.device, self.weight_dtype)
        predicted = self.module(
            hidden_states=noisy,
            encoder_hidden_states=text,
            pooled_projections=batch["pooled"].to(self.device, self.weight_dtype),
            timestep=sigma * config.num_train_timesteps,
            visual_rope_pos=[torch.arange(frames), torch.arange(height // 2), torch.arange(width // 2)],
            text_rope_pos=torch.arange(text.shape[1]),
            scale_factor=self._rope_scale(height, width),
            sparse_params=None,
            return_dict=True,
        ).sample[..., : latents.shape[-1]]
        return F.mse_loss(predicted.float(), (noise - latents).float())

    def _rope_scale(self, height: int, width: int):
        """The positional scale the pipeline denoises with (the image pipeline's is fixed)."""
        return [1.0, 1.0, 1.0]

    def sample_one(self, prompt: str, seed: int) -> list:
        import torch

        settings = self.sample_settings
        return self.pipe(
            prompt,
            width=settings.get("width", 1024),
            height=settings.get("height", 1024),
            num_inference_steps=settings.get("steps", 50),
            guidance_scale=settings.get("guidance_scale", 3.5),
            generator=torch.Generator().manual_seed(seed),
        ).image


class VideoTransformerTarget(TransformerTarget):
    """The text-to-video transformer, on short clips: the same loss over the clip's latent frames."""

    video = True
    pipeline_class = "Kandinsky5T2VPipeline"

    def encode(self, frames, caption: str) -> dict[str, Any]:
        import torch

        vae = self.pipe.vae
        pixels = torch.stack([pixels_tensor(frame) for frame in frames], dim=1)  # (3, frames, H, W)
        latents = vae.encode(pixels[None].to(self.device, vae.dtype)).latent_dist.mode()[0]
        qwen, clip, _ = self.pipe.encode_prompt(prompt=[caption], num_videos_per_prompt=1, device=self.device,
                                                dtype=self.weight_dtype)  # fmt: skip
        # (channels, latent frames, h, w) -> (latent frames, h, w, channels), as the transformer takes it.
        scaled = latents * vae.config.scaling_factor
        return {"latents": scaled.permute(1, 2, 3, 0), "text": qwen[0], "pooled": clip[0]}

    def _rope_scale(self, height: int, width: int):
        spatial = self.pipe.vae_scale_factor_spatial
        return self.pipe._get_scale_factor(height * spatial, width * spatial)

    def sample_one(self, prompt: str, seed: int) -> list:
        """One video (a list of frames), as long as the training clips."""
        import torch

        settings = self.sample_settings
        videos = self.pipe(
            prompt,
            width=settings.get("width", 768),
            height=settings.get("height", 512),
            num_frames=settings.get("frames", 17),
            num_inference_steps=settings.get("steps", 50),
            guidance_scale=settings.get("guidance_scale", 5.0),
            generator=torch.Generator().manual_seed(seed),
        ).frames
        return [list(video) for video in videos]


def targets(spec=None) -> dict[str, type[TrainTarget]]:
    """The transformer of a text-to-video model trains on clips, every other model's on pictures."""
    video = spec is not None and spec.tasks[0] == "t2v"
    return {"transformer": VideoTransformerTarget if video else TransformerTarget}


def model_folders(sources: dict[str, str], spec) -> dict[str, str]:
    from kubin.models.weights import ensure_weights

    return {"pipeline": ensure_weights(sources["pipeline"], spec.id)}
