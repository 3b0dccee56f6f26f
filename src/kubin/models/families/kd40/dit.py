"""The Kandinsky 4.0 T2V Flash diffusion transformer, written for Kubin and checkpoint-compatible with
`kandinsky4_distil_512.pt` (ai-forever/kandinsky-4-t2v-flash): the same module names and shapes as
the authors' model, so their state dict loads strictly.

The model is an MMDiT-like stack of block pairs. Every block runs one joint self-attention over the
video tokens and the prompt's tokens together (one LayerNorm, one projection and one feed-forward
shared by both streams, each stream modulated by the time step on its own). The first block of a pair
attends within local groups of the video, the second across strided (global) groups; with one group
per axis, which is how the published 480p model runs, both see the whole clip.

Several videos can be packed along the frame axis: `visual_cu_seqlens` (in frames) and
`text_cu_seqlens` (in tokens) mark where each one starts, and attention never crosses from one video
to another (the authors' flash-attention variable-length segments). Attention runs through PyTorch's
scaled_dot_product_attention per segment, or through flash-attention's variable-length kernel when it
is installed and the tensors are half precision on a GPU.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

# The authors' constructor values for the published 480p Flash model.
KD40_CONFIG = {
    "in_visual_dim": 16,
    "in_text_dim": 4096,
    "time_dim": 512,
    "out_visual_dim": 16,
    "patch_size": (1, 2, 2),
    "model_dim": 3072,
    "ff_dim": 12288,
    "num_blocks": 21,
    "axes_dims": (16, 24, 24),
}
ROPE_MAX_POSITIONS = 128  # per axis: frames, latent rows, latent columns (after patching)
MAX_PERIOD = 10000.0


def frequencies(count: int, max_period: float = MAX_PERIOD) -> torch.Tensor:
    """Geometric frequencies 1 .. 1/max_period, as in the sinusoidal time and rotary embeddings."""
    return torch.exp(-math.log(max_period) * torch.arange(count, dtype=torch.float32) / count)


class TimeEmbeddings(nn.Module):
    """Sinusoidal embedding of the time step (cos half, then sin half), then a two-layer MLP."""

    def __init__(self, model_dim: int, time_dim: int):
        super().__init__()
        self.model_dim = model_dim
        self.in_layer = nn.Linear(model_dim, time_dim)
        self.out_layer = nn.Linear(time_dim, time_dim)

    def forward(self, time: torch.Tensor) -> torch.Tensor:
        angles = time.float()[:, None] * frequencies(self.model_dim // 2).to(time.device)[None]
        sinusoid = torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)
        sinusoid = sinusoid.to(self.in_layer.weight.dtype)
        return self.out_layer(F.silu(self.in_layer(sinusoid)))


class TextEmbeddings(nn.Module):
    def __init__(self, text_dim: int, model_dim: int):
        super().__init__()
        self.in_layer = nn.Linear(text_dim, model_dim)

    def forward(self, text_embed: torch.Tensor) -> torch.Tensor:
        return self.in_layer(text_embed)


class VisualEmbeddings(nn.Module):
    """Cuts the latent video [frames, height, width, channels] into patches and projects each one."""

    def __init__(self, visual_dim: int, model_dim: int, patch_size: Sequence[int]):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.in_layer = nn.Linear(math.prod(patch_size) * visual_dim, model_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        frames, height, width, channels = x.shape
        pt, ph, pw = self.patch_size
        x = x.reshape(frames // pt, pt, height // ph, ph, width // pw, pw, channels)
        # A patch's features run (frame, row, column, channel), the order the checkpoint was trained on.
        x = x.permute(0, 2, 4, 1, 3, 5, 6).reshape(frames // pt, height // ph, width // pw, -1)
        return self.in_layer(x)


class RoPE3D(nn.Module):
    """Rotary angles per axis (time, rows, columns). The position tables are buffers in the checkpoint;
    time positions restart at zero for every packed video."""

    def __init__(self, axes_dims: Sequence[int], max_positions: int = ROPE_MAX_POSITIONS):
        super().__init__()
        for i, dim in enumerate(axes_dims):
            positions = torch.arange(max_positions, dtype=torch.float32)
            self.register_buffer(f"args_{i}", torch.outer(positions, frequencies(dim // 2)))

    def forward(
        self, shape: Sequence[int], visual_cu_seqlens: torch.Tensor, scale_factor: Sequence[float]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """cos and sin of the angles for each token: [frames, height, width, 1, head_dim // 2]."""
        frames, height, width = shape
        lengths = torch.diff(visual_cu_seqlens).tolist()
        time_args = torch.cat([self.args_0[:n] for n in lengths])
        per_axis = [time_args / scale_factor[0], self.args_1[:height] / scale_factor[1]]
        per_axis.append(self.args_2[:width] / scale_factor[2])
        angles = torch.cat(
            [
                per_axis[0][:, None, None].expand(frames, height, width, -1),
                per_axis[1][None, :, None].expand(frames, height, width, -1),
                per_axis[2][None, None, :].expand(frames, height, width, -1),
            ],
            dim=-1,
        )[..., None, :]
        return torch.cos(angles), torch.sin(angles)


def rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate each (even, odd) pair of channels by its angle, in float32."""
    pairs = x.float().unflatten(-1, (-1, 2))
    even, odd = pairs[..., 0], pairs[..., 1]
    rotated = torch.stack([cos * even - sin * odd, sin * even + cos * odd], dim=-1)
    return rotated.flatten(-2).type_as(x)


class Modulation(nn.Module):
    """Shift, scale and gate for attention and for the feed-forward, from the time embedding; repeated
    over each packed item's frames (video stream) or tokens (text stream)."""

    def __init__(self, time_dim: int, model_dim: int):
        super().__init__()
        self.out_layer = nn.Linear(time_dim, 6 * model_dim)

    def forward(self, time_embed: torch.Tensor, cu_seqlens: torch.Tensor):
        params = self.out_layer(F.silu(time_embed))
        params = params.repeat_interleave(torch.diff(cu_seqlens), dim=0)
        attention, feed_forward = params.chunk(2, dim=-1)
        return attention.chunk(3, dim=-1), feed_forward.chunk(3, dim=-1)


def to_groups(x: torch.Tensor, num_groups: Sequence[int], kind: str) -> torch.Tensor:
    """[frames, height, width, ...] -> [groups, tokens per group, ...]. Local groups are contiguous
    blocks of the video; global groups take every n-th frame, row and column (a strided lattice)."""
    frames, height, width = x.shape[:3]
    n1, n2, n3 = num_groups
    s1, s2, s3 = frames // n1, height // n2, width // n3
    rest = x.shape[3:]
    tail = tuple(range(6, 6 + len(rest)))
    if kind == "local":
        x = x.reshape(n1, s1, n2, s2, n3, s3, *rest).permute(0, 2, 4, 1, 3, 5, *tail)
    else:
        x = x.reshape(s1, n1, s2, n2, s3, n3, *rest).permute(1, 3, 5, 0, 2, 4, *tail)
    return x.reshape(n1 * n2 * n3, s1 * s2 * s3, *rest)


def from_groups(x: torch.Tensor, shape: Sequence[int], num_groups: Sequence[int], kind: str) -> torch.Tensor:
    """The inverse of `to_groups`."""
    frames, height, width = shape
    n1, n2, n3 = num_groups
    s1, s2, s3 = frames // n1, height // n2, width // n3
    rest = x.shape[2:]
    tail = tuple(range(6, 6 + len(rest)))
    x = x.reshape(n1, n2, n3, s1, s2, s3, *rest)
    if kind == "local":
        x = x.permute(0, 3, 1, 4, 2, 5, *tail)
    else:
        x = x.permute(3, 0, 4, 1, 5, 2, *tail)
    return x.reshape(frames, height, width, *rest)


def flash_varlen() -> Callable | None:
    """flash-attention's variable-length kernel, when the package is installed."""
    try:
        from flash_attn import flash_attn_varlen_func
    except ImportError:
        return None
    return flash_attn_varlen_func


def _use_flash(q: torch.Tensor) -> Callable | None:
    if not q.is_cuda or q.dtype not in (torch.float16, torch.bfloat16):
        return None
    return flash_varlen()


def segment_attention(
    visual: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    text: tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    visual_bounds: list[int],
    text_bounds: list[int],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Non-causal attention (scale 1/sqrt(head_dim)) within each segment: segment i of every group is
    that group's video tokens visual_bounds[i]:visual_bounds[i+1] together with the prompt tokens
    text_bounds[i]:text_bounds[i+1]. Visual q/k/v are [groups, tokens, heads, head_dim], text q/k/v
    [tokens, heads, head_dim]. Returns the visual output per group, and the text output that the first
    group gives (as the authors' model does)."""
    groups = visual[0].shape[0]
    segments = []
    for i in range(len(visual_bounds) - 1):
        v0, v1, t0, t1 = visual_bounds[i], visual_bounds[i + 1], text_bounds[i], text_bounds[i + 1]
        segments.append(
            [
                torch.cat([v[:, v0:v1], t[t0:t1].unsqueeze(0).expand(groups, -1, -1, -1)], dim=1)
                for v, t in zip(visual, text, strict=True)
            ]
        )
    flash = _use_flash(visual[0])
    if flash is not None:
        outputs = _flash_segments(flash, segments)
    else:
        outputs = []
        for q, k, v in segments:  # [groups, length, heads, head_dim] -> heads before tokens for SDPA
            out = F.scaled_dot_product_attention(q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2))
            outputs.append(out.transpose(1, 2))
    visual_out, text_out = [], []
    for i, out in enumerate(outputs):
        length = visual_bounds[i + 1] - visual_bounds[i]
        visual_out.append(out[:, :length])
        text_out.append(out[0, length:])
    return torch.cat(visual_out, dim=1), torch.cat(text_out, dim=0)


def _flash_segments(flash: Callable, segments: list[list[torch.Tensor]]) -> list[torch.Tensor]:
    """All segments of all groups packed into one sequence for flash-attention's varlen kernel."""
    groups = segments[0][0].shape[0]
    lengths = [q.shape[1] for q, _, _ in segments]
    order = [(g, i) for g in range(groups) for i in range(len(segments))]
    packed = [torch.cat([segments[i][n][g] for g, i in order]) for n in range(3)]
    seqlens = torch.tensor([0] + [lengths[i] for _, i in order], device=packed[0].device)
    cu_seqlens = torch.cumsum(seqlens, 0, dtype=torch.int32)
    longest = max(lengths)
    out = flash(*packed, cu_seqlens, cu_seqlens, longest, longest)
    pieces = out.split([lengths[i] for _, i in order])
    return [torch.stack([pieces[g * len(segments) + i] for g in range(groups)]) for i in range(len(segments))]


class MultiheadSelfAttention(nn.Module):
    """Joint attention of the video and prompt tokens: one projection, QK LayerNorm per head, rotary
    positions on the video's queries and keys only."""

    def __init__(self, num_channels: int, head_dim: int):
        super().__init__()
        self.num_heads = num_channels // head_dim
        self.to_query_key_value = nn.Linear(num_channels, 3 * num_channels)
        self.query_norm = nn.LayerNorm(head_dim)
        self.key_norm = nn.LayerNorm(head_dim)
        self.output_layer = nn.Linear(num_channels, num_channels)

    def _project(self, x: torch.Tensor):
        q, k, v = self.to_query_key_value(x).chunk(3, dim=-1)
        q, k, v = (t.unflatten(-1, (self.num_heads, -1)) for t in (q, k, v))
        return self.query_norm(q).type_as(q), self.key_norm(k).type_as(k), v

    def forward(self, visual_embed, text_embed, rope, visual_cu_seqlens, text_cu_seqlens, num_groups, kind):
        shape = visual_embed.shape[:3]
        vq, vk, vv = self._project(visual_embed)
        cos, sin = rope
        vq, vk = rotate(vq, cos, sin), rotate(vk, cos, sin)
        tq, tk, tv = self._project(text_embed)
        grouped = [to_groups(t, num_groups, kind) for t in (vq, vk, vv)]
        # Segment bounds in tokens of one group: frames times the group's rows and columns.
        tokens_per_frame = (shape[1] // num_groups[1]) * (shape[2] // num_groups[2])
        visual_bounds = [int(b) * tokens_per_frame for b in visual_cu_seqlens.tolist()]
        text_bounds = [int(b) for b in text_cu_seqlens.tolist()]
        visual_out, text_out = segment_attention(grouped, (tq, tk, tv), visual_bounds, text_bounds)
        visual_out = from_groups(visual_out, shape, num_groups, kind).flatten(-2)
        return self.output_layer(visual_out), self.output_layer(text_out.flatten(-2))


class FeedForward(nn.Module):
    def __init__(self, dim: int, ff_dim: int):
        super().__init__()
        self.in_layer = nn.Linear(dim, ff_dim)
        self.out_layer = nn.Linear(ff_dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out_layer(F.gelu(self.in_layer(x)))


class TransformerBlock(nn.Module):
    """Attention then feed-forward, each behind a time-modulated LayerNorm and a gated residual."""

    def __init__(self, model_dim: int, time_dim: int, ff_dim: int, head_dim: int):
        super().__init__()
        self.visual_modulation = Modulation(time_dim, model_dim)
        self.text_modulation = Modulation(time_dim, model_dim)
        self.self_attention_norm = nn.LayerNorm(model_dim)
        self.self_attention = MultiheadSelfAttention(model_dim, head_dim)
        self.feed_forward_norm = nn.LayerNorm(model_dim)
        self.feed_forward = FeedForward(model_dim, ff_dim)

    def forward(self, visual, text, time_embed, rope, visual_cu_seqlens, text_cu_seqlens, num_groups, kind):
        (v_shift, v_scale, v_gate), v_ff = self.visual_modulation(time_embed, visual_cu_seqlens)
        (t_shift, t_scale, t_gate), t_ff = self.text_modulation(time_embed, text_cu_seqlens)
        per_frame = (slice(None), None, None)  # a frame's modulation over all of its rows and columns
        visual_in = self.self_attention_norm(visual) * (v_scale[per_frame] + 1.0) + v_shift[per_frame]
        text_in = self.self_attention_norm(text) * (t_scale + 1.0) + t_shift
        visual_out, text_out = self.self_attention(
            visual_in, text_in, rope, visual_cu_seqlens, text_cu_seqlens, num_groups, kind
        )
        visual = visual + v_gate[per_frame] * visual_out
        text = text + t_gate * text_out

        v_shift, v_scale, v_gate = v_ff
        visual_in = self.feed_forward_norm(visual) * (v_scale[per_frame] + 1.0) + v_shift[per_frame]
        visual = visual + v_gate[per_frame] * self.feed_forward(visual_in)
        t_shift, t_scale, t_gate = t_ff
        text_in = self.feed_forward_norm(text) * (t_scale + 1.0) + t_shift
        text = text + t_gate * self.feed_forward(text_in)
        return visual, text


class OutLayer(nn.Module):
    """Time-modulated LayerNorm, projection back to latent patches, patches back to a latent video."""

    def __init__(self, model_dim: int, time_dim: int, visual_dim: int, patch_size: Sequence[int]):
        super().__init__()
        self.patch_size = tuple(patch_size)
        self.norm = nn.LayerNorm(model_dim)
        self.out_layer = nn.Linear(model_dim, math.prod(patch_size) * visual_dim)
        self.modulation_out = nn.Linear(time_dim, 2 * model_dim)

    def forward(self, visual: torch.Tensor, time_embed: torch.Tensor, visual_cu_seqlens: torch.Tensor):
        params = self.modulation_out(F.silu(time_embed)).repeat_interleave(
            torch.diff(visual_cu_seqlens), dim=0
        )
        shift, scale = params[:, None, None].chunk(2, dim=-1)
        x = self.out_layer(self.norm(visual) * (scale + 1.0) + shift)
        frames, height, width, _ = x.shape
        pt, ph, pw = self.patch_size
        # Output features run (channel, frame, row, column): the reverse of the input patches' order.
        x = x.reshape(frames, height, width, -1, pt, ph, pw).permute(0, 4, 1, 5, 2, 6, 3)
        return x.reshape(frames * pt, height * ph, width * pw, -1)


class Kandinsky4DiT(nn.Module):
    """The Kandinsky 4.0 diffusion transformer; its forward predicts the velocity (v) of a packed batch."""

    def __init__(
        self,
        in_visual_dim: int = 16,
        in_text_dim: int = 4096,
        time_dim: int = 512,
        out_visual_dim: int = 16,
        patch_size: Sequence[int] = (1, 2, 2),
        model_dim: int = 3072,
        ff_dim: int = 12288,
        num_blocks: int = 21,
        axes_dims: Sequence[int] = (16, 24, 24),
    ):
        super().__init__()
        head_dim = sum(axes_dims)
        self.time_embeddings = TimeEmbeddings(model_dim, time_dim)
        self.text_embeddings = TextEmbeddings(in_text_dim, model_dim)
        self.visual_embeddings = VisualEmbeddings(in_visual_dim, model_dim, patch_size)
        self.rope_embeddings = RoPE3D(axes_dims)
        self.transformer_blocks = nn.ModuleList(
            nn.ModuleList(TransformerBlock(model_dim, time_dim, ff_dim, head_dim) for _ in range(2))
            for _ in range(num_blocks)
        )
        self.out_layer = OutLayer(model_dim, time_dim, out_visual_dim, patch_size)

    def forward(
        self,
        x: torch.Tensor,
        text_embed: torch.Tensor,
        time: torch.Tensor,
        visual_cu_seqlens: torch.Tensor,
        text_cu_seqlens: torch.Tensor,
        num_groups: Sequence[int] = (1, 1, 1),
        scale_factor: Sequence[float] = (1.0, 1.0, 1.0),
    ) -> torch.Tensor:
        """x: latent frames of every packed video [frames, height, width, channels]; text_embed: their
        prompts' encoder states [tokens, in_text_dim]; time: one time step per video."""
        time_embed = self.time_embeddings(time)
        text = self.text_embeddings(text_embed)
        visual = self.visual_embeddings(x)
        rope = self.rope_embeddings(visual.shape[:3], visual_cu_seqlens, scale_factor)
        for local_block, global_block in self.transformer_blocks:
            for block, kind in ((local_block, "local"), (global_block, "global")):
                visual, text = block(
                    visual, text, time_embed, rope, visual_cu_seqlens, text_cu_seqlens, num_groups, kind
                )
        return self.out_layer(visual, time_embed, visual_cu_seqlens)


def config_from_state_dict(state: dict[str, torch.Tensor]) -> dict:
    """The constructor values of the checkpoint in `state`, read off its tensor shapes (the published
    file holds only weights). The patch size is the authors' (1, 2, 2)."""
    patch = KD40_CONFIG["patch_size"]
    model_dim, text_dim = state["text_embeddings.in_layer.weight"].shape
    blocks = {key.split(".")[1] for key in state if key.startswith("transformer_blocks.")}
    head_dim = state["transformer_blocks.0.0.self_attention.query_norm.weight"].shape[0]
    axes = [
        2 * state[f"rope_embeddings.args_{i}"].shape[1]
        for i in range(3)
        if f"rope_embeddings.args_{i}" in state
    ]
    if len(axes) != 3:  # no position tables: the authors' split of the head, scaled to its size
        axes = [d * head_dim // sum(KD40_CONFIG["axes_dims"]) for d in KD40_CONFIG["axes_dims"]]
    return {
        "in_visual_dim": state["visual_embeddings.in_layer.weight"].shape[1] // math.prod(patch),
        "in_text_dim": text_dim,
        "time_dim": state["time_embeddings.in_layer.weight"].shape[0],
        "out_visual_dim": state["out_layer.out_layer.weight"].shape[0] // math.prod(patch),
        "patch_size": patch,
        "model_dim": model_dim,
        "ff_dim": state["transformer_blocks.0.0.feed_forward.in_layer.weight"].shape[0],
        "num_blocks": len(blocks),
        "axes_dims": tuple(axes),
    }
