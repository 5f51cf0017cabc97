"""The PyTorch checkpoint reader: strided tensors in both of torch's layouts, and files that try
to run code, which must be refused with nothing run."""

from __future__ import annotations

import collections

import numpy as np
import pytest

from tests.torch_writer import RunsCommand, Tensor, write_legacy, write_zip
from tlkit.errors import UserError
from tlkit.torchfile import UnsafeCheckpointError, read_state_dict

WRITERS = {"legacy": write_legacy, "zip": write_zip}


def _storages():
    return {"0": np.arange(24, dtype=np.float32), "1": np.arange(100, 106, dtype=np.float32)}


def _state():
    return collections.OrderedDict(
        [
            # a 2x3 tensor stored transposed: column-major strides, as torch saves a .t()
            ("conv.weight", Tensor("0", 0, (2, 3), (1, 2))),
            # a 4-d kernel at an offset into the same storage, non-contiguous
            ("conv.kernel", Tensor("0", 6, (2, 3, 1, 2), (1, 2, 6, 6))),
            ("bn.bias", Tensor("1", 2, (3,), (1,))),
            ("scalar", Tensor("1", 5, (), ())),
        ]
    )


@pytest.mark.parametrize("layout", WRITERS)
def test_tensors_are_read_with_their_strides(tmp_path, layout):
    path = WRITERS[layout](tmp_path / "w.pth", _state(), _storages())
    state = read_state_dict(path)
    flat = np.arange(24, dtype=np.float32)
    np.testing.assert_array_equal(state["conv.weight"], flat[:6].reshape(3, 2).T)
    expected = np.lib.stride_tricks.as_strided(flat[6:], (2, 3, 1, 2), (4, 8, 24, 24))
    np.testing.assert_array_equal(state["conv.kernel"], expected)
    np.testing.assert_array_equal(state["bn.bias"], [102, 103, 104])
    assert state["scalar"].shape == () and state["scalar"] == 105
    assert list(state) == ["conv.weight", "conv.kernel", "bn.bias", "scalar"]
    # read flat, the transposed tensor would be another matrix: the strides matter
    assert not np.array_equal(state["conv.weight"], flat[:6].reshape(2, 3))


@pytest.mark.parametrize("layout", WRITERS)
def test_a_wrapped_state_dict_is_unwrapped(tmp_path, layout):
    path = WRITERS[layout](tmp_path / "w.pth", {"state_dict": _state(), "epoch": 3}, _storages())
    assert set(read_state_dict(path)) == set(_state())


@pytest.mark.parametrize("layout", WRITERS)
@pytest.mark.parametrize("where", ["a value", "the whole object", "a nested value"])
def test_a_checkpoint_that_calls_os_system_is_refused_and_runs_nothing(tmp_path, layout, where):
    marker = tmp_path / "ran"
    evil = RunsCommand(f"touch {marker}")
    state = _state()
    if where == "a value":
        state["conv.bias"] = evil
    elif where == "a nested value":
        state = {"state_dict": state, "optimizer": {"hook": evil}}
    else:
        state = evil
    path = WRITERS[layout](tmp_path / "evil.pth", state, _storages())
    with pytest.raises(UnsafeCheckpointError) as err:
        read_state_dict(path)
    assert err.value.exit_code == 2
    assert str(path) in str(err.value) and "system" in str(err.value)
    assert not marker.exists()


def test_a_hostile_legacy_header_is_refused_before_anything_else(tmp_path):
    marker = tmp_path / "ran"
    path = write_legacy(tmp_path / "evil.pth", _state(), _storages(),
                        magic=RunsCommand(f"touch {marker}"))
    with pytest.raises(UnsafeCheckpointError):
        read_state_dict(path)
    assert not marker.exists()


def test_a_tensor_reaching_past_its_storage_is_an_error(tmp_path):
    state = {"w": Tensor("0", 20, (2, 3), (3, 1))}  # needs elements up to 25 of 24
    path = write_legacy(tmp_path / "w.pth", state, _storages())
    with pytest.raises(UserError, match="past the end"):
        read_state_dict(path)


def test_a_truncated_file_and_a_non_checkpoint_are_clear_errors(tmp_path):
    good = write_legacy(tmp_path / "w.pth", _state(), _storages()).read_bytes()
    (tmp_path / "cut.pth").write_bytes(good[: len(good) - 10])
    with pytest.raises(UserError, match="truncated"):
        read_state_dict(tmp_path / "cut.pth")
    (tmp_path / "text.pth").write_text("not a checkpoint")
    with pytest.raises(UserError, match="cannot read"):
        read_state_dict(tmp_path / "text.pth")
    with pytest.raises(UserError, match="no state dict"):
        read_state_dict(write_legacy(tmp_path / "list.pth", [1, 2], {}))


def test_the_real_efficientnet_lite0_file_reads(lite0_pth):
    state = read_state_dict(lite0_pth)
    kernels = [k for k, v in state.items() if v.ndim == 4]
    # stem, 16 depthwise, 16 project, 15 expand and the head conv; BN counters included
    assert len(state) == 296 and len(kernels) == 49
    assert state["_conv_stem.weight"].shape == (32, 3, 3, 3)
    assert state["_fc.weight"].shape == (1000, 1280)
    assert all(np.isfinite(v).all() for v in state.values())
