"""Shap-E through diffusers: text to 3D (`ShapEPipeline`, openai/shap-e) and image to 3D
(`ShapEImg2ImgPipeline`, openai/shap-e-img2img).

A prior denoises the latent of an implicit 3D function (CLIP text or image embedding in); the renderer turns
that latent into the weights of a small MLP, renders 20 views around the object (the turntable preview) and
extracts a coloured mesh with marching cubes. The pipelines are called for the latent only, so the prior runs
once and both the preview and the mesh come from the same latent.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from kubin.errors import KubinError, WeightsMissing
from kubin.models.base import LoadedModel, Phase, StepCallback
from kubin.models.common import FP16, cpu_generators, has_variant, pipeline_weights
from kubin.models.schedulers import scheduler_name
from kubin.models.spec import FOLDER_INFO, ModelSpec
from kubin.outputs import Mesh
from kubin.params import ImageTaskParams
from kubin.runtime.device import Placement
from kubin.runtime.placement import place_pipeline

log = logging.getLogger(__name__)


PIPELINES = {"t2mesh": "ShapEPipeline", "i2mesh": "ShapEImg2ImgPipeline"}
# After the denoising steps, one step each: they take long enough (tens of seconds at full size) that the
# user should read what is going on.
RENDER_PHASES = (Phase("render", 1, "Rendering the turntable", counted=False),
                 Phase("mesh", 1, "Building the mesh", counted=False))  # fmt: skip
# Samples along each of the turntable's rays (coarse, then fine): diffusers' defaults for Shap-E, and far
# fewer for the tiny twin, whose random field has no detail to find (its preview renders ~8x faster).
RENDER_SAMPLES = {"coarse": 64, "fine": 128}
TINY_RENDER_SAMPLES = {"coarse": 8, "fine": 16}


def step_phases(task: str, params: ImageTaskParams) -> list[Phase]:
    """The denoising steps, then the turntable render and the mesh extraction."""
    return [Phase("denoise", params.steps), *RENDER_PHASES]


class ShapE(LoadedModel):
    """A loaded Shap-E model: the pipeline of each task, loaded when that task is first run."""

    def __init__(self, spec: ModelSpec, sources: dict[str, str], placement: Placement):
        self.spec = spec
        self.sources = sources
        self.placement = placement
        self.pipes: dict[str, Any] = {}

    def pipeline(self, task: str):
        if task not in self.pipes:
            self.pipes[task] = _load_pipeline(self.spec, task, self.sources, self.placement)
        return self.pipes[task]

    def generate(self, task, params, prepared, seeds, on_step) -> tuple[list[Mesh], str]:
        """One Mesh (with its turntable frames) per seed."""
        pipe = self.pipeline(task)
        renderer = pipe.shap_e_renderer
        device = pipe._execution_device
        condition = {"prompt": params.prompt} if task == "t2mesh" else {"image": prepared.image}
        outputs = []
        for seed in seeds:  # one object per call
            with _counting_steps(pipe, params.steps, on_step):
                latents = pipe(
                    **condition,
                    num_inference_steps=params.steps,
                    guidance_scale=params.guidance_scale,
                    generator=cpu_generators([seed])[0],
                    output_type="latent",
                ).images
            latent = latents[:1]
            samples = TINY_RENDER_SAMPLES if self.spec.tiny else RENDER_SAMPLES
            views = renderer.decode_to_image(
                latent, device, size=params.frame_size,
                n_coarse_samples=samples["coarse"], n_fine_samples=samples["fine"],
            )  # fmt: skip
            frames = (views.float().clamp(0, 1).cpu().numpy() * 255).round().astype(np.uint8)
            on_step("render", params.steps + 1)
            try:
                mesh = renderer.decode_to_mesh(latent, device, grid_size=params.mesh_resolution)
            except (RuntimeError, ZeroDivisionError) as exc:
                # diffusers fails this way when marching cubes finds no surface at all
                if "non-empty" not in str(exc) and not isinstance(exc, ZeroDivisionError):
                    raise
                raise KubinError(
                    "Shap-E found no surface for this object (the mesh is empty); try another seed or prompt, "
                    "or a higher mesh resolution."
                ) from None
            on_step("mesh", params.steps + 2)
            colors = None
            if mesh.vertex_channels:
                colors = np.stack([mesh.vertex_channels[c].float().cpu().numpy() for c in "RGB"], axis=1)
            outputs.append(
                Mesh(
                    vertices=mesh.verts.float().cpu().numpy(),
                    faces=mesh.faces.cpu().numpy(),
                    colors=colors,
                    turntable=[_to_image(f) for f in frames],
                )
            )
        return outputs, scheduler_name(pipe.scheduler)

    def save(self, folder: str | Path) -> Path:
        """Each task's pipeline as folder/<task>/ plus kubin.json (the model saved and its defaults)."""
        folder = Path(folder)
        for task in self.spec.tasks:
            self.pipeline(task).save_pretrained(folder / task)
        info = {"saved_from": self.spec.id, "defaults": self.spec.defaults}
        (folder / FOLDER_INFO).write_text(json.dumps(info, indent=2), encoding="utf-8")
        return folder

    def release(self) -> None:
        self.pipes.clear()


def _to_image(frame: np.ndarray):
    from PIL import Image

    return Image.fromarray(frame, "RGB")


@contextmanager
def _counting_steps(pipe, steps: int, on_step: StepCallback) -> Iterator[None]:
    """Report each finished denoising step through on_step (which may raise to cancel).

    Shap-E's pipelines take no step callback; they loop over `self.progress_bar(timesteps)`, so a wrapper
    around that loop sees every timestep end. The Heun scheduler visits most timesteps twice (a predictor
    and a corrector: 2 x steps - 1 model calls), so the calls are scaled to exactly `steps` reports.
    """

    def counting(iterable=None, total=None):
        calls, done = len(iterable), 0
        for i, item in enumerate(iterable):
            yield item
            while done < round((i + 1) * steps / calls):
                done += 1
                on_step("denoise", done)

    pipe.progress_bar = counting
    try:
        yield
    finally:
        del pipe.progress_bar  # back to the class's method


def find_weights(
    spec: ModelSpec, sources: dict[str, str], placement: Placement, task: str | None = None
) -> dict[str, str]:
    """The pipeline folder of `task` (of every task when None), found or fetched (see ModelSpec.module)."""
    found = {}
    for each in [task] if task else spec.tasks:
        source = sources.get(each)
        if source is None:
            raise WeightsMissing(
                f"Model {spec.id} has no weights for {each} (no {each!r} source or subfolder)."
            )
        found[each] = pipeline_weights(source, spec.id, placement.dtype)
    return found


def _load_pipeline(spec: ModelSpec, task: str, sources: dict[str, str], placement: Placement):
    import diffusers

    path = find_weights(spec, sources, placement, task)[task]
    variant = FP16 if placement.dtype == "fp16" and has_variant(Path(path), FP16) else None
    cls = getattr(diffusers, PIPELINES[task])
    pipe = cls.from_pretrained(path, dtype=placement.torch_dtype(), variant=variant)
    place_pipeline(pipe, placement.device, placement.memory)
    log.info("Loaded %s (%s) on %s (%s)", spec.id, task, placement.device, placement.dtype)
    return pipe


def load(spec: ModelSpec, sources: dict[str, str], placement: Placement) -> ShapE:
    """The pipelines load on first use of their task: most sessions use only one of the two."""
    return ShapE(spec, sources, placement)


# --- marching cubes ----------------------------------------------------------------------------------
# The renderer's MeshDecoder looks triangles up in two tables, `cases` (256 x 5 x 3 edge indices) and
# `masks` (256 x 5), that only a real checkpoint fills. The tiny model gets them from here.
# A cube corner's index is x + 2y + 4z (bit i of a case says corner i is inside, field > 0); an edge is
# numbered as the renderer numbers them: four along x, then four along y, then four along z.
MC_EDGES = ((0, 1), (2, 3), (4, 5), (6, 7), (0, 2), (1, 3), (4, 6), (5, 7), (0, 4), (1, 5), (2, 6), (3, 7))


def marching_cubes_tables() -> tuple[np.ndarray, np.ndarray]:
    """The marching-cubes lookup tables in the layout of diffusers' Shap-E MeshDecoder, derived by tracing
    the surface around each of the 256 cube cases.

    On every cube face the surface crosses the edges whose corners differ. A face with four crossings (two
    inside corners on a diagonal) cuts off each inside corner, the same choice on both cubes that share the
    face, so the surface is closed. The segments on the faces join into loops, each loop is fanned into
    triangles, and each triangle is turned to face outward (from the inside corners to the outside ones).
    No case needs more than five triangles.
    """
    edge_of = {frozenset(e): i for i, e in enumerate(MC_EDGES)}
    corner = np.array([[c & 1, (c >> 1) & 1, (c >> 2) & 1] for c in range(8)], dtype=float)
    faces = []
    for axis in range(3):  # each face's four corners in order around it
        u, v = (a for a in range(3) if a != axis)
        for side in (0, 1):
            ring = [(0, 0), (1, 0), (1, 1), (0, 1)]
            faces.append([(side << axis) | (a << u) | (b << v) for a, b in ring])
    cases = np.zeros((256, 5, 3), dtype=np.int64)
    masks = np.zeros((256, 5), dtype=bool)
    for case in range(256):
        inside = [(case >> c) & 1 for c in range(8)]
        links: dict[int, list[int]] = {}
        for face in faces:
            sides = [edge_of[frozenset((face[i], face[(i + 1) % 4]))] for i in range(4)]
            crossed = [sides[i] for i in range(4) if inside[face[i]] != inside[face[(i + 1) % 4]]]
            if len(crossed) == 2:
                segments = [crossed]
            elif len(crossed) == 4:  # cut off each inside corner: the two sides that meet at it
                segments = [[sides[i - 1], sides[i]] for i in range(4) if inside[face[i]]]
            else:
                segments = []
            for a, b in segments:
                links.setdefault(a, []).append(b)
                links.setdefault(b, []).append(a)
        triangles = []
        seen: set[int] = set()
        for start in sorted(links):
            if start in seen:
                continue
            loop, previous, current = [start], None, start
            seen.add(start)
            while True:
                following = next(e for e in links[current] if e != previous)
                if following == start:
                    break
                loop.append(following)
                seen.add(following)
                previous, current = current, following
            triangles += [[loop[0], loop[i], loop[i + 1]] for i in range(1, len(loop) - 1)]
        for j, tri in enumerate(triangles):
            points = [corner[list(MC_EDGES[e])].mean(axis=0) for e in tri]
            normal = np.cross(points[1] - points[0], points[2] - points[0])
            # From each edge's inside corner to its outside one: the way out of the object.
            outward = sum(corner[b] - corner[a] if inside[a] else corner[a] - corner[b] for a, b in
                          (MC_EDGES[e] for e in tri))  # fmt: skip
            cases[case, j] = tri if normal @ outward > 0 else [tri[0], tri[2], tri[1]]
            masks[case, j] = True
    return cases, masks
