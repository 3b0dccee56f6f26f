"""The Kandinsky 2.0 UNet and its text conditioning, written for Kubin and checkpoint-compatible with the
official `Kandinsky-2-0.pt` / `Kandinsky-2-0-inpainting.pt` files.

The network is a guided-diffusion style UNet (residual blocks with scale-shift norm, residual up- and
downsampling, attention whose keys and values also see the text tokens) that predicts the noise and, in
the second half of its output channels, the learned variance range. Two text encoders condition it: the
sequence outputs of a multilingual CLIP (XLM-R) and of an mT5 encoder are projected and concatenated into
the attention context, and the CLIP's pooled output plus an attention-pooled mT5 summary are added to the
timestep embedding. Parameter names follow the authors' module tree, so their state dicts load as they are.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F
from torch import nn

MT5_WIDTH = 512  # the authors' UNet fixes the mT5 encoder's width (mT5-small's d_model)
NORM_GROUPS = 32


@dataclass(frozen=True)
class UNetConfig:
    """The constructor values of the authors' `create_model`, under their names (the manifests' `config`)."""

    image_size: int = 64
    num_channels: int = 384
    num_res_blocks: int = 3
    channel_mult: str = ""  # "" picks the authors' default for image_size
    num_heads: int = 1
    num_head_channels: int = 64
    num_heads_upsample: int = -1
    attention_resolutions: str = "32,16,8"
    dropout: float = 0.0
    model_dim: int = 768
    use_scale_shift_norm: bool = True
    resblock_updown: bool = True
    text_encoder_in_dim1: int = 1024
    text_encoder_in_dim2: int = 640
    pooling_type: str = "from_model"
    in_channels: int = 4
    out_channels: int = 8
    inpainting: bool = False

    @classmethod
    def from_dict(cls, values: dict) -> UNetConfig:
        """From the authors' config dict; their runtime-only keys (use_fp16, cache_text_emb, up) are ignored."""
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def channel_multipliers(self) -> tuple[int, ...]:
        if self.channel_mult:
            return tuple(int(m) for m in self.channel_mult.split(","))
        defaults = {256: (1, 1, 2, 2, 4, 4), 128: (1, 1, 2, 3, 4), 64: (1, 2, 3, 4)}
        if self.image_size not in defaults:
            raise ValueError(f"No default channel_mult for image_size {self.image_size}; give channel_mult.")
        return defaults[self.image_size]

    def attention_downsamplings(self) -> set[int]:
        """The downsampling factors (1, 2, 4, ...) whose blocks have attention."""
        return {self.image_size // int(r) for r in self.attention_resolutions.split(",")}

    def check(self) -> None:
        # Only the variant the published checkpoints use is written; the others would load silently wrong.
        published = self.use_scale_shift_norm and self.resblock_updown and self.pooling_type == "from_model"
        if not published or self.num_head_channels <= 0:
            raise ValueError(
                "Kandinsky 2.0 UNet: only use_scale_shift_norm, resblock_updown, pooling_type 'from_model' and "
                "heads of num_head_channels channels (the published configuration) are implemented."
            )


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps: the cosines first, then the sines."""
    half = dim // 2
    exponents = torch.arange(half, dtype=torch.float32, device=timesteps.device) / half
    angles = timesteps.float()[:, None] * torch.exp(-math.log(max_period) * exponents)[None]
    embedding = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
    if dim % 2:
        embedding = F.pad(embedding, (0, 1))
    return embedding


class GroupNorm(nn.GroupNorm):
    """Group norm computed in float32 (stable in half precision), optionally followed by SiLU."""

    def __init__(self, channels: int, silu: bool):
        super().__init__(NORM_GROUPS, channels)
        self.silu = silu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight, bias = self.weight.float(), self.bias.float()  # float32 whatever the module's dtype
        y = F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)
        return F.silu(y) if self.silu else y


def _resample(x: torch.Tensor, direction: str) -> torch.Tensor:
    if direction == "down":
        return F.avg_pool2d(x, kernel_size=2, stride=2)
    if direction == "up":
        return F.interpolate(x, scale_factor=2, mode="nearest")
    return x


class ResBlock(nn.Module):
    """Residual block conditioned on the embedding by scale and shift; may halve or double the size.

    The Sequential slots (norm, placeholder, conv / SiLU, linear / norm, SiLU, dropout, conv) keep the
    checkpoint's parameter indices.
    """

    def __init__(
        self, channels: int, emb_channels: int, out_channels: int, dropout: float, resample: str = ""
    ):
        super().__init__()
        self.resample = resample
        self.in_layers = nn.Sequential(
            GroupNorm(channels, silu=True), nn.Identity(), nn.Conv2d(channels, out_channels, 3, padding=1)
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, 2 * out_channels))
        self.out_layers = nn.Sequential(
            GroupNorm(out_channels, silu=False),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Conv2d(out_channels, out_channels, 3, padding=1),
        )
        self.skip_connection = (
            nn.Identity() if out_channels == channels else nn.Conv2d(channels, out_channels, 1)
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers[0](x)
        # Resampling sits between the first norm and the first conv, on both paths.
        h = self.in_layers[2](_resample(h, self.resample))
        x = _resample(x, self.resample)
        scale, shift = self.emb_layers(emb).to(h.dtype)[:, :, None, None].chunk(2, dim=1)
        h = self.out_layers[0](h) * (1 + scale) + shift
        for layer in self.out_layers[1:]:
            h = layer(h)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Self-attention over the pixels whose keys and values also include the projected text tokens."""

    def __init__(self, channels: int, head_channels: int, context_channels: int):
        super().__init__()
        self.heads = channels // head_channels
        self.norm = GroupNorm(channels, silu=False)
        self.qkv = nn.Conv1d(channels, channels * 3, 1)
        self.encoder_kv = nn.Conv1d(context_channels, channels * 2, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        b, c, height, width = x.shape
        heads, ch = self.heads, c // self.heads
        # The checkpoint's projections are laid out head by head: [q, k, v] (and [k, v]) within each head.
        q, k, v = self.qkv(self.norm(x).reshape(b, c, -1)).reshape(b, heads, 3 * ch, -1).split(ch, dim=2)
        text_k, text_v = self.encoder_kv(context).reshape(b, heads, 2 * ch, -1).split(ch, dim=2)
        k = torch.cat([text_k, k], dim=-1)
        v = torch.cat([text_v, v], dim=-1)
        # (batch, heads, tokens, channels) for the fused kernel; its 1/sqrt(ch) scale is the authors'.
        out = F.scaled_dot_product_attention(q.transpose(2, 3), k.transpose(2, 3), v.transpose(2, 3))
        out = out.transpose(2, 3).reshape(b, c, -1)
        return x + self.proj_out(out).reshape(b, c, height, width)


class Stage(nn.ModuleList):
    """One entry of input_blocks / middle_block / output_blocks: a first layer and what follows it."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                h = layer(h, emb)
            elif isinstance(layer, AttentionBlock):
                h = layer(h, context)
            else:
                h = layer(h)
        return h


class AttentionPooling(nn.Module):
    """Multi-head self-attention over a sequence whose first token's output, projected, is the summary."""

    def __init__(self, heads: int, in_dim: int, out_dim: int):
        super().__init__()
        self.heads = heads
        self.q_linear = nn.Linear(in_dim, in_dim)
        self.v_linear = nn.Linear(in_dim, in_dim)
        self.k_linear = nn.Linear(in_dim, in_dim)
        self.out = nn.Linear(in_dim, out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, d = x.shape

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.reshape(b, t.shape[1], self.heads, d // self.heads).transpose(1, 2)

        # Only the first token's row is kept, so only its query is needed.
        q = heads(self.q_linear(x[:, :1]))
        out = F.scaled_dot_product_attention(q, heads(self.k_linear(x)), heads(self.v_linear(x)))
        return self.out(out.transpose(1, 2).reshape(b, d))


class Kandinsky20UNet(nn.Module):
    """The text-conditioned UNet; with `inpainting`, the inpainting variant (image and mask as extra inputs).

    forward(x, timesteps, full_emb1, pooled_emb1, full_emb2[, inpaint_image, inpaint_mask]) takes the
    XLM-R sequence output (text_encoder_in_dim1 wide), the multilingual CLIP's pooled output
    (text_encoder_in_dim2) and the mT5 sequence output (512), and returns noise and variance channels.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        config.check()
        self.config = config
        mc = config.num_channels
        emb_dim = mc * 4
        context = config.model_dim
        mults = config.channel_multipliers()
        attention_at = config.attention_downsamplings()
        in_channels = config.in_channels * 2 + 1 if config.inpainting else config.in_channels

        def res(ch_in: int, ch_out: int, resample: str = "") -> ResBlock:
            return ResBlock(ch_in, emb_dim, ch_out, config.dropout, resample)

        def attention(ch: int) -> AttentionBlock:
            return AttentionBlock(ch, config.num_head_channels, context)

        self.time_embed = nn.Sequential(nn.Linear(mc, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        ch = mc * mults[0]
        self.input_blocks = nn.ModuleList([Stage([nn.Conv2d(in_channels, ch, 3, padding=1)])])
        skip_channels = [ch]
        ds = 1
        for level, mult in enumerate(mults):
            for _ in range(config.num_res_blocks):
                layers: list[nn.Module] = [res(ch, mc * mult)]
                ch = mc * mult
                if ds in attention_at:
                    layers.append(attention(ch))
                self.input_blocks.append(Stage(layers))
                skip_channels.append(ch)
            if level != len(mults) - 1:
                self.input_blocks.append(Stage([res(ch, ch, "down")]))
                skip_channels.append(ch)
                ds *= 2
        self.middle_block = Stage([res(ch, ch), attention(ch), res(ch, ch)])
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(mults))):
            for i in range(config.num_res_blocks + 1):
                layers = [res(ch + skip_channels.pop(), mc * mult)]
                ch = mc * mult
                if ds in attention_at:
                    layers.append(attention(ch))
                if level and i == config.num_res_blocks:
                    layers.append(res(ch, ch, "up"))
                    ds //= 2
                self.output_blocks.append(Stage(layers))
        self.out = nn.Sequential(
            GroupNorm(ch, silu=True), nn.Identity(), nn.Conv2d(ch, config.out_channels, 3, padding=1)
        )

        # Text conditioning.
        self.to_model_dim = nn.Linear(config.text_encoder_in_dim1, context)
        self.proj = nn.Linear(config.text_encoder_in_dim2, emb_dim)
        self.proj2 = AttentionPooling(8, MT5_WIDTH, emb_dim)
        self.to_model_dim2 = nn.Linear(MT5_WIDTH, context)
        self.ln_model1 = nn.LayerNorm(context)
        self.ln_model2 = nn.LayerNorm(emb_dim)
        self.ln_model3 = nn.LayerNorm(emb_dim)

    def text_conditioning(
        self, full_emb1: torch.Tensor, pooled_emb1: torch.Tensor, full_emb2: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(embedding added to the timestep's, attention context as batch x channels x tokens)."""
        pooled = self.ln_model2(self.proj(pooled_emb1)) + self.ln_model3(self.proj2(full_emb2))
        tokens = torch.cat([self.to_model_dim(full_emb1), self.to_model_dim2(full_emb2)], dim=1)
        return pooled, self.ln_model1(tokens).transpose(1, 2)

    def forward(
        self,
        x: torch.Tensor,
        timesteps: torch.Tensor,
        full_emb1: torch.Tensor,
        pooled_emb1: torch.Tensor,
        full_emb2: torch.Tensor,
        inpaint_image: torch.Tensor | None = None,
        inpaint_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if self.config.inpainting:
            if inpaint_image is None:
                inpaint_image = torch.zeros_like(x)
            if inpaint_mask is None:
                inpaint_mask = torch.zeros_like(x[:, :1])
            x = torch.cat([x, inpaint_image * inpaint_mask, inpaint_mask], dim=1)
        dtype = self.time_embed[0].weight.dtype
        pooled, context = self.text_conditioning(
            full_emb1.to(dtype), pooled_emb1.to(dtype), full_emb2.to(dtype)
        )
        emb = self.time_embed(timestep_embedding(timesteps, self.config.num_channels).to(dtype)) + pooled
        h = x.to(dtype)
        skips = []
        for stage in self.input_blocks:
            h = stage(h, emb, context)
            skips.append(h)
        h = self.middle_block(h, emb, context)
        for stage in self.output_blocks:
            h = stage(torch.cat([h, skips.pop()], dim=1), emb, context)
        return self.out(h).float()


class MultilingualCLIPText(nn.Module):
    """Text encoder 1: XLM-R whose attention-masked mean, through `LinearTransformation`, is the pooled
    output; its hidden states are the sequence output. Names follow `text_encoder1/pytorch_model.bin`."""

    def __init__(self, xlmr_config, out_features: int):
        super().__init__()
        from transformers import XLMRobertaModel

        self.transformer = XLMRobertaModel(xlmr_config, add_pooling_layer=False)
        self.LinearTransformation = nn.Linear(xlmr_config.hidden_size, out_features)

    def forward(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(sequence output, pooled output)."""
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask)[0]
        mask = attention_mask.unsqueeze(2).to(hidden.dtype)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1)
        return hidden, self.LinearTransformation(mean)
