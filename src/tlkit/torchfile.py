"""Read a PyTorch checkpoint (``.pth``/``.pt``) into NumPy arrays, without torch and without
running anything the file holds.

A PyTorch checkpoint is a pickle, and a pickle is a program: unpickled by plain ``pickle`` or
``torch.load(weights_only=False)``, a file can call ``os.system``. This reader unpickles with
a :class:`pickle.Unpickler` whose ``find_class`` resolves exactly five names, each to a function
of this module that only records what it is given: ``collections.OrderedDict``,
``torch._utils._rebuild_tensor_v2`` and ``torch._utils._rebuild_parameter`` (a tensor's
storage, offset, shape and strides), and ``torch.<Dtype>Storage`` (a dtype tag). Any other
global (``os.system``, ``builtins.eval``, a module class) is refused before it is looked up,
so nothing in the file can run. Tensors are then cut from the raw storages with their saved
strides (a transposed or sliced tensor is stored non-contiguous; read flat it would be
scrambled), after checking that every element lies inside its storage.

Both of PyTorch's layouts are read: the legacy stream (``torch.save`` before 1.6, and
``_use_new_zipfile_serialization=False``: magic number, protocol version, system info, the
object, the storage keys, then each storage as ``int64 numel`` and its bytes) and the zip
archive (``archive/data.pkl`` and ``archive/data/<key>``).
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.errors import UserError

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL = 1001

#: ``torch.<name>`` storage classes and the dtype of their elements.
STORAGE_DTYPES = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class UnsafeCheckpointError(UserError):
    """A checkpoint that is not a plain state dict of tensors (it may try to run code)."""


class _Refused(pickle.UnpicklingError):
    """The file asked for something a state dict never needs (and it was not done)."""


@dataclass(frozen=True)
class _StorageType:
    name: str

    @property
    def dtype(self) -> np.dtype:
        return STORAGE_DTYPES[self.name]


@dataclass(frozen=True)
class _StorageRef:
    key: str
    dtype: np.dtype
    numel: int


@dataclass(frozen=True)
class _TensorRef:
    storage: _StorageRef
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


def _rebuild_tensor(storage, offset, shape, strides, *_ignored) -> _TensorRef:
    """Stands in for ``torch._utils._rebuild_tensor_v2``: records, builds nothing."""
    if not isinstance(storage, _StorageRef):
        raise pickle.UnpicklingError("a tensor whose storage is not a storage reference")
    if not (_ints(shape) and _ints(strides) and len(shape) == len(strides)):
        raise pickle.UnpicklingError("a tensor with a malformed shape or strides")
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise pickle.UnpicklingError("a tensor with a malformed storage offset")
    return _TensorRef(storage, offset, tuple(shape), tuple(strides))


def _rebuild_parameter(data, requires_grad=None, backward_hooks=None, *_ignored) -> _TensorRef:
    """Stands in for ``torch._utils._rebuild_parameter``: an ``nn.Parameter`` is its tensor."""
    if not isinstance(data, _TensorRef):
        raise pickle.UnpicklingError("a parameter that does not wrap a tensor")
    return data


def _ints(values) -> bool:
    return isinstance(values, tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in values
    )


_ALLOWED = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
}


class _StateDictUnpickler(pickle.Unpickler):
    """Resolves only the globals a state dict of tensors needs; everything else is refused."""

    def find_class(self, module: str, name: str):
        if (module, name) in _ALLOWED:
            return _ALLOWED[(module, name)]
        if module == "torch" and name in STORAGE_DTYPES:
            return _StorageType(name)
        raise _Refused(f"refused to load the global {module}.{name}")

    def persistent_load(self, pid):
        # ('storage', storage type, key, location, numel[, view metadata])
        if not (isinstance(pid, tuple) and len(pid) in (5, 6) and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unexpected persistent id {pid!r:.80}")
        _, storage_type, key, _location, numel = pid[:5]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError("a storage of an unknown type")
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0:
            raise pickle.UnpicklingError("a malformed storage reference")
        if len(pid) == 6 and pid[5] is not None:
            raise pickle.UnpicklingError("storage views are not supported")
        return _StorageRef(key, storage_type.dtype, numel)


def _unpickle(stream) -> Any:
    return _StateDictUnpickler(stream).load()


def _plain_unpickle(stream) -> Any:
    """The legacy header's pickles (ints, a dict of ints): no global at all is allowed."""

    class _NoGlobals(pickle.Unpickler):
        def find_class(self, module, name):
            raise _Refused(f"refused to load the global {module}.{name}")

    return _NoGlobals(stream).load()


def read_state_dict(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read a PyTorch state dict (``{name: tensor}``) from ``path`` as NumPy arrays.

    A checkpoint that wraps the state dict (``{"state_dict": {...}}`` or ``{"model": {...}}``)
    is unwrapped. Nothing in the file runs: see the module docstring.

    Raises:
        UnsafeCheckpointError: the file refers to anything but tensors and their storages
            (a pickled model class, a function call), or holds no state dict (exit code 2).
        UserError: the file is not a PyTorch checkpoint, or is truncated or inconsistent.
    """
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            head = fh.read(4)
            fh.seek(0)
            if head.startswith(b"PK"):
                refs, storages = _read_zip(fh)
            else:
                refs, storages = _read_legacy(fh)
    except _Refused as exc:
        raise UnsafeCheckpointError(
            f"{path} is not a plain PyTorch state dict and was not loaded ({exc}); tlkit reads "
            "only tensors from a .pth file and runs nothing in it"
        ) from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - whatever a malformed file makes the parser raise
        raise UserError(
            f"cannot read {path} as a PyTorch checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    state = _state_dict_of(refs, path)
    return {name: _materialise(ref, storages, name, path) for name, ref in state.items()}


def _read_legacy(fh) -> tuple[Any, dict[str, np.ndarray]]:
    if _plain_unpickle(fh) != LEGACY_MAGIC:
        raise ValueError("no PyTorch magic number (not a .pth file)")
    if _plain_unpickle(fh) != LEGACY_PROTOCOL:
        raise ValueError("an unsupported legacy protocol version")
    sys_info = _plain_unpickle(fh)
    if not isinstance(sys_info, dict) or sys_info.get("little_endian") is not True:
        raise ValueError("a big-endian or unknown checkpoint layout")
    refs = _unpickle(fh)
    keys = _plain_unpickle(fh)
    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise ValueError("malformed storage keys")
    dtypes = {ref.storage.key: ref.storage.dtype for ref in _tensor_refs(refs)}
    storages = {}
    for key in keys:
        (numel,) = struct.unpack("<q", _read_exact(fh, 8))
        dtype = dtypes.get(key, np.dtype("u1"))
        if numel < 0:
            raise ValueError(f"storage {key} has a negative size")
        storages[key] = np.frombuffer(_read_exact(fh, numel * dtype.itemsize), dtype)
    return refs, storages


def _read_exact(fh, size: int) -> bytes:
    data = fh.read(size)
    if len(data) != size:
        raise ValueError("the file is truncated")
    return data


def _read_zip(fh) -> tuple[Any, dict[str, np.ndarray]]:
    with zipfile.ZipFile(fh) as archive:
        names = archive.namelist()
        pickles = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pickles) != 1:
            raise ValueError("no data.pkl in the archive (not a PyTorch checkpoint)")
        prefix = pickles[0][: -len("data.pkl")]
        order = f"{prefix}byteorder"
        if order in names and archive.read(order).strip() != b"little":
            raise ValueError("a big-endian checkpoint")
        refs = _unpickle(io.BytesIO(archive.read(pickles[0])))
        storages = {}
        for ref in _tensor_refs(refs):
            key = ref.storage.key
            if key not in storages:
                storages[key] = np.frombuffer(archive.read(f"{prefix}data/{key}"), ref.storage.dtype)
    return refs, storages


def _tensor_refs(obj) -> list[_TensorRef]:
    if isinstance(obj, _TensorRef):
        return [obj]
    if isinstance(obj, dict):
        return [ref for value in obj.values() for ref in _tensor_refs(value)]
    return []


def _state_dict_of(obj, path: Path) -> dict[str, _TensorRef]:
    for candidate in (obj, *(obj.get(k) for k in ("state_dict", "model") if isinstance(obj, dict))):
        if (
            isinstance(candidate, dict)
            and candidate
            and all(isinstance(k, str) and isinstance(v, _TensorRef) for k, v in candidate.items())
        ):
            return dict(candidate)
    raise UnsafeCheckpointError(
        f"{path} holds no state dict of tensors (a dict of names to tensors, or one under "
        "'state_dict' or 'model'); tlkit reads only state dicts"
    )


def _materialise(ref: _TensorRef, storages: dict, name: str, path: Path) -> np.ndarray:
    data = storages.get(ref.storage.key)
    if data is None:
        raise UserError(f"{path}: tensor {name} refers to a storage the file does not hold")
    if data.dtype != ref.storage.dtype or data.size < ref.storage.numel:
        raise UserError(f"{path}: the storage of tensor {name} is shorter than declared")
    try:  # checked again: BUILD opcodes can rewrite an object's fields after it was made
        _rebuild_tensor(ref.storage, ref.offset, ref.shape, ref.strides)
    except pickle.UnpicklingError as exc:
        raise UserError(f"{path}: tensor {name}: {exc}") from None
    if 0 in ref.shape:
        return np.zeros(ref.shape, data.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.shape, ref.strides, strict=True))
    if last >= data.size:
        raise UserError(f"{path}: tensor {name} reaches past the end of its storage")
    item = data.itemsize
    view = np.lib.stride_tricks.as_strided(
        data[ref.offset :], shape=ref.shape, strides=[s * item for s in ref.strides],
        writeable=False,
    )
    return np.array(view, copy=True)
