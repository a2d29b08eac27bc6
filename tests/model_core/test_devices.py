import pytest
import torch

from model_core.devices import pick_device, pick_dtype
from model_core.errors import InvalidInputError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")
no_cuda = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
with_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="this machine has no CUDA GPU")


@no_cuda
def test_auto_device_is_cpu_without_cuda():
    assert pick_device("auto") == CPU
    assert pick_device() == CPU


@with_cuda
def test_auto_device_is_cuda_when_available():
    assert pick_device("auto") == CUDA
    assert pick_device("cuda:0") == torch.device("cuda", 0)


@pytest.mark.parametrize(("available", "expected"), [(True, CUDA), (False, CPU)])
def test_auto_device_follows_cuda_availability(monkeypatch, available, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert pick_device("auto") == expected


def test_cpu_by_name():
    assert pick_device("cpu") == CPU


@no_cuda
@pytest.mark.parametrize("name", ["cuda", "cuda:1"])
def test_cuda_without_gpu_is_refused_suggesting_cpu(name):
    with pytest.raises(InvalidInputError, match="use 'cpu'") as caught:
        pick_device(name)
    assert repr(name) in str(caught.value)


@pytest.mark.parametrize("name", ["nonsense", "", "cuda:x", "gpu"])
def test_unknown_device_is_refused(name):
    with pytest.raises(InvalidInputError, match="'auto', 'cpu' or 'cuda") as caught:
        pick_device(name)
    assert f"Unknown device {name!r}" in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_auto_dtype_on_cpu_is_float32():
    assert pick_dtype("auto", CPU) is torch.float32


@pytest.mark.parametrize(("bf16", "expected"), [(True, torch.bfloat16), (False, torch.float16)])
def test_auto_dtype_on_cuda_is_bfloat16_where_supported(monkeypatch, bf16, expected):
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    assert pick_dtype("auto", CUDA) is expected


@with_cuda
def test_auto_dtype_on_this_gpu_is_half_precision():
    assert pick_dtype("auto", pick_device("auto")) in (torch.bfloat16, torch.float16)


@pytest.mark.parametrize(
    ("name", "dtype"), [("float32", torch.float32), ("bfloat16", torch.bfloat16), ("float16", torch.float16)]
)
@pytest.mark.parametrize("device", [CPU, CUDA])
def test_dtype_names_map_to_their_dtypes(name, dtype, device):
    assert pick_dtype(name, device) is dtype


@pytest.mark.parametrize("name", ["fp16", "float64", "Float32", ""])
def test_unknown_dtype_is_refused_naming_the_choices(name):
    with pytest.raises(InvalidInputError, match=f"Unknown dtype {name!r}") as caught:
        pick_dtype(name, CPU)
    assert all(choice in str(caught.value) for choice in ("'auto'", "float32", "bfloat16", "float16"))
