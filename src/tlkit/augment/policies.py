"""RandAugment and TrivialAugment Wide as per-image TensorFlow ops with stateless seeds.

RandAugment (Cubuk et al. 2020, "RandAugment: Practical automated data augmentation with a
reduced search space"): ``num_ops`` operations drawn uniformly (with replacement) per image, each
at the same magnitude M on a 0..30 scale. TrivialAugment Wide (Müller & Hutter 2021,
"TrivialAugment: Tuning-free Yet State-of-the-Art Data Augmentation"): exactly one operation per
image, its strength drawn uniformly per image from the 31 levels 0..30. Both use torchvision's
14 operations (identity included) and magnitude ranges (``torchvision.transforms.RandAugment``,
``TrivialAugmentWide``); signed operations get a random sign per draw.

Why not ``keras.layers.RandAugment`` (Keras 3.15): its ``get_random_transformation`` draws the
op indices once per *call* (``randint((num_ops,))``), so every image in a batch gets the same
ops; it has no identity op; ``factor`` is not the paper's magnitude but the upper end of a range
each sub-layer samples from per image (``factor=0.5`` becomes ``(0, 0.5)``: RandomRotation
turns by 0..180°, RandomTranslation shifts by 0..50%), so M is not fixed; and its seeds come
from a stateful ``SeedGenerator``, not tlkit's per-image stateless seeds, so a run would not
repeat. Calling it once per image would fix only the first of these, so the policies are
written here from ``tf.image``-level ops.

Images are ``[H, W, 3]``, float or uint8, values 0..255; results are float32, clipped to 0..255.
Geometric ops resample bilinearly and fill uncovered pixels with mid grey (128), as timm fills
with the mean colour (torchvision fills black).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf

from tlkit.augment.ops import affine_transforms, as_seed, split_seed

#: The 14 operations, in torchvision's order; an op index is a position in this tuple.
POLICY_OPS = (
    "identity",
    "shear_x",
    "shear_y",
    "translate_x",
    "translate_y",
    "rotate",
    "brightness",
    "colour",
    "contrast",
    "sharpness",
    "posterize",
    "solarize",
    "auto_contrast",
    "equalize",
)
#: Magnitude levels: 0..MAX_LEVEL (torchvision's 31 bins; the paper's M scale).
MAX_LEVEL = 30
FILL_VALUE = 128.0


@dataclass(frozen=True)
class PolicySpace:
    """Each operation's strength at the top level (30); level M gives ``M / 30`` of it.

    Attributes:
        shear: Shear factor (torchvision's ``tan`` of the shear angle).
        translate: Shift as a fraction of the image side.
        rotate: Degrees.
        enhance: Brightness / colour / contrast / sharpness blend ``1 ± enhance``.
        posterize_bits: Bits removed (from 8) at the top level.
    """

    shear: float
    translate: float
    rotate: float
    enhance: float
    posterize_bits: int


#: torchvision RandAugment: shear 0.3, translate 150/331 of the side, 30°, 0.9, 8 -> 4 bits.
RAND_AUGMENT_SPACE = PolicySpace(0.3, 150.0 / 331.0, 30.0, 0.9, 4)
#: torchvision TrivialAugmentWide: shear 0.99, translate 32 px (given here as 32/224 of the side,
#: torchvision's value at ImageNet's 224; it stays sensible for small inputs), 135°, 0.99, 8 -> 2.
TRIVIAL_AUGMENT_SPACE = PolicySpace(0.99, 32.0 / 224.0, 135.0, 0.99, 6)


# --- the operations (one image, float32 0..255; ``m``: the signed level / 30) ---------------------


def _affine(image, transform) -> tf.Tensor:
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=image[tf.newaxis],
        transforms=tf.reshape(transform, [1, 8]),
        output_shape=tf.shape(image)[:2],
        fill_value=FILL_VALUE,
        interpolation="BILINEAR",
        fill_mode="CONSTANT",
    )[0]


def _translate(image, dx, dy) -> tf.Tensor:
    zero, one = tf.zeros([]), tf.ones([])
    return _affine(image, tf.stack([one, zero, -dx, zero, one, -dy, zero, zero]))


def _shear_rotate(image, angle, shear_x, shear_y) -> tf.Tensor:
    hw = tf.shape(image)[:2]
    return _affine(image, affine_transforms([angle], [shear_x], [shear_y], hw[0], hw[1])[0])


def _grey(image) -> tf.Tensor:
    return tf.image.rgb_to_grayscale(image)


def _blend(degenerate, image, factor) -> tf.Tensor:
    """PIL ImageEnhance: ``degenerate + factor * (image - degenerate)``, clipped."""
    return tf.clip_by_value(degenerate + factor * (image - degenerate), 0.0, 255.0)


def _smoothed(image) -> tf.Tensor:
    """PIL's SMOOTH filter (3x3, centre 5, total 13) with the border pixels kept."""
    kernel = tf.constant([[1, 1, 1], [1, 5, 1], [1, 1, 1]], tf.float32) / 13.0
    kernel = tf.tile(kernel[:, :, tf.newaxis, tf.newaxis], [1, 1, 3, 1])
    inner = tf.nn.depthwise_conv2d(image[tf.newaxis], kernel, [1, 1, 1, 1], "VALID")[0]
    mask = tf.pad(tf.ones_like(inner), [[1, 1], [1, 1], [0, 0]])
    return mask * tf.pad(inner, [[1, 1], [1, 1], [0, 0]]) + (1.0 - mask) * image


def posterize(image, bits) -> tf.Tensor:
    """Keep the top ``bits`` (int scalar, 1..8) bits of every 8-bit value."""
    step = tf.cast(tf.bitwise.left_shift(1, 8 - bits), tf.float32)
    return tf.floor(tf.round(image) / step) * step


def solarize(image, threshold) -> tf.Tensor:
    """Invert every value at or above ``threshold``."""
    return tf.where(image >= threshold, 255.0 - image, image)


def auto_contrast(image) -> tf.Tensor:
    """Stretch each channel to 0..255 (a flat channel is left as it is)."""
    low = tf.reduce_min(image, axis=[0, 1], keepdims=True)
    high = tf.reduce_max(image, axis=[0, 1], keepdims=True)
    span = high - low
    stretched = (image - low) * (255.0 / tf.maximum(span, 1e-6))
    return tf.where(span > 0, stretched, image)


def _equalize_channel(channel) -> tf.Tensor:
    """PIL's ImageOps.equalize on one ``[H, W]`` channel (as tf-models' AutoAugment has it)."""
    values = tf.cast(tf.clip_by_value(tf.round(channel), 0, 255), tf.int32)
    histogram = tf.math.bincount(values, minlength=256, maxlength=256)
    nonzero = tf.boolean_mask(histogram, histogram > 0)
    step = (tf.reduce_sum(nonzero) - nonzero[-1]) // 255

    def mapped():
        lut = (tf.cumsum(histogram) + step // 2) // tf.maximum(step, 1)
        lut = tf.clip_by_value(tf.concat([[0], lut[:-1]], 0), 0, 255)
        return tf.cast(tf.gather(lut, values), tf.float32)

    return tf.cond(step > 0, mapped, lambda: tf.cast(values, tf.float32))


def equalize(image) -> tf.Tensor:
    """Histogram-equalize each channel."""
    return tf.stack([_equalize_channel(image[..., c]) for c in range(3)], axis=-1)


def _branches(image, m, space: PolicySpace):
    """The 14 operations as zero-argument callables (``m`` is the signed level / 30)."""
    side = tf.cast(tf.shape(image)[:2], tf.float32)
    zero = tf.zeros([])
    enhance = 1.0 + m * space.enhance
    bits = 8 - tf.cast(tf.round(tf.abs(m) * space.posterize_bits), tf.int32)
    radians = m * space.rotate * (math.pi / 180.0)
    return [
        lambda: image,
        lambda: _shear_rotate(image, zero, m * space.shear, zero),
        lambda: _shear_rotate(image, zero, zero, m * space.shear),
        lambda: _translate(image, m * space.translate * side[1], zero),
        lambda: _translate(image, zero, m * space.translate * side[0]),
        lambda: _shear_rotate(image, radians, zero, zero),
        lambda: _blend(tf.zeros_like(image), image, enhance),
        lambda: _blend(_grey(image), image, enhance),
        lambda: _blend(tf.reduce_mean(_grey(image)), image, enhance),
        lambda: _blend(_smoothed(image), image, enhance),
        lambda: posterize(image, bits),
        lambda: solarize(image, 255.0 * (1.0 - tf.abs(m))),
        lambda: auto_contrast(image),
        lambda: equalize(image),
    ]


def apply_op(image, index, level, sign, space: PolicySpace = RAND_AUGMENT_SPACE) -> tf.Tensor:
    """Operation ``POLICY_OPS[index]`` at ``level`` (0..30) with ``sign`` (±1) on one image.

    Args:
        image: ``[H, W, 3]``, values 0..255, any dtype.
        index: Int scalar, a position in :data:`POLICY_OPS`.
        level: Magnitude level 0..30 (float or int scalar).
        sign: +1 or -1; signed operations (shear, translate, rotate, the enhancements) use it.
        space: The policy's magnitude ranges.

    Returns:
        float32 ``[H, W, 3]`` in 0..255.
    """
    image = tf.cast(image, tf.float32)
    m = tf.cast(level, tf.float32) / MAX_LEVEL * tf.cast(sign, tf.float32)
    out = tf.switch_case(tf.cast(index, tf.int32), _branches(image, m, space))
    return tf.ensure_shape(tf.clip_by_value(out, 0.0, 255.0), image.shape)


def _signs(n, seed) -> tf.Tensor:
    return tf.where(tf.random.stateless_uniform([n], as_seed(seed)) < 0.5, -1.0, 1.0)


def rand_augment_draw(num_ops: int, seed) -> tuple[tf.Tensor, tf.Tensor]:
    """The ``[num_ops]`` op indices and signs RandAugment applies for ``seed`` (one image)."""
    seeds = split_seed(seed, 2)
    index = tf.random.stateless_uniform(
        [num_ops], seeds[0], minval=0, maxval=len(POLICY_OPS), dtype=tf.int32
    )
    return index, _signs(num_ops, seeds[1])


def rand_augment(image, num_ops: int = 2, magnitude: int = 9, seed=0) -> tf.Tensor:
    """RandAugment on one image: ``num_ops`` ops drawn uniformly, each at level ``magnitude``.

    Cubuk et al. 2020; torchvision's operations and ranges (``num_magnitude_bins=31``).

    Args:
        image: ``[H, W, 3]``, values 0..255.
        num_ops: N, the operations applied in turn (drawn with replacement, identity included).
        magnitude: M on the 0..30 scale (the paper's ImageNet setting is N=2, M=9).
        seed: Stateless seed.

    Returns:
        float32 ``[H, W, 3]`` in 0..255.
    """
    index, sign = rand_augment_draw(num_ops, seed)
    x = tf.cast(image, tf.float32)
    for i in range(num_ops):
        x = apply_op(x, index[i], magnitude, sign[i], RAND_AUGMENT_SPACE)
    return x


def trivial_augment_draw(seed) -> tuple[tf.Tensor, tf.Tensor, tf.Tensor]:
    """``(op index, level 0..30, sign)`` TrivialAugment draws for ``seed`` (one image)."""
    seeds = split_seed(seed, 3)
    index = tf.random.stateless_uniform(
        [], seeds[0], minval=0, maxval=len(POLICY_OPS), dtype=tf.int32
    )
    level = tf.random.stateless_uniform(
        [], seeds[1], minval=0, maxval=MAX_LEVEL + 1, dtype=tf.int32
    )
    return index, level, _signs(1, seeds[2])[0]


def trivial_augment(image, seed=0) -> tf.Tensor:
    """TrivialAugment Wide on one image: one op drawn uniformly, at a level drawn uniformly.

    Müller & Hutter 2021; torchvision's ``TrivialAugmentWide`` operations and ranges.

    Args:
        image: ``[H, W, 3]``, values 0..255.
        seed: Stateless seed.

    Returns:
        float32 ``[H, W, 3]`` in 0..255.
    """
    index, level, sign = trivial_augment_draw(seed)
    return apply_op(image, index, level, sign, TRIVIAL_AUGMENT_SPACE)


def per_image(fn, images, seed) -> tf.Tensor:
    """``fn(image, seed_i)`` on each image of a ``[B, H, W, 3]`` batch, with its own seed."""
    images = tf.cast(images, tf.float32)
    base = as_seed(seed)

    def one(args):
        image, i = args
        return fn(image, tf.random.experimental.stateless_fold_in(base, tf.cast(i, tf.int64)))

    indices = tf.range(tf.shape(images)[0])
    return tf.map_fn(one, (images, indices), fn_output_signature=tf.float32)


def policy_for(config) -> Callable | None:
    """The enabled policy of an ``augment`` section as ``fn(image, seed)``; None without one.

    The seed is folded with a constant first, so the policy's draws are independent of the
    other ops' draws from the same per-image seed.
    """
    rand, trivial = config.rand_augment, config.trivial_augment
    if not (rand.enabled or trivial.enabled):
        return None

    def policy(image, seed) -> tf.Tensor:
        seed = tf.random.experimental.stateless_fold_in(as_seed(seed), 7)
        if rand.enabled:
            return rand_augment(image, rand.num_ops, rand.magnitude, seed)
        return trivial_augment(image, seed)

    return policy
