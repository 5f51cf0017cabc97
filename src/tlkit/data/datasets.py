"""In-memory sources: scikit-learn's digits, Debian's Fashion-MNIST files, tensorflow_datasets.

None of them downloads anything: a set that is not on this machine is a clear error that says
how to get it here.
"""

from __future__ import annotations

import glob
import gzip
import os
import subprocess
from pathlib import Path

import numpy as np

from tlkit.data.bundle import DataBundle, DataReport, Split
from tlkit.data.config import DataConfig
from tlkit.data.splits import carve
from tlkit.errors import UnknownNameError, UserError

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
#: Folders searched for Fashion-MNIST's idx files, after $TLKIT_FASHION_MNIST_DIR.
FASHION_MNIST_DIRS = ("/usr/share/dataset-fashion-mnist", "/usr/share/fashion-mnist")


def load_builtin(name: str, config: DataConfig, *, seed: int = 0) -> DataBundle:
    """``builtin:digits`` (scikit-learn, 1,797 8x8 images) or ``builtin:fashion_mnist``."""
    loaders = {"digits": _digits, "fashion_mnist": _fashion_mnist}
    key = name.strip().lower().replace("-", "_")
    if key not in loaders:
        raise UnknownNameError("builtin data set", name, loaders)
    return loaders[key](config, seed)


def _digits(config: DataConfig, seed: int) -> DataBundle:
    from sklearn.datasets import load_digits

    digits = load_digits()
    gray = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    source = "builtin:digits"
    everything = _in_memory(gray, digits.target, source)
    train, val, test = carve(
        everything, val_split=config.val_split, test_split=config.test_split, seed=seed
    )
    report = DataReport(source=source, split_mode="stratified")
    report.notes.append("scikit-learn digits: 8x8 images scaled from 0..16 to 0..255")
    return DataBundle([str(i) for i in range(10)], train, val, test, report, source)


def _in_memory(images: np.ndarray, labels, source: str, offset: int = 0) -> Split:
    """Grayscale ``(N, H, W)`` or RGB ``(N, H, W, 3)`` uint8 as a split with origins."""
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    elif images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    n = len(images)
    origins = [f"{source}#{offset + i}" for i in range(n)]
    return Split(labels=np.asarray(labels, np.int64), images=images, origins=origins)


def _fashion_mnist(config: DataConfig, seed: int) -> DataBundle:
    folder = _find_fashion_mnist()
    source = "builtin:fashion_mnist"
    train_all = _in_memory(
        _read_idx(folder, "train-images-idx3-ubyte"),
        _read_idx(folder, "train-labels-idx1-ubyte"),
        f"{source}:train",
    )
    report = DataReport(source=source, split_mode="official test, val carved from train")
    report.notes.append(f"Fashion-MNIST read from {folder}")
    train, val, _ = carve(train_all, val_split=config.val_split, test_split=0.0, seed=seed)
    test = Split.empty(in_memory=True)
    if config.test_split > 0:
        test = _in_memory(
            _read_idx(folder, "t10k-images-idx3-ubyte"),
            _read_idx(folder, "t10k-labels-idx1-ubyte"),
            f"{source}:test",
        )
        report.notes.append("test_split > 0: the official 10,000-image test split is the test set")
    return DataBundle(list(FASHION_MNIST_CLASSES), train, val, test, report, source)


def _find_fashion_mnist() -> Path:
    candidates = [os.environ.get("TLKIT_FASHION_MNIST_DIR", ""), *FASHION_MNIST_DIRS]
    candidates += _dpkg_dirs("dataset-fashion-mnist")
    for folder in filter(None, candidates):
        if glob.glob(os.path.join(folder, "train-images-idx3-ubyte*")):
            return Path(folder)
    raise UserError(
        "builtin:fashion_mnist needs the Fashion-MNIST idx files (train-images-idx3-ubyte.gz, "
        "...) on this machine; none found in "
        f"{', '.join(filter(None, candidates))}. Install Debian's package "
        "(apt-get install dataset-fashion-mnist) or put the four files of "
        "github.com/zalandoresearch/fashion-mnist in a folder named by $TLKIT_FASHION_MNIST_DIR."
    )


def _dpkg_dirs(package: str) -> list[str]:
    try:
        listing = subprocess.run(
            ["dpkg", "-L", package], capture_output=True, text=True, timeout=10, check=False
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return sorted({os.path.dirname(p) for p in listing.splitlines() if "idx3-ubyte" in p})


def _read_idx(folder: Path, stem: str) -> np.ndarray:
    """An idx file (the MNIST format), gzipped or not."""
    for name, opener in ((stem + ".gz", gzip.open), (stem, open)):
        path = folder / name
        if path.exists():
            with opener(path, "rb") as fh:
                data = fh.read()
            ndim = data[3]
            shape = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
            return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(shape)
    raise UserError(f"Fashion-MNIST file {stem}[.gz] is missing from {folder}")


def tfds_data_dir(config: DataConfig) -> Path:
    """``data.tfds_data_dir``, else ``$TFDS_DATA_DIR``, else ``~/tensorflow_datasets``."""
    folder = config.tfds_data_dir or os.environ.get("TFDS_DATA_DIR") or "~/tensorflow_datasets"
    return Path(os.path.expanduser(folder))


def parse_tfds_source(spec: str) -> tuple[str, str | None]:
    """``NAME[/CONFIG][:VERSION][:SPLIT]`` into ``(name with config and version, split)``."""
    parts = spec.strip().split(":")
    name, rest = parts[0], parts[1:]
    if rest and _looks_like_version(rest[0]):
        name, rest = f"{name}:{rest[0]}", rest[1:]
    if not name:
        raise UserError("tfds source needs a name, e.g. tfds:tf_flowers or tfds:mnist:train[:10%]")
    return name, ":".join(rest) or None


def _looks_like_version(text: str) -> bool:
    pieces = text.split(".")
    return len(pieces) == 3 and all(p == "*" or p.isdigit() for p in pieces)


def load_tfds(spec: str, config: DataConfig, *, seed: int = 0) -> DataBundle:
    """A tensorflow_datasets set prepared on this machine, materialized into memory.

    ``tfds:NAME`` uses ``data.tfds_split_map`` when given; otherwise ``train``, the set's
    ``validation`` split when it has one (else val is carved from train), and its ``test`` split
    when ``data.test_split > 0``. ``tfds:NAME:SPLIT`` (e.g. ``train[:20%]``) takes one split and
    divides it per class. Never downloads.

    Raises:
        UserError: The set is not prepared in the data folder (says how to prepare it).
    """
    name, split = parse_tfds_source(spec)
    data_dir = tfds_data_dir(config)
    base = name.split(":")[0]
    if not list((data_dir / base).glob("**/dataset_info.json")):
        raise UserError(
            f"tensorflow_datasets set {base!r} is not prepared in {data_dir} (tlkit never "
            f"downloads). On a machine with network run `tfds build {base.split('/')[0]} "
            f'--data_dir {data_dir}` (or python -c "import tensorflow_datasets as tfds; '
            f"tfds.builder('{base}', data_dir='{data_dir}').download_and_prepare()\"), then copy "
            f"{data_dir / base.split('/')[0]} here, or set data.tfds_data_dir / $TFDS_DATA_DIR "
            "to where it is."
        )
    builder = _tfds_builder(name, data_dir)
    available = set(builder.info.splits.keys())
    roles = _tfds_roles(split, config, available)
    source = f"tfds:{spec}"
    report = DataReport(source=source)
    budget = [config.max_in_memory_mb * 2**20]
    splits = {role: _materialize(builder, s, source, budget, report) for role, s in roles.items()}
    names = _tfds_class_names(builder)
    train = splits["train"]
    val, test = splits.get("val"), splits.get("test")
    modes = [f"tfds {', '.join(f'{r}={s}' for r, s in roles.items())}"]
    if val is None:
        test_frac = config.test_split if test is None else 0.0
        train, val, carved = carve(
            train, val_split=config.val_split, test_split=test_frac, seed=seed
        )
        test = test if test is not None else carved
        modes.append("val carved from train")
    report.split_mode = ", ".join(modes)
    if test is None:
        test = Split.empty(in_memory=True)
    names = names or [str(i) for i in range(int(train.labels.max()) + 1)]
    return DataBundle(names, train, val, test, report, source)


def _tfds_builder(name: str, data_dir: Path):
    import tensorflow_datasets as tfds

    try:
        builder = tfds.builder(name, data_dir=str(data_dir))
    except Exception as exc:  # tfds raises many types for unknown or broken sets
        raise UserError(f"tensorflow_datasets cannot open {name!r} in {data_dir}: {exc}") from None
    if not builder.is_prepared():
        raise UserError(
            f"tensorflow_datasets set {name!r} in {data_dir} is not fully prepared; "
            f"run `tfds build {name}` on a machine with network and copy it again"
        )
    return builder


def _tfds_roles(split: str | None, config: DataConfig, available: set[str]) -> dict[str, str]:
    if split:
        return {"train": split}
    if config.tfds_split_map:
        roles = dict(config.tfds_split_map)
        if "train" not in roles:
            raise UserError("data.tfds_split_map needs a 'train' entry")
        return roles
    if "train" not in available:
        raise UserError(
            f"the tfds set has no 'train' split (it has {', '.join(sorted(available))}); "
            "name one, e.g. tfds:NAME:SPLIT, or set data.tfds_split_map"
        )
    roles = {"train": "train"}
    if "validation" in available:
        roles["val"] = "validation"
    if config.test_split > 0 and "test" in available:
        roles["test"] = "test"
    return roles


def _tfds_keys(builder) -> tuple[str, str]:
    keys = builder.info.supervised_keys
    if keys and len(keys) == 2 and all(isinstance(k, str) for k in keys):
        return keys[0], keys[1]
    return "image", "label"


def _tfds_class_names(builder) -> list[str] | None:
    import tensorflow_datasets as tfds

    try:
        label = builder.info.features[_tfds_keys(builder)[1]]
    except (KeyError, TypeError):
        return None
    return list(label.names) if isinstance(label, tfds.features.ClassLabel) else None


def _materialize(builder, split: str, source: str, budget: list, report) -> Split:
    """Decode a tfds split into uint8 RGB arrays, stopping when the memory budget runs out."""
    image_key, label_key = _tfds_keys(builder)
    try:
        ds = builder.as_dataset(split=split, shuffle_files=False)
    except Exception as exc:  # bad split names surface as assorted tfds errors
        raise UserError(f"{source}: cannot read split {split!r}: {exc}") from None
    images, labels = [], []
    for example in ds.as_numpy_iterator():
        image, label = example[image_key], example[label_key]
        if image.ndim == 2 or image.shape[-1] == 1:
            image = np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=-1)
        image = image[..., :3].astype(np.uint8, copy=False)
        if budget[0] < image.nbytes:
            report.notes.append(
                f"{split}: stopped after {len(images)} examples, data.max_in_memory_mb reached; "
                "raise it, or export the images to a folder for larger sets"
            )
            break
        budget[0] -= image.nbytes
        images.append(image)
        labels.append(int(label))
    if not images:
        return Split.empty(in_memory=True)
    if len({im.shape for im in images}) == 1:
        images = np.stack(images)
    origins = [f"{source}:{split}#{i}" for i in range(len(labels))]
    return Split(labels=np.asarray(labels, np.int64), images=images, origins=origins)
