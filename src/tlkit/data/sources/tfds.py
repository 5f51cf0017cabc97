"""tensorflow_datasets sets prepared on this machine, materialized into memory.

Never downloads: a set that is not prepared is a clear error that says how to prepare it.
TensorFlow Datasets is imported only when such a set is read.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from tlkit.data.assemble import RawParts
from tlkit.data.bundle import DataReport, Split
from tlkit.data.config import DataConfig
from tlkit.errors import UserError


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


def tfds_parts(spec: str, config: DataConfig) -> RawParts:
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
    return RawParts(
        names, report, train, in_train=True, val=splits.get("val"), test=splits.get("test"),
        split_mode=f"tfds {', '.join(f'{r}={s}' for r, s in roles.items())}",
    )  # fmt: skip


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
