"""Kandinsky 3 inpainting, which diffusers does not ship: the 9-channel UNet and the pipeline around it.

The authors' inpainting UNet is Kandinsky 3's UNet with 9 input channels (the noisy latents, the mask at
latent size, and the latents of the image with the area to repaint blacked out) and 4 output channels;
diffusers' `Kandinsky3UNet` ties its outputs to its inputs, so `Kandinsky3InpaintUNet` only gives it its
own output layer. The pipeline follows the authors' `Kandinsky3InpaintingPipeline`: mask 1 = keep in the
UNet's input, the masked image encoded by the MoVQ, guidance (w + 1) * cond - w * uncond.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from diffusers import Kandinsky3Img2ImgPipeline, Kandinsky3UNet
from diffusers.configuration_utils import register_to_config
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image
from torch import nn


class Kandinsky3InpaintUNet(Kandinsky3UNet):
    """`Kandinsky3UNet` with as many output channels as the latents have (4), whatever its input."""

    @register_to_config
    def __init__(
        self,
        in_channels: int = 9,
        out_channels: int = 4,
        time_embedding_dim: int = 1536,
        groups: int = 32,
        attention_head_dim: int = 64,
        layers_per_block: int = 3,
        block_out_channels: tuple[int, ...] = (384, 768, 1536, 3072),
        cross_attention_dim: int = 4096,
        encoder_hid_dim: int = 4096,
    ):
        super().__init__(
            in_channels=in_channels,
            time_embedding_dim=time_embedding_dim,
            groups=groups,
            attention_head_dim=attention_head_dim,
            layers_per_block=layers_per_block,
            block_out_channels=block_out_channels,
            cross_attention_dim=cross_attention_dim,
            encoder_hid_dim=encoder_hid_dim,
        )
        self.conv_out = nn.Conv2d(self.conv_out.in_channels, out_channels, kernel_size=3, padding=1)


class Kandinsky3InpaintPipeline(Kandinsky3Img2ImgPipeline):
    """Repaint the white part of a mask. The components are those of `Kandinsky3Img2ImgPipeline`, with a
    `Kandinsky3InpaintUNet` as the unet; the output has the image's size."""

    @torch.no_grad()
    def __call__(
        self,
        prompt: str | list[str] | None = None,
        image: Image.Image | None = None,
        mask_image: Image.Image | None = None,
        num_inference_steps: int = 50,
        guidance_scale: float = 4.0,
        negative_prompt: str | list[str] | None = None,
        num_images_per_prompt: int = 1,
        generator: torch.Generator | list[torch.Generator] | None = None,
        prompt_embeds: torch.Tensor | None = None,
        negative_prompt_embeds: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        negative_attention_mask: torch.Tensor | None = None,
        output_type: str = "pil",
        callback_on_step_end: Callable | None = None,
    ) -> ImagePipelineOutput:
        if image is None or mask_image is None:
            raise ValueError("Inpainting needs an image and a mask.")
        self._guidance_scale = guidance_scale
        device = self._execution_device
        embeds, negative_embeds, mask, negative_mask = self.encode_prompt(
            prompt,
            self.do_classifier_free_guidance,
            num_images_per_prompt=num_images_per_prompt,
            device=device,
            negative_prompt=negative_prompt,
            prompt_embeds=prompt_embeds,
            negative_prompt_embeds=negative_prompt_embeds,
            _cut_context=True,
            attention_mask=attention_mask,
            negative_attention_mask=negative_attention_mask,
        )
        if self.do_classifier_free_guidance:
            embeds = torch.cat([negative_embeds, embeds])
            mask = torch.cat([negative_mask, mask])
        mask = mask.bool()
        batch = embeds.shape[0] // (2 if self.do_classifier_free_guidance else 1)

        # The authors' conditioning: keep = 1 outside the area to repaint; the image there, zeros elsewhere
        # (any pixel the mask touches at all is blanked); the mask itself at latent size.
        dtype = self.movq.dtype
        pixels = torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 127.5 - 1.0)
        pixels = pixels.permute(2, 0, 1)[None].to(device=device, dtype=dtype)
        keep = 1.0 - torch.from_numpy(np.asarray(mask_image.convert("L"), dtype=np.float32) / 255.0)
        keep = keep[None, None].to(device=device, dtype=dtype)
        masked_latents = self.movq.encode(pixels.masked_fill(keep < 1, 0.0))["latents"]
        keep = nn.functional.interpolate(keep, size=masked_latents.shape[-2:])  # nearest, as the authors
        condition = torch.cat([keep, masked_latents], dim=1).repeat(batch, 1, 1, 1)
        if self.do_classifier_free_guidance:
            condition = torch.cat([condition] * 2)
        if hasattr(self, "text_encoder_offload_hook") and self.text_encoder_offload_hook is not None:
            self.text_encoder_offload_hook.offload()

        self.scheduler.set_timesteps(num_inference_steps, device=device)
        shape = (batch, self.unet.config.out_channels, *masked_latents.shape[-2:])
        latents = randn_tensor(shape, generator=generator, device=device, dtype=embeds.dtype)
        latents = latents * self.scheduler.init_noise_sigma
        for i, t in enumerate(self.scheduler.timesteps):
            model_input = torch.cat([latents] * 2) if self.do_classifier_free_guidance else latents
            model_input = torch.cat([model_input, condition.to(model_input.dtype)], dim=1)
            noise = self.unet(model_input, t, encoder_hidden_states=embeds, encoder_attention_mask=mask)[0]
            if self.do_classifier_free_guidance:
                uncond, cond = noise.chunk(2)
                noise = (guidance_scale + 1.0) * cond - guidance_scale * uncond
            latents = self.scheduler.step(noise, t, latents, generator=generator).prev_sample
            if callback_on_step_end is not None:
                latents = callback_on_step_end(self, i, t, {"latents": latents}).get("latents", latents)

        if output_type == "latent":
            return ImagePipelineOutput(images=latents)
        decoded = self.movq.decode(latents.to(self.movq.dtype), force_not_quantize=True)["sample"]
        self.maybe_free_model_hooks()
        pictures = (
            ((decoded.float().clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()
        )
        return ImagePipelineOutput(images=[Image.fromarray(p) for p in pictures])
