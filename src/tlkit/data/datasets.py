"""In-memory sources: scikit-learn's digits, IDX files (Fashion-MNIST's), tensorflow_datasets.

None of them downloads anything: a set that is not on this machine is a clear error that says
how to get it here. Also here: the class selection every source applies to the pool that train
and carved val/test come from (``data.classes``, ``data.max_per_class``; :func:`pool_indices`).
"""

from __future__ import annotations

import glob
import os
import subprocess
from pathlib import Path

import numpy as np

from tlkit.data.bundle import DataBundle, DataReport, Split
from tlkit.data.config import DataConfig
from tlkit.data.idx import find_idx_files, label_names, read_class_names, read_idx_pair
from tlkit.data.splits import carve
from tlkit.errors import UnknownNameError, UserError

FASHION_MNIST_CLASSES = [
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
    "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot",
]  # fmt: skip
#: Folders searched for Fashion-MNIST's idx files, after $TLKIT_FASHION_MNIST_DIR (the first is
#: where Debian's dataset-fashion-mnist package puts them).
FASHION_MNIST_DIRS = (
    "/usr/share/datasets/fashion-mnist",
    "/usr/share/dataset-fashion-mnist",
    "/usr/share/fashion-mnist",
)


def load_builtin(name: str, config: DataConfig, *, seed: int = 0) -> DataBundle:
    """``builtin:digits`` (scikit-learn, 1,797 8x8 images) or ``builtin:fashion_mnist``."""
    loaders = {"digits": _digits, "fashion_mnist": _fashion_mnist}
    key = name.strip().lower().replace("-", "_")
    if key not in loaders:
        raise UnknownNameError("builtin data set", name, loaders)
    return loaders[key](config, seed)


def wanted_labels(names: list[str], config: DataConfig) -> np.ndarray | None:
    """The label indices ``data.classes`` keeps, in the source's order; ``None`` keeps all.

    Raises:
        UnknownNameError: A name in ``data.classes`` that the source does not have.
    """
    if config.classes is None:
        return None
    index = {name: i for i, name in enumerate(names)}
    for name in config.classes:
        if name not in index:
            raise UnknownNameError("data.classes name", name, names)
    return np.asarray(sorted(index[name] for name in config.classes), np.int64)


def pool_indices(
    labels: np.ndarray, names: list[str], config: DataConfig, seed: int, report: DataReport
) -> np.ndarray | None:
    """Which examples of a pool (what train and any carved val/test come from) to keep.

    Drops classes outside ``data.classes``, then keeps a seeded random ``data.max_per_class``
    examples of each class (all of a smaller class). The choice for a class depends only on
    the seed and that class, and the kept indices are sorted, so source order is kept.

    Returns:
        Sorted indices into ``labels``, or ``None`` when both settings are off.
    """
    wanted, cap = wanted_labels(names, config), config.max_per_class
    if wanted is None and cap is None:
        return None
    labels = np.asarray(labels, np.int64)
    keep = np.arange(len(labels)) if wanted is None else np.flatnonzero(np.isin(labels, wanted))
    if cap is None:
        return keep
    keep = keep[np.argsort(labels[keep], kind="stable")]
    classes = np.arange(len(names)) if wanted is None else wanted
    starts = np.searchsorted(labels[keep], classes, side="left")
    stops = np.searchsorted(labels[keep], classes, side="right")
    chosen, before = [], []
    for cls, start, stop in zip(classes, starts, stops, strict=True):
        members = keep[start:stop]
        before.append(len(members))
        if len(members) > cap:
            members = np.random.default_rng([seed, int(cls)]).choice(members, cap, replace=False)
        chosen.append(members)
    after = [len(c) for c in chosen]
    report.notes.append(
        f"capped at {cap} images per class (seed {seed}), before any val/test split was carved: "
        f"{_span(before)} -> {_span(after)} per class, {sum(before):,} -> {sum(after):,} in all"
    )
    return np.sort(np.concatenate(chosen)) if chosen else keep[:0]


def _span(counts: list[int]) -> str:
    low, high = min(counts, default=0), max(counts, default=0)
    return f"{low:,}" if low == high else f"{low:,}..{high:,}"


def take_pool(
    split: Split, names: list[str], config: DataConfig, seed: int, report: DataReport
) -> Split:
    """``split`` reduced by :func:`pool_indices` (unchanged when nothing is dropped)."""
    index = pool_indices(split.labels, names, config, seed, report)
    return split if index is None else split.subset(index)


def _digits(config: DataConfig, seed: int) -> DataBundle:
    from sklearn.datasets import load_digits

    digits = load_digits()
    gray = np.round(digits.images * (255.0 / 16.0)).clip(0, 255).astype(np.uint8)
    source = "builtin:digits"
    names = [str(i) for i in range(10)]
    report = DataReport(source=source, split_mode="stratified")
    report.notes.append("scikit-learn digits: 8x8 images scaled from 0..16 to 0..255")
    index = pool_indices(digits.target, names, config, seed, report)
    everything = _in_memory(gray, digits.target, source, index)
    train, val, test = carve(
        everything, val_split=config.val_split, test_split=config.test_split, seed=seed
    )
    return DataBundle(names, train, val, test, report, source)


def _in_memory(images: np.ndarray, labels, source: str, index=None) -> Split:
    """Grayscale ``(N, H, W)`` or RGB ``(N, H, W, 3)`` uint8 as a split with origins.

    ``index`` picks examples first (before the grayscale images are widened to RGB); origins
    keep the position in the source.
    """
    labels = np.asarray(labels, np.int64)
    if index is None:
        index = np.arange(len(labels))
    else:
        images, labels = images[index], labels[index]
    if images.ndim == 3:
        images = np.repeat(images[..., None], 3, axis=-1)
    elif images.shape[-1] == 1:
        images = np.repeat(images, 3, axis=-1)
    origins = [f"{source}#{i}" for i in index]
    return Split(labels=labels, images=images, origins=origins)


def load_idx(spec: str, config: DataConfig, *, seed: int = 0) -> DataBundle:
    """``idx:DIR`` or ``idx:IMAGES_FILE,LABELS_FILE``: a labelled set in IDX files (MNIST format).

    A folder holds ``train-images-idx3-ubyte[.gz]`` and ``train-labels-idx1-ubyte[.gz]`` and
    optionally the ``t10k-`` pair, the official test split (used when ``data.test_split > 0``);
    see :func:`tlkit.data.idx.find_idx_files` for the spellings accepted. Validation is carved
    from train. A single pair is split per ``data.val_split`` and ``data.test_split``. Class
    names are the label values, or line ``i`` of a ``classes.txt`` next to the files names
    label ``i``; label values with no images are left out.

    Raises:
        UserError: A missing or malformed file, images and labels that do not match.
    """
    source = f"idx:{spec}"
    target = Path(os.path.expanduser(spec.strip()))
    if target.is_dir():
        pairs = find_idx_files(target)
        if "train" not in pairs:
            raise UserError(
                f"{source}: no training files in {target}; expected train-images-idx3-ubyte[.gz] "
                "and train-labels-idx1-ubyte[.gz] (and optionally the t10k- pair), or name one "
                "pair as idx:IMAGES_FILE,LABELS_FILE"
            )
        folder = target
    else:
        parts = [Path(os.path.expanduser(p.strip())) for p in spec.split(",")]
        if len(parts) != 2 or not all(str(p) not in ("", ".") for p in parts):
            missing = "" if target.exists() else f" ({target} is not a folder)"
            raise UserError(
                f"data source {source!r}: expected idx:DIR or idx:IMAGES_FILE,LABELS_FILE{missing}"
            )
        pairs, folder = {"pool": (parts[0], parts[1])}, parts[0].parent
    names_file = folder / "classes.txt"
    names = read_class_names(names_file) if names_file.is_file() else None
    bundle = _idx_bundle(pairs, names, config, seed, source)
    if names is not None:
        bundle.report.notes.append(f"class names from {names_file}")
    return bundle


def _idx_bundle(pairs: dict, given: list[str] | None, config, seed, source) -> DataBundle:
    """The splits of IDX pairs: ``train`` (+ official ``test``) from a folder, or one ``pool``."""
    from_folder = "train" in pairs
    images, labels = read_idx_pair(*pairs["train" if from_folder else "pool"])
    use_test = from_folder and "test" in pairs and config.test_split > 0
    test_images, test_labels = read_idx_pair(*pairs["test"]) if use_test else (None, None)
    report = DataReport(source=source)
    present = np.unique(labels if test_labels is None else np.concatenate([labels, test_labels]))
    names, absent = label_names(present, given, next(iter(pairs.values()))[1])
    if absent:
        report.notes.append(f"classes with no images left out: {', '.join(absent)}")
    lookup = np.zeros(int(present.max(initial=0)) + 1, np.int64)
    lookup[present] = np.arange(len(present))
    index = pool_indices(lookup[labels], names, config, seed, report)
    pool = _in_memory(images, lookup[labels], f"{source}:train" if from_folder else source, index)
    train, val, test = carve(
        pool, val_split=config.val_split, test_split=0.0 if use_test else config.test_split,
        seed=seed,
    )  # fmt: skip
    report.split_mode = "official test, val carved from train" if use_test else "stratified"
    if use_test:
        wanted = wanted_labels(names, config)
        test_labels = lookup[test_labels]
        keep = None if wanted is None else np.flatnonzero(np.isin(test_labels, wanted))
        test = _in_memory(test_images, test_labels, f"{source}:test", keep)
        report.notes.append(
            f"test_split > 0: the official {len(test_labels):,}-image test split "
            f"({pairs['test'][0].name}) is the test set"
        )
    elif from_folder and "test" in pairs:
        report.notes.append(
            f"official test files {pairs['test'][0].name} not used; set data.test_split > 0 "
            "to make them the test set"
        )
    return DataBundle(names, train, val, test, report, source)


def _fashion_mnist(config: DataConfig, seed: int) -> DataBundle:
    folder = _find_fashion_mnist()
    pairs = find_idx_files(folder)
    for role, stem in (("train", "train"), ("test", "t10k")):
        if role not in pairs and (role == "train" or config.test_split > 0):
            raise UserError(f"Fashion-MNIST file {stem}-images-idx3-ubyte[.gz] missing in {folder}")
    bundle = _idx_bundle(pairs, FASHION_MNIST_CLASSES, config, seed, "builtin:fashion_mnist")
    bundle.report.notes.insert(0, f"Fashion-MNIST read from {folder}")
    return bundle


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
    train = splits["train"]
    names = _tfds_class_names(builder) or [str(i) for i in range(int(train.labels.max()) + 1)]
    train = take_pool(train, names, config, seed, report)
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
