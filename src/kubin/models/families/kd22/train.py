"""Training a LoRA for Kandinsky 2.2: the decoder UNet learns to denoise a picture's MoVQ latents given its
CLIP image embedding (the decoder never reads the caption); the prior learns to predict that image
embedding from the caption's CLIP text encoding. Both load the prior and decoder pipelines from the
model's folders, and sample through them with the adapter on."""

from __future__ import annotations

from typing import Any

from kubin.training.targets import TrainTarget, pixels_tensor

ATTENTION = ["to_q", "to_k", "to_v", "to_out.0"]


class _Kandinsky22Target(TrainTarget):
    divisibility = 64  # the MoVQ's 8x factor and the UNet's downsampling

    def __init__(self, folders: dict[str, str], device: str, weight_dtype, sample_settings: dict[str, Any]):
        import torch
        from diffusers import DDPMScheduler, KandinskyV22Pipeline, KandinskyV22PriorPipeline

        self.device, self.weight_dtype = device, weight_dtype
        self.prior_pipe = KandinskyV22PriorPipeline.from_pretrained(folders["prior"], dtype=weight_dtype)
        self.decoder_pipe = KandinskyV22Pipeline.from_pretrained(folders["decoder"], dtype=weight_dtype)
        for pipe in (self.prior_pipe, self.decoder_pipe):
            pipe.to(device)
            pipe.set_progress_bar_config(disable=True)
            for component in pipe.components.values():
                if isinstance(component, torch.nn.Module):
                    component.requires_grad_(False).eval()
        self.sample_settings = sample_settings
        self.noise_scheduler = self._noise_scheduler(DDPMScheduler)

    def sample_one(self, prompt: str, seed: int) -> list:
        import torch

        settings = self.sample_settings
        embeds = self.prior_pipe(prompt, num_inference_steps=settings.get("prior_steps", 25),
                                 generator=torch.Generator().manual_seed(seed))  # fmt: skip
        return self.decoder_pipe(
            image_embeds=embeds.image_embeds,
            negative_image_embeds=embeds.negative_image_embeds,
            width=settings.get("width", 768),
            height=settings.get("height", 768),
            num_inference_steps=settings.get("steps", 50),
            guidance_scale=settings.get("guidance_scale", 4.0),
            generator=torch.Generator().manual_seed(seed),
        ).images

    def _image_embeds(self, image) -> Any:
        clip = self.prior_pipe.image_processor(image, return_tensors="pt").pixel_values
        encoder = self.prior_pipe.image_encoder
        return encoder(clip.to(self.device, encoder.dtype)).image_embeds[0]


class DecoderTarget(_Kandinsky22Target):
    """The decoder UNet: epsilon prediction on MoVQ latents, conditioned on the picture's image embedding."""

    part = "decoder"
    default_modules = ATTENTION

    @property
    def module(self):
        return self.decoder_pipe.unet

    def _noise_scheduler(self, cls):
        return cls.from_config(self.decoder_pipe.scheduler.config)

    def encode(self, image, caption: str) -> dict[str, Any]:
        movq = self.decoder_pipe.movq
        pixels = pixels_tensor(image).to(self.device, movq.dtype)
        return {"latents": movq.encode(pixels[None]).latents[0], "image_embeds": self._image_embeds(image)}

    def loss(self, batch: dict[str, Any], generator) -> Any:
        import torch
        import torch.nn.functional as F

        latents = batch["latents"].to(self.device, self.weight_dtype)
        noise = torch.randn(latents.shape, generator=generator).to(latents)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (latents.shape[0],), generator=generator).to(self.device)
        noisy = self.noise_scheduler.add_noise(latents, noise, timesteps)
        embeds = batch["image_embeds"].to(self.device, self.weight_dtype)
        predicted = self.module(noisy, timesteps, None, added_cond_kwargs={"image_embeds": embeds}).sample
        # The UNet predicts noise and variance: the loss is on the noise half.
        return F.mse_loss(predicted[:, : latents.shape[1]].float(), noise.float())


class PriorTarget(_Kandinsky22Target):
    """The prior transformer: predicts the (normalised) image embedding from the caption's text encoding,
    as the model itself was trained (sample prediction, squared-cosine noise schedule)."""

    part = "prior"
    default_modules = ATTENTION

    @property
    def module(self):
        return self.prior_pipe.prior

    def _noise_scheduler(self, cls):
        return cls(beta_schedule="squaredcos_cap_v2", prediction_type="sample")

    def encode(self, image, caption: str) -> dict[str, Any]:
        import torch

        tokens = self.prior_pipe.tokenizer(
            [caption], padding="max_length", max_length=self.prior_pipe.tokenizer.model_max_length,
            truncation=True, return_tensors="pt",
        )  # fmt: skip
        text = self.prior_pipe.text_encoder(tokens.input_ids.to(self.device))
        return {
            "text_embeds": text.text_embeds[0],
            "text_states": text.last_hidden_state[0],
            "text_mask": tokens.attention_mask[0].to(torch.bool),
            "image_embeds": self._image_embeds(image),
        }

    def loss(self, batch: dict[str, Any], generator) -> Any:
        import torch
        import torch.nn.functional as F

        prior = self.module
        embeds = batch["image_embeds"].to(self.device, self.weight_dtype)
        embeds = (embeds - prior.clip_mean.to(embeds)) / prior.clip_std.to(embeds)
        noise = torch.randn(embeds.shape, generator=generator).to(embeds)
        steps = self.noise_scheduler.config.num_train_timesteps
        timesteps = torch.randint(0, steps, (embeds.shape[0],), generator=generator).to(self.device)
        noisy = self.noise_scheduler.add_noise(embeds, noise, timesteps)
        predicted = prior(
            noisy,
            timestep=timesteps,
            proj_embedding=batch["text_embeds"].to(self.device, self.weight_dtype),
            encoder_hidden_states=batch["text_states"].to(self.device, self.weight_dtype),
            attention_mask=batch["text_mask"].to(self.device),
        ).predicted_image_embedding
        return F.mse_loss(predicted.float(), embeds.float())


def targets(spec=None) -> dict[str, type[TrainTarget]]:
    """The parts of a Kandinsky 2.2 model that can be trained, by their LoraPart name."""
    return {"decoder": DecoderTarget, "prior": PriorTarget}


def model_folders(sources: dict[str, str], spec) -> dict[str, str]:
    from kubin.models.prior_decoder import find_prior_and_decoder

    prior, decoder = find_prior_and_decoder(spec, sources)
    return {"prior": prior, "decoder": decoder}
