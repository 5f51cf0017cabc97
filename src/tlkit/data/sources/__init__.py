"""Data sources: an image folder, a CSV file, IDX files, tensorflow_datasets and built-in sets.

:func:`load_data` reads ``data.source``, hands it to the module of its scheme, which returns
the source's :class:`~tlkit.data.assemble.RawParts`, and assembles those into a
:class:`DataBundle` (:func:`tlkit.data.assemble.assemble`: classes, cap, carving, report).
Nothing here opens an image; the data doctor (:func:`tlkit.data.check_data`) does that.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from tlkit.data.assemble import LAYOUT_HELP, RawParts, assemble
from tlkit.data.bundle import DataBundle
from tlkit.data.config import DataConfig
from tlkit.data.sources.builtin import builtin_parts
from tlkit.data.sources.csvfile import csv_parts
from tlkit.data.sources.folder import folder_parts
from tlkit.data.sources.idx import idx_parts
from tlkit.data.sources.tfds import tfds_parts
from tlkit.errors import UnknownNameError, UserError

SCHEMES = ("builtin", "csv", "dir", "idx", "tfds")


def load_data(config: DataConfig | str, *, seed: int = 0) -> DataBundle:
    """Load the source named by ``config.source`` into train / val / test splits.

    Args:
        config: The recipe's ``data:`` section, or just a source string (defaults for the rest).
        seed: Seed of any split made here; same seed, same split.

    Returns:
        The bundle, with counts in ``bundle.report``; files are not opened yet.

    Raises:
        UserError: Unknown scheme, missing path, no images, a single class, a class without
            training images.
    """
    if isinstance(config, str):
        config = DataConfig(source=config)
    source = config.source.strip()
    if "://" in source:
        raise UserError(
            f"data source {source!r} is a URL; tlkit never downloads. Download the images, "
            "then point data.source at the folder." + LAYOUT_HELP
        )
    return assemble(_read(source, config), config, seed)


def _read(source: str, config: DataConfig) -> RawParts:
    """The raw parts of ``source``, read by the module of its scheme."""
    scheme, rest = _scheme(source)
    if scheme is None:
        path = Path(os.path.expanduser(source))
        if path.is_file() and path.suffix.lower() == ".csv":
            return csv_parts(path, source=source)
        return folder_parts(path, source=source)
    if scheme == "dir":
        return folder_parts(Path(os.path.expanduser(rest)), source=source)
    if scheme == "csv":
        return csv_parts(Path(os.path.expanduser(rest)), source=source)
    if scheme == "builtin":
        return builtin_parts(rest, config)
    if scheme == "tfds":
        return tfds_parts(rest, config)
    if scheme == "idx":
        return idx_parts(rest, config)
    raise UnknownNameError("data source scheme", scheme, SCHEMES)


def _scheme(source: str) -> tuple[str | None, str]:
    match = re.match(r"^([A-Za-z][A-Za-z0-9_]+):(?!//)(.*)$", source)
    if not match or (match.group(1).lower() not in SCHEMES and Path(source).exists()):
        return None, source
    return match.group(1).lower(), match.group(2)
