"""The authors' reference data the native tests check against: checkpoint manifests and test vectors.

Both ship with the repository in tests/data/native/, xz-compressed (its README says where each came from);
this module is the one place that reads them. A missing file is an error, never a skipped test.
"""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors

DATA = Path(__file__).resolve().parents[1] / "data" / "native"


def manifest(name: str) -> dict:
    """A full-size checkpoint manifest, e.g. "kd20-unet": `config`, `params` and `keys` ({key: [shape, dtype]})."""
    return json.loads(lzma.decompress((DATA / f"{name}.json.xz").read_bytes()))


def vectors(name: str) -> tuple[dict[str, str], dict[str, torch.Tensor]]:
    """A test-vector file, e.g. "kd31-tiny": its metadata (the tiny configs, as JSON text) and its tensors."""
    data = lzma.decompress((DATA / "vectors" / f"{name}.safetensors.xz").read_bytes())
    # The safetensors layout: an 8-byte little-endian header length, then the JSON header with the metadata.
    header_length = int.from_bytes(data[:8], "little")
    metadata = json.loads(data[8 : 8 + header_length]).get("__metadata__", {})
    return metadata, load_safetensors(data)
