"""The preprocessing contract: how an image file becomes what the model sees, in one place.

Training, validation, ``tlkit evaluate``, ``tlkit predict`` and every export follow the same
contract, which a run stores as ``preprocessing.json`` (and every export copies):

==============  ==========================================================================
decoder         TensorFlow's (``tf.io.decode_jpeg`` / ``decode_png``), 8-bit RGB. Files that
                decoder cannot be trusted with (EXIF-rotated, transparent pixels, CMYK
                without Adobe's marker, WebP, GIF, BMP, TIFF) are first converted by PIL:
                orientation applied, alpha composited on white; the data check does this
                for training, predict for its files (:func:`tlkit.data.images.load_for_model`).
                Grey, 16-bit and opaque palette images are read as they are.
resize          ``squash``, ``centre_crop`` (default) or ``pad``
                (:data:`tlkit.imageops.RESIZE_POLICIES`): the image becomes a square of
                ``eval_size``, whose central ``input_size`` square the model sees.
train_size      the square side training images are fitted to (by the same policy) before
                augmentation crops ``input_size`` windows from them; augmentation only ever
                changes the training side.
normalisation   the backbone's ``preprocess_input`` mode; it is inside the model (its first
                layers), so the model and every export take raw RGB in 0..255.
==============  ==========================================================================

With a random crop, the defaults are AlexNet's and VGG's: train on random 224 crops of 256,
evaluate the centre 224 of 256.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import Field

from tlkit.errors import UserError
from tlkit.io import atomic_write_json
from tlkit.rundir import RunDir
from tlkit.section import Section

CONTRACT_FILE = RunDir.CONTRACT
DECODER = "tensorflow"
EXIF = "applied (PIL converts EXIF-rotated files before decoding)"


#: The resize policies (:data:`tlkit.imageops.RESIZE_POLICIES`, which fits images by them).
ResizePolicy = Literal["squash", "centre_crop", "pad"]
RESIZE_POLICIES: tuple[str, ...] = get_args(ResizePolicy)


class PreprocessConfig(Section):
    """The recipe's ``preprocess`` section: the geometry half of the contract."""

    resize: ResizePolicy = Field(
        "centre_crop",
        description="How an image of any shape becomes a square: centre_crop (the central "
        "square, aspect ratio kept, as AlexNet and VGG evaluate), squash (the whole image, "
        "stretched) or pad (the whole image, its longer side fitted, padded with black).",
    )
    eval_size: int | None = Field(
        None,
        ge=8,
        description="Square side an image is fitted to before the model's centre image_size "
        "crop at evaluation and prediction. Default: the random crop's load size (256 for 224), "
        "with scale jitter the middle of its range (VGG's Q), without crops the image size.",
    )


@dataclass(frozen=True)
class Contract:
    """One run's preprocessing, from file to model input (see the module docstring).

    Attributes:
        input_size: The model's square input side.
        resize: The resize policy.
        eval_size: Square side before the centre ``input_size`` crop, at evaluation.
        train_size: Square side training images are fitted to before augmentation's random
            crops; equal to ``eval_size`` without crops (training then sees the evaluation
            view, augmented).
        normalisation: The backbone's preprocessing mode (inside the model).
    """

    input_size: int
    resize: str = "squash"
    eval_size: int | None = None
    train_size: int | None = None
    normalisation: str = "none"

    def __post_init__(self):
        if self.resize not in RESIZE_POLICIES:
            raise UserError(f"preprocess.resize must be one of {', '.join(RESIZE_POLICIES)}")
        if self.eval_size is None:
            object.__setattr__(self, "eval_size", self.input_size)
        if self.train_size is None:
            object.__setattr__(self, "train_size", self.eval_size)
        if self.eval_size < self.input_size:
            raise UserError(
                f"preprocess.eval_size ({self.eval_size}) is below the image size "
                f"({self.input_size}): the model's centre crop would not fit"
            )

    # --- construction ---------------------------------------------------------------------------

    @classmethod
    def for_run(cls, config: PreprocessConfig | None, augmenter: Any, image_size: int,
                normalisation: str) -> Contract:
        """The contract of a run: the recipe's ``preprocess`` section and its augmenter."""
        config = config or PreprocessConfig()
        train_size = None  # without crops, training sees the evaluation view, then augments
        default_eval = image_size
        if augmenter is not None and int(augmenter.load_size(image_size)) > image_size:
            train_size = int(augmenter.load_size(image_size))
            jitter = getattr(augmenter, "scale_range", None)
            # VGG: a net trained with S in [S_min, S_max] is tested at their middle
            default_eval = round((jitter[0] + jitter[1]) / 2) if jitter else train_size
        return cls(
            input_size=int(image_size),
            resize=config.resize,
            eval_size=config.eval_size or default_eval,
            train_size=train_size,
            normalisation=normalisation,
        )

    @classmethod
    def legacy(cls, image_size: int) -> Contract:
        """What runs saved before the contract existed did: squash straight to the input size."""
        return cls(input_size=int(image_size), resize="squash")

    # --- files ----------------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "decoder": DECODER,
            "exif_orientation": EXIF,
            "colour": "RGB, 8 bits per channel",
            **asdict(self),
            "model_input": f"float32 or uint8 [N, {self.input_size}, {self.input_size}, 3], "
            "raw RGB 0..255 (normalisation is inside the model)",
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Contract:
        keys = ("input_size", "resize", "eval_size", "train_size", "normalisation")
        return cls(**{k: data[k] for k in keys if k in data})

    def save(self, folder: str | Path) -> Path:
        path = Path(folder) / CONTRACT_FILE
        atomic_write_json(path, self.to_dict())
        return path

    @classmethod
    def find(cls, model_path: str | Path, image_size: int) -> Contract:
        """The contract stored beside a model file (a run's or an export's), else
        :meth:`legacy` for a run saved before contracts existed."""
        path = Path(model_path)
        folder = path if path.is_dir() else path.parent
        for candidate in (folder / CONTRACT_FILE,):
            if candidate.is_file():
                try:
                    contract = cls.from_dict(json.loads(candidate.read_text()))
                except (ValueError, KeyError, TypeError) as exc:
                    raise UserError(f"{candidate} is not a preprocessing contract: {exc}") from None
                if contract.input_size != image_size:
                    raise UserError(
                        f"{candidate} is for {contract.input_size}px inputs, the model takes "
                        f"{image_size}px"
                    )
                return contract
        return cls.legacy(image_size)

    # --- the pixels -----------------------------------------------------------------------------

    def view(self, image):
        """uint8 ``[H, W, 3]`` -> uint8 ``[input_size, input_size, 3]``: what evaluation,
        prediction and exports feed the model (TensorFlow graph code)."""
        from tlkit.imageops import centre_square, fit_square  # TensorFlow: not to validate

        square = fit_square(image, self.eval_size, self.resize)
        if self.eval_size == self.input_size:
            return square
        return centre_square(square, self.input_size)

    def fit(self, image, side: int):
        """uint8 ``[H, W, 3]`` -> uint8 ``[side, side, 3]`` by the resize policy (training's
        images before augmentation)."""
        from tlkit.imageops import fit_square  # TensorFlow: not to validate

        return fit_square(image, side, self.resize)

    def describe(self) -> str:
        """One line for a terminal."""
        crop = (
            f", centre {self.input_size} of {self.eval_size}"
            if self.eval_size != self.input_size else ""
        )
        return (
            f"preprocessing: {DECODER} decoder, EXIF applied, {self.resize} to "
            f"{self.eval_size}{crop}; training fits to {self.train_size}; "
            f"{self.normalisation} normalisation inside the model"
        )
