"""The recipe's ``augment:`` section: which operations run, with which parameters.

Pure pydantic (no TensorFlow), so recipes validate and ``tlkit --help`` stays fast. Every op has
its own sub-section with ``enabled: false`` by default; ``preset:`` fills in a named set first
(:func:`augment_preset`), and keys written beside it override the preset.
"""

from __future__ import annotations

import copy
import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from tlkit.errors import UnknownNameError, UserError, closest
from tlkit.section import Section

#: VGG's crop side: scale-jitter sides are given for this input and scale with ``image_size``.
REFERENCE_SIZE = 224
#: Default ratio of the decode side to the crop side (256 / 224, AlexNet and VGG single-scale).
CROP_LOAD_RATIO = 8 / 7


class MirrorConfig(Section):
    """Horizontal flip of each image with probability ``p`` (AlexNet, VGG)."""

    enabled: bool = False
    p: float = Field(0.5, ge=0.0, le=1.0, description="Probability of flipping each image.")


class CropConfig(Section):
    """Random ``image_size`` crop from an image decoded at ``load_size`` (AlexNet: 256 -> 224)."""

    enabled: bool = False
    load_size: int | None = Field(
        None, ge=1, description="Decode side; default round(image_size * 8/7) (256 for 224)."
    )


class ScaleJitterConfig(Section):
    """VGG scale jittering: rescale so the shortest side is S, then crop ``image_size``.

    S is fixed when ``s_min == s_max`` (single-scale training) and drawn uniformly per image from
    ``[s_min, s_max]`` otherwise (multi-scale, the paper's 256..512). With ``relative: true`` the
    sides are given for a 224 input and scale with the model's ``image_size`` (S in
    ``[image_size*s_min/224, image_size*s_max/224]``), so the same recipe fits a 32-pixel model.
    """

    enabled: bool = False
    s_min: int = Field(256, ge=1, description="Smallest training scale S.")
    s_max: int = Field(512, ge=1, description="Largest training scale S (== s_min: single-scale).")
    relative: bool = Field(True, description="S values are for a 224 input; scale with image_size.")
    load_size: int | None = Field(
        None, ge=1, description="Decode side; default the resolved s_max (no upsampling)."
    )

    @model_validator(mode="after")
    def _ordered(self) -> ScaleJitterConfig:
        if self.s_min > self.s_max:
            raise ValueError(f"s_min ({self.s_min}) must not exceed s_max ({self.s_max})")
        if self.relative and self.s_min < REFERENCE_SIZE:
            raise ValueError(
                f"relative s_min ({self.s_min}) must be at least {REFERENCE_SIZE} so S covers the crop"
            )
        return self

    def resolved_range(self, image_size: int) -> tuple[int, int]:
        """The ``(S_min, S_max)`` used for ``image_size`` (pixels)."""
        if not self.relative:
            return self.s_min, self.s_max
        scale = image_size / REFERENCE_SIZE
        return max(image_size, round(self.s_min * scale)), max(
            image_size, round(self.s_max * scale)
        )


class ColourShiftConfig(Section):
    """Per-channel RGB offsets in ``[-max_offset, max_offset]`` (0..255 units), plus options.

    ``brightness`` adds one offset to all channels, uniform in ``[-b, b] * 255``; ``contrast`` and
    ``saturation`` scale by a factor uniform in ``[1 - c, 1 + c]`` around the image's per-channel
    mean and around its grey value respectively.
    """

    enabled: bool = False
    max_offset: float = Field(20.0, ge=0.0, le=255.0, description="Per-channel offset range.")
    brightness: float = Field(0.0, ge=0.0, le=1.0, description="Fraction of 255.")
    contrast: float = Field(0.0, ge=0.0, lt=1.0)
    saturation: float = Field(0.0, ge=0.0, lt=1.0)


class PCAStatsConfig(Section):
    """Eigen-decomposition of the training set's RGB covariance (pixels scaled to 0..1)."""

    eigvals: list[float] = Field(min_length=3, max_length=3, description="Descending.")
    eigvecs: list[list[float]] = Field(
        min_length=3, max_length=3, description="3x3, eigenvectors in the columns."
    )
    mean: list[float] | None = Field(None, min_length=3, max_length=3)
    count: int | None = Field(None, ge=0, description="Pixels the statistics were computed over.")

    @field_validator("eigvals")
    @classmethod
    def _finite_non_negative(cls, value: list[float]) -> list[float]:
        if any(not math.isfinite(v) or v < -1e-9 for v in value):
            raise ValueError("eigenvalues must be finite and non-negative")
        return value

    @field_validator("eigvecs")
    @classmethod
    def _three_by_three(cls, value: list[list[float]]) -> list[list[float]]:
        if any(len(row) != 3 for row in value):
            raise ValueError("eigvecs must be a 3x3 matrix (eigenvectors in the columns)")
        return value


class PCAColourConfig(Section):
    """AlexNet's PCA colour augmentation from the training set's RGB statistics.

    Each image gets ``eigvecs @ (alpha * eigvals)`` (times 255) added to every pixel, with
    ``alpha ~ N(0, sigma)`` drawn per image. ``stats`` is filled in by the run from one pass over
    the training set (and stored in the resolved recipe); ``"imagenet"`` uses the ImageNet values
    published with fb.resnet.torch.
    """

    enabled: bool = False
    sigma: float = Field(0.1, ge=0.0, description="Std of alpha (AlexNet: 0.1).")
    stats: PCAStatsConfig | Literal["imagenet"] | None = None


class RotationConfig(Section):
    """Random rotation in ``[-max_degrees, max_degrees]``, reflected borders."""

    enabled: bool = False
    max_degrees: float = Field(10.0, ge=0.0, le=180.0)


class ShearConfig(Section):
    """Random horizontal and vertical shear, factor uniform in ``[-max_shear, max_shear]``."""

    enabled: bool = False
    max_shear: float = Field(0.1, ge=0.0, le=1.0, description="Shear factor (0.1 ~ 5.7 degrees).")


class WarpConfig(Section):
    """Local warping: a smooth random displacement field (a ``grid x grid`` lattice, upsampled)."""

    enabled: bool = False
    magnitude: float = Field(0.03, ge=0.0, le=0.25, description="Max displacement / image side.")
    grid: int = Field(4, ge=2, le=32, description="Control points per side.")


class MixupConfig(Section):
    """mixup (Zhang et al. 2018): blend image pairs and their labels, lambda ~ Beta(a, a)."""

    enabled: bool = False
    alpha: float = Field(0.2, gt=0.0)


class CutmixConfig(Section):
    """CutMix (Yun et al. 2019): paste a box from another image; labels mix by area."""

    enabled: bool = False
    alpha: float = Field(1.0, gt=0.0)


class RandAugmentConfig(Section):
    """RandAugment (Cubuk et al. 2020): ``num_ops`` ops drawn per image, each at ``magnitude``.

    The ops and their ranges are torchvision's 14 (identity, shear x/y, translate x/y, rotate,
    brightness, colour, contrast, sharpness, posterize, solarize, autocontrast, equalize);
    ``magnitude`` is M on the paper's and torchvision's 0..30 scale (ImageNet: N=2, M=9). Runs
    after the crop, per image (see :mod:`tlkit.augment.policies`).
    """

    enabled: bool = False
    num_ops: int = Field(2, ge=1, le=10, description="N: ops applied per image, drawn per image.")
    magnitude: int = Field(9, ge=0, le=30, description="M on the 0..30 scale (torchvision, timm).")


class TrivialAugmentConfig(Section):
    """TrivialAugment Wide (Müller & Hutter 2021): one op per image, drawn uniformly from the same
    14 (identity included), at a strength drawn uniformly per image from the 31 levels 0..30
    (torchvision's ``TrivialAugmentWide`` ranges). Nothing to tune: that is the point."""

    enabled: bool = False


class AlbumentationsOp(Section):
    """One albumentations transform: its class name and keyword arguments."""

    name: str
    params: dict[str, Any] = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _bare_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


class AlbumentationsConfig(Section):
    """An albumentations pipeline run per image (the slower path; see docs/augmentation.md).

    ``pipeline`` is a list of ``{name, params}`` or a path to a pipeline saved with ``A.save``
    (.json or .yaml). A bare list or path is accepted in place of the whole section.
    """

    pipeline: list[AlbumentationsOp] | str
    load_size: int | None = Field(
        None, ge=1, description="Decode side given to the pipeline; default image_size."
    )

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: Any) -> Any:
        if isinstance(value, (list, str)):
            return {"pipeline": value}
        return value


class AugmentConfig(Section):
    """The ``augment:`` recipe section.

    Geometric ops (scale jitter, crop, rotation, shear, warp) run per image in the tf.data
    pipeline; the policies (RandAugment, TrivialAugment) run per image after the crop; pixel ops
    (mirror, colour shift, PCA colour) and mixing ops (mixup, cutmix) run on whole batches.
    ``device: model`` moves the policies and the pixel ops into a Keras layer that runs on the
    accelerator (training only); the mixing ops need labels and stay in the pipeline.
    """

    preset: str | None = Field(
        None,
        description="Start from a preset: none, light, paper_alexnet, paper_vgg, strong, "
        "randaugment, trivialaugment.",
    )
    mirror: MirrorConfig = Field(default_factory=MirrorConfig)
    crop: CropConfig = Field(default_factory=CropConfig)
    scale_jitter: ScaleJitterConfig = Field(default_factory=ScaleJitterConfig)
    colour_shift: ColourShiftConfig = Field(default_factory=ColourShiftConfig)
    pca_colour: PCAColourConfig = Field(default_factory=PCAColourConfig)
    rotation: RotationConfig = Field(default_factory=RotationConfig)
    shear: ShearConfig = Field(default_factory=ShearConfig)
    warp: WarpConfig = Field(default_factory=WarpConfig)
    mixup: MixupConfig = Field(default_factory=MixupConfig)
    cutmix: CutmixConfig = Field(default_factory=CutmixConfig)
    rand_augment: RandAugmentConfig = Field(default_factory=RandAugmentConfig)
    trivial_augment: TrivialAugmentConfig = Field(default_factory=TrivialAugmentConfig)
    backend: Literal["tf", "albumentations"] = "tf"
    albumentations: AlbumentationsConfig | None = None
    device: Literal["pipeline", "model"] = Field(
        "pipeline",
        description="pipeline: tf.data on the CPU; model: a Keras layer (training only).",
    )

    @model_validator(mode="before")
    @classmethod
    def _apply_preset(cls, value: Any) -> Any:
        if isinstance(value, dict) and value.get("preset") is not None:
            name = value["preset"]
            if name not in PRESETS:
                near = closest(str(name), PRESETS, n=1)
                hint = f" Did you mean {near[0]!r}?" if near else ""
                raise ValueError(f"unknown preset {name!r}.{hint} Valid: {', '.join(PRESETS)}")
            value = _merge(PRESETS[name], value)
        return value

    @model_validator(mode="after")
    def _consistent(self) -> AugmentConfig:
        policies = [n for n in POLICIES if getattr(self, n).enabled]
        if len(policies) > 1:
            raise ValueError(
                "rand_augment and trivial_augment are alternatives: enable one of them"
            )
        if policies and self.backend != "tf":
            # albumentations 2.0.8 has neither A.RandAugment nor A.TrivialAugmentWide
            raise ValueError(
                f"{policies[0]} runs on backend 'tf' only (albumentations has no RandAugment or "
                "TrivialAugmentWide transform): set backend: tf, or leave the policy out"
            )
        if self.backend == "albumentations":
            if self.albumentations is None:
                raise ValueError(
                    "backend 'albumentations' needs an 'albumentations' pipeline "
                    "(a list of {name, params} or a path to a saved pipeline)"
                )
            geometric = [n for n in GEOMETRIC_OPS if getattr(self, n).enabled]
            if geometric:
                raise ValueError(
                    f"with backend 'albumentations' the pipeline does the per-image ops; disable "
                    f"{', '.join(geometric)} or use the albumentations equivalents"
                )
        elif self.albumentations is not None:
            raise ValueError(
                "an 'albumentations' pipeline is set: also set backend: albumentations"
            )
        return self

    @property
    def enabled_ops(self) -> list[str]:
        """Names of the enabled built-in ops, in the order they run."""
        return [n for n in OP_ORDER if getattr(self, n).enabled]

    @property
    def any_enabled(self) -> bool:
        return bool(self.enabled_ops) or self.backend == "albumentations"

    @property
    def needs_pca_stats(self) -> bool:
        """True when PCA colour is on and the training set's statistics are still missing."""
        return self.pca_colour.enabled and self.pca_colour.stats is None

    def with_pca_stats(self, stats: Any) -> AugmentConfig:
        """A copy carrying ``stats`` (a :class:`~tlkit.augment.pca.PCAStats` or its dict)."""
        data = stats.to_dict() if hasattr(stats, "to_dict") else dict(stats)
        pca = self.pca_colour.model_copy(update={"stats": PCAStatsConfig.model_validate(data)})
        return self.model_copy(update={"pca_colour": pca})


GEOMETRIC_OPS = ("scale_jitter", "crop", "rotation", "shear", "warp")
PIXEL_OPS = ("mirror", "colour_shift", "pca_colour")
MIX_OPS = ("mixup", "cutmix")
#: Whole augmentation policies, run per image on the cropped image (tlkit.augment.policies).
POLICIES = ("rand_augment", "trivial_augment")
OP_ORDER = ("scale_jitter", "rotation", "shear", "warp", "crop", *POLICIES, *PIXEL_OPS, *MIX_OPS)

PRESETS: dict[str, dict[str, Any]] = {
    "none": {},
    "light": {"mirror": {"enabled": True}, "crop": {"enabled": True}},
    "paper_alexnet": {
        "mirror": {"enabled": True},
        "crop": {"enabled": True},
        "pca_colour": {"enabled": True, "sigma": 0.1},
    },
    "paper_vgg": {
        "scale_jitter": {"enabled": True, "s_min": 256, "s_max": 512},
        "mirror": {"enabled": True},
        "colour_shift": {"enabled": True, "max_offset": 20.0},
    },
    "strong": {
        "mirror": {"enabled": True},
        "scale_jitter": {"enabled": True, "s_min": 256, "s_max": 384},
        "rotation": {"enabled": True, "max_degrees": 10.0},
        "shear": {"enabled": True, "max_shear": 0.1},
        "colour_shift": {
            "enabled": True,
            "max_offset": 20.0,
            "brightness": 0.1,
            "contrast": 0.2,
            "saturation": 0.2,
        },
        "mixup": {"enabled": True, "alpha": 0.2},
    },
    # flip + crop + the policy, as the timm and torchvision training recipes use them
    "randaugment": {
        "mirror": {"enabled": True},
        "crop": {"enabled": True},
        "rand_augment": {"enabled": True, "num_ops": 2, "magnitude": 9},
    },
    "trivialaugment": {
        "mirror": {"enabled": True},
        "crop": {"enabled": True},
        "trivial_augment": {"enabled": True},
    },
}


def augment_preset(name: str, **overrides: Any) -> AugmentConfig:
    """The named preset as an :class:`AugmentConfig`, with optional section overrides.

    Presets: ``none``; ``light`` (mirror + random crop); ``paper_alexnet`` (mirror, 256->224
    crop, PCA colour with sigma 0.1; Krizhevsky et al. 2012, section 4.1); ``paper_vgg``
    (multi-scale jitter S in [256, 512], mirror, RGB colour shift; Simonyan & Zisserman 2015,
    section 3.1); ``strong`` (jitter, rotation, shear, colour jitter, mirror, mixup);
    ``randaugment`` (mirror, random crop, then RandAugment N=2, M=9 per image; Cubuk et al.
    2020) and ``trivialaugment`` (mirror, random crop, then TrivialAugment Wide per image;
    Müller & Hutter 2021): flip + crop + the policy, as the timm and torchvision recipes do.
    Both policies are tlkit's own TensorFlow ops (:mod:`tlkit.augment.policies`), backend tf.

    Raises:
        UnknownNameError: ``name`` is not a preset.
    """
    if name not in PRESETS:
        raise UnknownNameError("augmentation preset", name, PRESETS)
    try:
        return AugmentConfig.model_validate({"preset": name, **overrides})
    except ValueError as exc:
        raise UserError(f"augmentation preset {name!r}: {exc}") from None


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out
