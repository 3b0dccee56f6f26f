"""The bundled Segment extension: a tiny Segment Anything model turns points and boxes into masks for
inpainting; prompts are parsed from text, masks saved as outputs; missing weights offline are one sentence."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
from extension_helpers import load_bundled
from PIL import Image

from kubin.errors import InvalidParams, WeightsMissing
from kubin.outputs import read_output_metadata


@pytest.fixture(scope="module")
def ext():
    return load_bundled("segment")


@pytest.fixture(scope="module")
def tiny_sam():
    """A randomly initialised SAM assembled from segment_anything's modules (0.11 M parameters)."""
    import torch
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(0)
    size, dim = 256, 32
    grid = size // 16
    sam = Sam(
        image_encoder=ImageEncoderViT(depth=2, embed_dim=dim, img_size=size, mlp_ratio=4, num_heads=2, patch_size=16,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), qkv_bias=True, use_rel_pos=True,
                                      global_attn_indexes=[1], window_size=4, out_chans=dim),
        prompt_encoder=PromptEncoder(embed_dim=dim, image_embedding_size=(grid, grid), input_image_size=(size, size),
                                     mask_in_chans=8),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(depth=2, embedding_dim=dim,
                                 mlp_dim=64, num_heads=2), transformer_dim=dim, iou_head_depth=3, iou_head_hidden_dim=32),
        pixel_mean=[123.675, 116.28, 103.53],
        pixel_std=[58.395, 57.12, 57.375],
    )  # fmt: skip
    return sam.eval()


def picture() -> Image.Image:
    image = np.full((64, 80, 3), 40, dtype=np.uint8)
    image[16:48, 20:60] = (230, 200, 30)
    return Image.fromarray(image, "RGB")


def test_the_extension_adds_a_segment_tab_and_a_send_to_button(ext):
    loaded, _ = ext
    assert [tab.title for tab in loaded.api.tabs] == ["Segment"]
    assert ("segment", "Segment") in loaded.api.send_targets
    assert "segment-anything==1.0" in loaded.manifest["requirements"]


def test_a_point_gives_a_mask_of_the_image_size(ext, tiny_sam):
    _, mod = ext
    segmenter = mod.Segmenter(tiny_sam)

    mask, score = segmenter.mask(picture(), mod.parse_prompt("40,32", ""), key="one")

    assert mask.mode == "L" and mask.size == (80, 64)
    assert set(np.unique(np.asarray(mask))) <= {0, 255}
    assert np.isfinite(score)


def test_a_box_and_an_excluded_point_change_the_mask_and_reuse_the_embedding(ext, tiny_sam, monkeypatch):
    _, mod = ext
    segmenter = mod.Segmenter(tiny_sam)
    point_mask, _ = segmenter.mask(picture(), mod.parse_prompt("40,32", ""), key="same")
    embedded = []
    monkeypatch.setattr(segmenter.predictor, "set_image", lambda *a, **k: embedded.append(1))

    box_mask, _ = segmenter.mask(picture(), mod.parse_prompt("40,32\n5,5,0", "20,16,60,48"), key="same")

    assert embedded == [], "the same image is not embedded twice"
    assert box_mask.size == (80, 64)
    assert not np.array_equal(np.asarray(point_mask), np.asarray(box_mask))


def test_prompts_are_parsed_from_text_and_bad_ones_are_explained(ext):
    _, mod = ext
    prompt = mod.parse_prompt("10,20; 30.5,40,0\n", " 60,50 , 5,6 ")
    assert prompt.points == [(10.0, 20.0), (30.5, 40.0)]
    assert prompt.labels == [1, 0]
    assert prompt.box == (5.0, 6.0, 60.0, 50.0)
    assert mod.parse_prompt("", "").empty
    with pytest.raises(InvalidParams, match="A point is x,y"):
        mod.parse_prompt("10", "")
    with pytest.raises(InvalidParams, match="A box is x0,y0,x1,y1"):
        mod.parse_prompt("", "1,2,3")
    with pytest.raises(InvalidParams, match="Mark the object first"):
        mod.Segmenter.mask(None, picture(), mod.parse_prompt("", ""))


def test_the_mask_grows_and_is_saved_as_a_segment_output(ext, tmp_path):
    _, mod = ext
    mask = Image.new("L", (32, 32), 0)
    mask.paste(255, (10, 10, 20, 20))

    grown = mod.grow(mask, 3)
    path = mod.save_mask(grown, tmp_path, "sam_vit_b.pth", mod.parse_prompt("15,15", ""), 3, 0.9, "/in.png")

    assert np.asarray(grown).astype(bool).sum() == 16 * 16
    meta = read_output_metadata(path)
    assert path.parent.parent.name == "segment" and meta["task"] == "segment"
    assert meta["params"]["points"] == [[15.0, 15.0]] and meta["params"]["grow"] == 3
    assert Image.open(path).size == (32, 32)
    assert mod.overlay(picture(), Image.new("L", (80, 64), 255)).getpixel((0, 0)) != picture().getpixel(
        (0, 0)
    )


def test_checkpoints_are_found_by_name_and_size(ext, tmp_path):
    _, mod = ext
    (tmp_path / "sam_vit_l_0b3195.pth").write_bytes(b"")
    assert mod.model_choices(tmp_path) == ["sam_vit_l_0b3195.pth", "hub: SAM ViT-B"]
    assert mod.model_kind("sam_vit_l_0b3195.pth") == "vit_l"
    assert mod.model_kind("sam-vit-b.pth") == "vit_b"
    with pytest.raises(InvalidParams, match="vit_b, vit_l or vit_h"):
        mod.model_kind("mystery.pth")
    with pytest.raises(InvalidParams, match="Could not load"):
        mod.load_sam(tmp_path / "sam_vit_l_0b3195.pth")


def test_the_sam_checkpoint_missing_offline_is_one_clear_sentence(ext, tmp_path, monkeypatch):
    _, mod = ext
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(WeightsMissing) as caught:
        mod.weights_path("hub: SAM ViT-B", tmp_path)
    message = str(caught.value)
    assert "sam_vit_b_01ec64.pth" in message and "ybelkada/segment-anything" in message
    assert "HF_HUB_OFFLINE" in message and str(tmp_path) in message and "\n" not in message
