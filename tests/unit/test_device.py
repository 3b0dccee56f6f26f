"""Device and dtype rules: the best device present by default, safe precision, and clear errors for what is absent."""

import pytest

from kubin.errors import InvalidParams
from kubin.runtime.device import Placement, choose_device, choose_dtype, resolve_placement


def device(requested, cuda=False, count=0, mps=False):
    return choose_device(requested, cuda_available=cuda, cuda_count=count, mps_available=mps)


@pytest.mark.parametrize(
    ("cuda", "count", "mps", "expected"),
    [(True, 1, False, "cuda"), (True, 2, True, "cuda"), (False, 0, True, "mps"), (False, 0, False, "cpu")],
)
def test_auto_prefers_cuda_then_mps_then_cpu(cuda, count, mps, expected):
    assert device("auto", cuda, count, mps) == expected
    assert device("", cuda, count, mps) == expected


def test_named_devices_that_exist_are_used():
    assert device("cpu", cuda=True, count=1) == "cpu"
    assert device("CUDA", cuda=True, count=1) == "cuda"
    assert device("cuda:1", cuda=True, count=2) == "cuda:1"
    assert device("mps", mps=True) == "mps"


def test_cuda_requested_without_a_gpu_is_an_error():
    with pytest.raises(InvalidParams, match="Device cuda was requested but no CUDA GPU is available."):
        device("cuda")


def test_a_cuda_index_past_the_last_gpu_is_an_error_naming_the_count():
    with pytest.raises(
        InvalidParams, match=r"Device cuda:3 does not exist; this machine has 2 CUDA device\(s\)."
    ):
        device("cuda:3", cuda=True, count=2)


def test_mps_requested_without_apple_silicon_is_an_error():
    with pytest.raises(InvalidParams, match="Apple MPS is not available"):
        device("mps")


def test_an_unknown_device_name_is_an_error():
    with pytest.raises(InvalidParams, match="Unknown device 'tpu'"):
        device("tpu")


def test_auto_dtype_is_fp16_on_cuda_and_fp32_elsewhere():
    assert choose_dtype("auto", "cuda") == "fp16"
    assert choose_dtype("auto", "cuda:1") == "fp16"
    assert choose_dtype("auto", "cpu") == "fp32"
    assert choose_dtype("auto", "mps") == "fp32"


def test_fp16_on_the_cpu_is_refused():
    with pytest.raises(InvalidParams, match="fp16 is not supported on the CPU"):
        choose_dtype("fp16", "cpu")


def test_bf16_on_a_gpu_without_it_is_refused():
    with pytest.raises(InvalidParams, match="does not support bf16"):
        choose_dtype("bf16", "cuda", bf16_supported=False)


def test_auto_dtype_gives_models_published_in_bf16_bf16_on_a_gpu_that_has_it():
    from kubin.models.registry import MODELS

    preferred = MODELS["kd50-t2v-lite-sft-5s"].dtype
    assert choose_dtype("auto", "cuda", bf16_supported=True, preferred=preferred) == "bf16"
    assert choose_dtype("auto", "cuda", bf16_supported=False, preferred=preferred) == "fp16"
    assert choose_dtype("auto", "cpu", preferred=preferred) == "fp32"
    assert choose_dtype("fp16", "cuda", preferred=preferred) == "fp16"  # what the user asks wins
    assert choose_dtype("auto", "cuda", preferred=MODELS["kd22"].dtype) == "fp16"


def test_explicit_dtypes_that_fit_the_device_are_kept():
    assert choose_dtype("fp32", "cuda") == "fp32"
    assert choose_dtype("bf16", "cpu") == "bf16"
    assert choose_dtype("fp16", "cuda") == "fp16"


def test_an_unknown_dtype_is_an_error():
    with pytest.raises(InvalidParams, match="Unknown dtype 'int8'"):
        choose_dtype("int8", "cpu")


def test_cpu_placement_on_this_machine_is_fp32_float32():
    import torch

    placement = resolve_placement("cpu", "auto")

    assert placement == Placement("cpu", "fp32")
    assert placement.torch_dtype() is torch.float32
