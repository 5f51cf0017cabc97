"""Write PyTorch checkpoints without torch, byte for byte in torch.save's two layouts, for the
reader's tests: tensors with any storage, offset and strides, and hostile objects beside them.

The pickles name ``torch._utils._rebuild_tensor_v2`` and ``torch.FloatStorage`` exactly as
torch's own files do, through stand-in modules registered in ``sys.modules`` only while
pickling.
"""

from __future__ import annotations

import collections
import contextlib
import io
import pickle
import struct
import sys
import types
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C


@dataclass
class Tensor:
    """A tensor as torch stores it: a view (offset, shape, strides) of a flat storage."""

    key: str
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


@dataclass
class _StorageId:
    key: str
    numel: int


def _fake_torch():
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    class FloatStorage:
        pass

    def _rebuild_tensor_v2(*args):  # never called: only its name goes into the pickle
        raise AssertionError

    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = FloatStorage.__name__ = "FloatStorage"
    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    torch.FloatStorage, torch._utils = FloatStorage, utils
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    return torch, utils


@contextlib.contextmanager
def _torch_modules():
    torch, utils = _fake_torch()
    saved = {name: sys.modules.get(name) for name in ("torch", "torch._utils")}
    sys.modules["torch"], sys.modules["torch._utils"] = torch, utils
    try:
        yield torch
    finally:
        for name, module in saved.items():
            if module is None:
                sys.modules.pop(name, None)
            else:
                sys.modules[name] = module


def _pickle_state(obj, storages: dict[str, np.ndarray]) -> bytes:
    with _torch_modules() as torch:

        class TensorPickler(pickle.Pickler):
            def persistent_id(self, value):
                if isinstance(value, _StorageId):
                    return ("storage", torch.FloatStorage, value.key, "cpu", value.numel)
                return None

        def reduce_tensor(t: Tensor):
            return (torch._utils._rebuild_tensor_v2,
                    (_StorageId(t.key, storages[t.key].size), t.offset, t.shape, t.strides,
                     False, collections.OrderedDict()))

        buffer = io.BytesIO()
        pickler = TensorPickler(buffer, protocol=2)
        pickler.dispatch_table = {Tensor: reduce_tensor}
        pickler.dump(obj)
        return buffer.getvalue()


def write_legacy(path: Path, state, storages: dict[str, np.ndarray], *, magic=LEGACY_MAGIC) -> Path:
    """``torch.save(state, path, _use_new_zipfile_serialization=False)``'s layout."""
    body = _pickle_state(state, storages)
    with open(path, "wb") as fh:
        pickle.dump(magic, fh, protocol=2)
        pickle.dump(1001, fh, protocol=2)
        pickle.dump({"protocol_version": 1001, "little_endian": True,
                     "type_sizes": {"short": 2, "int": 4, "long": 4}}, fh, protocol=2)
        fh.write(body)
        pickle.dump(list(storages), fh, protocol=2)
        for values in storages.values():
            fh.write(struct.pack("<q", values.size))
            fh.write(np.ascontiguousarray(values, "<f4").tobytes())
    return path


def write_zip(path: Path, state, storages: dict[str, np.ndarray]) -> Path:
    """``torch.save(state, path)``'s zip layout (torch >= 1.6)."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("archive/data.pkl", _pickle_state(state, storages))
        archive.writestr("archive/byteorder", "little")
        archive.writestr("archive/version", "3\n")
        for key, values in storages.items():
            archive.writestr(f"archive/data/{key}", np.ascontiguousarray(values, "<f4").tobytes())
    return path


class RunsCommand:
    """Pickles as a call of ``os.system(command)``: what a hostile checkpoint holds."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))
