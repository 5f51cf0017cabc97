"""Where ImageNet weights live: Keras' file cache, keras.applications' official files.

Official files come through Keras' cache (``$KERAS_HOME/models``, default ``~/.keras/models``)
with their md5 hashes checked; offline, a missing file is a clear error that names the file
and the folder, never a silent fall-back to random weights.
"""

from __future__ import annotations

import hashlib
import os
import socket
from dataclasses import dataclass
from pathlib import Path

from tlkit.errors import WeightsError


@dataclass(frozen=True)
class OfficialWeights:
    """Where keras.applications keeps the ImageNet weights for an architecture.

    The registry entry of an architecture carries one (``ModelInfo.official_weights``); the
    functions here take it, so they never look an architecture up.

    Attributes:
        top: (file name, md5 hash) of the file with the classifier.
        notop: (file name, md5 hash) of the file without it.
        base_url: Folder URL the file names are appended to.
        cache_subdir: Keras cache folder (``~/.keras/<cache_subdir>``).
        by_position: The files' layers are matched to the model's by order, as
            keras.applications loads them (files whose layer names come from the saving
            session's counters: ``conv2d_17``); otherwise by name.

    The hashes are md5 or sha256, as Keras publishes them (told apart by length, as
    ``keras.utils.get_file`` does); None where Keras publishes none (MobileNetV2).
    """

    top: tuple[str, str | None]
    notop: tuple[str, str | None]
    base_url: str
    cache_subdir: str = "models"
    by_position: bool = False

    def file(self, include_top: bool) -> tuple[str, str | None]:
        return self.top if include_top else self.notop

    def describe(self) -> str:
        """Where the weights come from, in a few words (listings, docs)."""
        return "keras.applications file (download)"

    def available_offline(self) -> bool:
        """Whether a file is in Keras' cache already (its hash is checked when loaded)."""
        folder = keras_cache_dir() / self.cache_subdir
        return any((folder / name).is_file() for name, _ in (self.top, self.notop))

    def locate(self, include_top: bool, *, model_id: str, download: bool = True) -> Path:
        """The file in Keras' cache (md5 checked), downloaded there unless offline."""
        fname, md5 = self.file(include_top)
        url = self.base_url + fname
        target = keras_cache_dir() / self.cache_subdir / fname
        algorithm = hash_algorithm(md5)
        checksum = f" ({algorithm} {md5})" if md5 else ""
        place_it = (
            f"Download {url} and place it at {target}{checksum}; or train from scratch with "
            "--weights none; or pretrain on a larger labelled set you have and transfer from it "
            f"(`tlkit pretrain --backbone {model_id} --data DATA`, then --weights RUN_DIR; "
            "docs/transfer.md)."
        )
        if target.exists():
            if md5 and file_digest(target, algorithm) != md5:
                raise WeightsError(
                    f"{target} is corrupt ({algorithm} differs from {md5}). {place_it}"
                )
            return target
        if not download or offline():
            raise WeightsError(
                f"ImageNet weights for {model_id} are not on this machine. {place_it}"
            )
        try:
            return _download(fname, url, md5=md5, cache_subdir=self.cache_subdir)
        except Exception as exc:  # noqa: BLE001 - any network failure means the same to the user
            raise WeightsError(
                f"ImageNet weights for {model_id} are not on this machine and could not be "
                f"downloaded ({type(exc).__name__}: {exc}). {place_it}"
            ) from None


# --------------------------------------------------------------------------- official files


def keras_cache_dir() -> Path:
    """Keras' cache folder (``$KERAS_HOME`` or ``~/.keras``)."""
    return Path(os.environ.get("KERAS_HOME", Path.home() / ".keras")).expanduser()


def offline() -> bool:
    """``TLKIT_OFFLINE=1``: never try to download weights."""
    return os.environ.get("TLKIT_OFFLINE") == "1"


def _download(fname: str, url: str, *, md5: str | None, cache_subdir: str) -> Path:
    """``keras.utils.get_file`` with a timeout; raises whatever the network raises."""
    import keras  # only a download needs Keras: the registry's facts hold OfficialWeights

    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(float(os.environ.get("TLKIT_DOWNLOAD_TIMEOUT", "30")))
    try:
        return Path(
            keras.utils.get_file(
                fname, url, cache_subdir=cache_subdir, file_hash=md5,
                cache_dir=str(keras_cache_dir()),
            )
        )
    finally:
        socket.setdefaulttimeout(previous)


def hash_algorithm(digest: str | None) -> str:
    """``sha256`` for a 64-digit hash, else ``md5`` (``keras.utils.get_file``'s rule)."""
    return "sha256" if digest and len(digest) == 64 else "md5"


def file_digest(path: Path, algorithm: str) -> str:
    """The hex digest of a file's bytes (read a megabyte at a time)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
