"""The albumentations backend: a user's ``A.Compose`` run per image inside tf.data.

This is the slower path (numpy per image, through ``tf.numpy_function``, holding the GIL), kept
for users who want albumentations' wider catalogue. Images go in and out as uint8; each call is
seeded from the tf.data seed, so a run is reproducible.
"""

from __future__ import annotations

import copy
import threading
from pathlib import Path
from typing import Any

import numpy as np

from tlkit.augment.config import AlbumentationsConfig
from tlkit.errors import UnknownNameError, UserError


def _albumentations():
    try:
        import albumentations
    except ImportError:  # pragma: no cover - depends on the environment
        raise UserError(
            "the albumentations backend needs albumentations: pip install 'tlkit[albumentations]'"
        ) from None
    return albumentations


def build_compose(spec: AlbumentationsConfig | list | str) -> Any:
    """An ``A.Compose`` from a list of ``{name, params}`` or a saved pipeline (.json/.yaml).

    Raises:
        UnknownNameError: a transform name albumentations does not have.
        UserError: bad parameters, or a file that is missing or not a pipeline.
    """
    A = _albumentations()
    if not isinstance(spec, AlbumentationsConfig):
        spec = AlbumentationsConfig.model_validate(spec)
    if isinstance(spec.pipeline, str):
        return _load_file(A, Path(spec.pipeline))
    transforms = []
    valid = sorted(n for n in dir(A) if isinstance(getattr(A, n), type) and n[0].isupper())
    for op in spec.pipeline:
        cls = getattr(A, op.name, None)
        if not isinstance(cls, type) or op.name not in valid:
            raise UnknownNameError("albumentations transform", op.name, valid)
        try:
            transforms.append(cls(**op.params))
        except (TypeError, ValueError) as exc:
            raise UserError(f"albumentations {op.name}({op.params}): {exc}") from None
    return A.Compose(transforms)


def _load_file(A, path: Path) -> Any:
    if not path.is_file():
        raise UserError(f"albumentations pipeline file not found: {path}")
    data_format = "yaml" if path.suffix.lower() in (".yaml", ".yml") else "json"
    try:
        pipeline = A.load(str(path), data_format=data_format)
    except Exception as exc:  # noqa: BLE001 - albumentations raises many kinds
        raise UserError(f"{path}: not an albumentations pipeline ({exc})") from None
    return pipeline if isinstance(pipeline, A.Compose) else A.Compose([pipeline])


class AlbumentationsRunner:
    """Runs one compose per image: numpy uint8 in, uint8 ``[size, size, 3]`` out.

    tf.data calls ``numpy_function`` from several threads, so each thread has its own copy of
    the compose (its random state is reseeded per image).
    """

    def __init__(self, spec: AlbumentationsConfig | list | str, image_size: int):
        self.compose = build_compose(spec)
        self.image_size = int(image_size)
        self._local = threading.local()

    def _thread_compose(self):
        compose = getattr(self._local, "compose", None)
        if compose is None:
            compose = self._local.compose = copy.deepcopy(self.compose)
        return compose

    def __call__(self, image: np.ndarray, seed: np.ndarray) -> np.ndarray:
        pixels = (
            image if image.dtype == np.uint8 else np.clip(np.rint(image), 0, 255).astype(np.uint8)
        )
        compose = self._thread_compose()
        compose.set_random_seed(int((int(seed[0]) * 1_000_003 + int(seed[1])) % 2**32))
        out = compose(image=pixels)["image"]
        if out.ndim == 2:
            out = np.repeat(out[..., None], 3, axis=-1)
        if out.shape[:2] != (self.image_size, self.image_size):
            import cv2

            out = cv2.resize(out, (self.image_size, self.image_size), interpolation=cv2.INTER_AREA)
        if out.dtype != np.uint8:
            out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        return np.ascontiguousarray(out)

    def tf_apply(self, image, seed):
        """The graph op: float32 or uint8 ``[H, W, 3]`` -> float32 ``[size, size, 3]``."""
        import tensorflow as tf

        out = tf.numpy_function(self, [image, tf.cast(seed, tf.int64)], tf.uint8, stateful=False)
        out = tf.ensure_shape(out, [self.image_size, self.image_size, 3])
        return tf.cast(out, tf.float32)
