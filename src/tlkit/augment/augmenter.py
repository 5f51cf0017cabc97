"""The object the data pipeline calls: per-image ops, then batched ops.

``per_image`` runs the geometric ops, RandAugment / TrivialAugment and, by default, mirror /
colour shift / PCA colour (one image stays in cache through the chain); ``per_batch`` runs
mixup / cutmix (and the pixel ops when built with ``pixel_ops="per_batch"``). The pipeline calls
both, always.

Typical tf.data use (``augmenter.apply`` does exactly this)::

    aug = build_augmenter(config, image_size=224, pca=stats, seed=recipe.seed)
    size = aug.load_size(224)                        # decode/resize to this square side
    ds = tf.data.Dataset.zip((ds, seed_stream(seed)))            # (image, label), seed[2]
    ds = ds.map(lambda el, s: (aug.per_image(el[0], s), el[1]), num_parallel_calls=AUTOTUNE)
    ds = tf.data.Dataset.zip((ds.batch(64), seed_stream(seed + 1)))
    ds = ds.map(lambda b, s: aug.per_batch(b[0], b[1], s), num_parallel_calls=AUTOTUNE)
"""

from __future__ import annotations

from typing import Literal

import tensorflow as tf

from tlkit.augment import ops, pixels, policies
from tlkit.augment.albumentations_backend import AlbumentationsRunner
from tlkit.augment.config import CROP_LOAD_RATIO, AugmentConfig
from tlkit.augment.pca import PCAStats, resolve_pca_stats  # re-exported here too
from tlkit.errors import UserError
from tlkit.imageops import decode_rgb, decode_window, seed_stream, whole_image


class Augmenter:
    """Augmentation for one model input size, built from an :class:`AugmentConfig`.

    Use :func:`build_augmenter` to make one. All methods are TensorFlow graph code: they work
    in ``tf.data.Dataset.map``, ``tf.function`` and eagerly, and give the same result for the
    same seed.
    """

    def __init__(
        self,
        config: AugmentConfig,
        *,
        image_size: int,
        pca: PCAStats | None = None,
        seed: int = 0,
        pixel_ops: Literal["per_image", "per_batch"] = "per_image",
        output_dtype: Literal["float32", "uint8"] = "float32",
    ):
        if output_dtype not in ("float32", "uint8"):
            raise ValueError(f"output_dtype must be 'float32' or 'uint8', got {output_dtype!r}")
        self.config = config
        self.output_dtype = tf.as_dtype(output_dtype)
        self.image_size = int(image_size)
        self.pca = pca
        self.seed = int(seed)
        self.pixel_ops = pixel_ops
        self._albumentations = None
        self._policy = policies.policy_for(config)  # per image, in per_image or the layer
        self._check()
        if config.backend == "albumentations":
            self._albumentations = AlbumentationsRunner(config.albumentations, self.image_size)

    @property
    def pixel_ops_per_image(self) -> bool:
        """True when :meth:`per_image` also runs mirror, colour shift and PCA colour.

        That is the default for ``device: pipeline``: on a CPU, one image's pixels stay in cache
        through the whole chain, 2.5-4x faster than the same ops over a batch (see
        benchmarks/augment_throughput.py). ``pixel_ops="per_batch"`` moves them to
        :meth:`per_batch`; ``device: model`` moves them to the Keras layer.
        """
        return self.config.device == "pipeline" and self.pixel_ops == "per_image"

    def _check(self) -> None:
        c, size = self.config, self.image_size
        if c.scale_jitter.enabled:
            s_min, _ = c.scale_jitter.resolved_range(size)
            if s_min < size:
                raise UserError(
                    f"augment.scale_jitter.s_min ({s_min}) is below the image size ({size}): "
                    "S must cover the crop"
                )
        if self.load_size() < size:
            raise UserError(
                f"augment load_size ({self.load_size()}) is below the image size ({size})"
            )
        if c.pca_colour.enabled and self.pca is None:
            raise UserError(
                "augment.pca_colour is enabled but has no statistics: compute them with "
                "tlkit.augment.compute_pca_stats(train_images) and pass pca=..., or set "
                "augment.pca_colour.stats: imagenet"
            )

    # --- sizes -----------------------------------------------------------------------------------

    def load_size(self, image_size: int | None = None) -> int:
        """The square side to decode/resize images to before :meth:`per_image`.

        ``image_size`` without crop or jitter; ``crop.load_size`` or round(image_size * 8/7)
        with random crop (256 for 224); ``scale_jitter.load_size`` or the resolved S_max with
        scale jitter (512 for 224: the largest scale is never an upsample; set
        ``scale_jitter.load_size`` lower to bound memory, at S_max that is 3 MB per float32
        image); ``albumentations.load_size`` or image_size for the albumentations backend.
        """
        size = int(image_size or self.image_size)
        c = self.config
        if c.backend == "albumentations":
            return c.albumentations.load_size or size
        if c.scale_jitter.enabled:
            return c.scale_jitter.load_size or c.scale_jitter.resolved_range(size)[1]
        if c.crop.enabled:
            return c.crop.load_size or round(size * CROP_LOAD_RATIO)
        return size

    @property
    def scale_range(self) -> tuple[int, int] | None:
        """``(S_min, S_max)`` in pixels when scale jitter is on."""
        if not self.config.scale_jitter.enabled:
            return None
        return self.config.scale_jitter.resolved_range(self.image_size)

    def _fold(self, seed) -> tf.Tensor:
        return tf.random.experimental.stateless_fold_in(
            ops.as_seed(seed), tf.constant(self.seed, tf.int64)
        )

    # --- per image -------------------------------------------------------------------------------

    def per_image(self, image, seed) -> tf.Tensor:
        """Per-image ops on one image (0..255, any dtype) -> ``[image_size, image_size, 3]``.

        The image is normally ``[L, L, 3]`` with ``L = load_size()``; any other size (e.g. the
        raw decoded image) is treated as if first resized to ``[L, L]``, and for crops and scale
        jitter that resize is fused into the crop: one bilinear resampling pass instead of two.
        An image already at ``[L, L]`` (static shape) gives exact sub-windows. For files,
        :meth:`decode_per_image` goes further and decodes only the window.

        Geometric ops in order: scale jitter (the ``[L, L]`` image's shortest side to S),
        rotation and shear, local warp, random crop to ``image_size`` (without crop or jitter,
        a resize to ``image_size`` if needed). Then RandAugment / TrivialAugment (``device:
        pipeline``) and, when :attr:`pixel_ops_per_image`, mirror, colour shift and PCA colour,
        clipped to 0..255. Returns :attr:`output_dtype` (float32 by default).
        """
        seed = self._fold(seed)
        if self._albumentations is not None:
            x = self._albumentations.tf_apply(image, seed)
            if self.pixel_ops_per_image:
                x = self._pixels_one(x, ops.split_seed(seed, 6))
            return self._output(x)
        seeds = ops.split_seed(seed, 5)
        pixel_seeds = ops.split_seed(seeds[4], 6)
        x, mirrored = self._geometric(tf.convert_to_tensor(image), seeds, pixel_seeds[0])
        return self._finish(x, pixel_seeds, mirrored)

    @property
    def fuses_decode(self) -> bool:
        """True when :meth:`decode_per_image` can decode just the crop window: the built-in
        backend without rotation, shear or local warp (those need the whole image)."""
        c = self.config
        return self._albumentations is None and not (
            c.rotation.enabled or c.shear.enabled or c.warp.enabled
        )

    def decode_per_image(self, contents, seed, region=None) -> tf.Tensor:
        """:meth:`per_image` from an encoded file: decodes only the pixels the crop uses.

        The crop window (random crop, scale jitter, or the whole image) is drawn from the image
        size, read from the JPEG header without decoding, exactly as :meth:`per_image` draws it
        for the image resized to ``[L, L]``; then ``tf.io.decode_and_crop_jpeg`` decodes only
        that window, at a 1/2, 1/4 or 1/8 DCT scale when the window is at least twice the
        output size (see :func:`tlkit.imageops.decode_window`), and one bilinear pass
        resizes it to ``image_size``. Other formats are decoded whole and sliced. With the same
        seed the result matches ``per_image(decode(contents))`` up to resampling (the same
        window, mirror and colour draws).

        ``region`` (``hw -> (start [2], extent [2])``, default the whole image) is the part of
        the image that :meth:`per_image` would have been given, resized to ``[L, L]``: the
        central square for the ``centre_crop`` resize policy
        (:func:`tlkit.imageops.square_region`).

        Only when :attr:`fuses_decode`; otherwise decode and call :meth:`per_image`.
        """
        if not self.fuses_decode:
            image = decode_rgb(contents)
            if region is not None:
                start, extent = region(tf.shape(image)[:2])
                image = tf.slice(image, tf.concat([start, [0]], 0), tf.concat([extent, [3]], 0))
            return self.per_image(image, seed)
        region = region or whole_image
        size = self.image_size
        seeds = ops.split_seed(self._fold(seed), 5)
        pixel_seeds = ops.split_seed(seeds[4], 6)
        virtual = self._virtual_size(seeds[0])

        def window_fn(hw):
            start, extent = region(hw)
            if virtual is None:
                return start, extent
            offset, window = ops.crop_window(extent, virtual, size, seeds[3])
            return start + offset, window

        flip = self._mirror_draw(pixel_seeds[0])  # applied after colour and cast (``then``)
        finish = lambda x: self._finish(x, pixel_seeds, flip is not None)  # noqa: E731
        x = decode_window(contents, window_fn, min_side=size, resize_to=size, flip=flip, then=finish)
        return tf.ensure_shape(x, [size, size, 3])

    def _finish(self, x, pixel_seeds, mirrored: bool) -> tf.Tensor:
        if self._policy is not None and self.config.device == "pipeline":
            x = self._policy(x, pixel_seeds[0])
        if self.pixel_ops_per_image:
            x = self._pixels_one(x, pixel_seeds, mirrored=mirrored)
        return tf.ensure_shape(self._output(x), [self.image_size, self.image_size, 3])

    def _mirror_draw(self, seed):
        """The mirror decision when the geometric step applies it, else None."""
        if self.pixel_ops_per_image and self.config.mirror.enabled:
            return ops.flip_draw(self.config.mirror.p, seed)
        return None

    def _virtual_size(self, seed):
        """``[2]`` size of the view the crop is taken from: ``[S, S]`` with scale jitter (the
        ``[L, L]`` image rescaled to shortest side S), ``[L, L]`` with a random crop, else None."""
        c = self.config
        if c.scale_jitter.enabled:
            s = ops.scale_jitter_size(seed, *self.scale_range)
            return tf.stack([s, s])
        if c.crop.enabled:
            side = self.load_size()
            return tf.constant([side, side])
        return None

    def _geometric(self, x, seeds, mirror_seed) -> tuple[tf.Tensor, bool]:
        """The geometric ops; also returns whether the mirror was folded into the crop."""
        c, size, side = self.config, self.image_size, self.load_size()
        warped = c.rotation.enabled or c.shear.enabled or c.warp.enabled
        at_load_size = tuple(x.shape[:2]) == (side, side)
        if not warped and (c.scale_jitter.enabled or (c.crop.enabled and not at_load_size)):
            # one resampling pass: (resize,) crop and mirror together
            flip = self._mirror_draw(mirror_seed)
            x = ops.resized_crop(x, self._virtual_size(seeds[0]), size, seeds[3], flip=flip)
            return x, flip is not None
        if c.scale_jitter.enabled:
            if not at_load_size:
                x = tf.image.resize(x, [side, side])
            s_min, s_max = self.scale_range
            x = ops.rescale_shortest_side(x, ops.scale_jitter_size(seeds[0], s_min, s_max))
        elif (c.crop.enabled or warped) and not at_load_size:
            x = tf.image.resize(x, [side, side])
        if c.rotation.enabled or c.shear.enabled:
            degrees = c.rotation.max_degrees if c.rotation.enabled else 0.0
            shear = c.shear.max_shear if c.shear.enabled else 0.0
            x = ops.random_affine(x, degrees, shear, seeds[1])
        if c.warp.enabled:
            x = ops.local_warp(x, c.warp.magnitude, c.warp.grid, seeds[2])
        if c.scale_jitter.enabled or c.crop.enabled:
            x = ops.random_crop(x, size, seeds[3])
        elif tuple(x.shape[:2]) != (size, size):
            x = tf.image.resize(x, [size, size], antialias=True)
        return x, False

    def _output(self, x) -> tf.Tensor:
        """Cast to :attr:`output_dtype` (uint8: rounded half up; values are already in 0..255)."""
        if x.dtype == self.output_dtype:
            return x
        if self.output_dtype == tf.uint8:  # every op keeps values in 0..255 (colour ops clip)
            return tf.cast(x + 0.5, tf.uint8)  # round half up: one pass fewer than tf.round
        return tf.cast(x, self.output_dtype)

    def _pixels_one(self, image, seeds, *, mirrored: bool = False) -> tf.Tensor:
        """Mirror, colour shift and PCA colour on one image. uint8 in and out with offsets only:
        :func:`~tlkit.augment.pixels.add_offsets_uint8` (exact). Else float32; for uint8 output
        the rounding is folded into the clip (offsets + 0.5, clipped to 255.75, truncated)."""
        c = self.config
        x = image
        if c.mirror.enabled and not mirrored:
            x = ops.flip_one(x, c.mirror.p, seeds[0])
        blends = c.colour_shift.enabled and (c.colour_shift.contrast or c.colour_shift.saturation)
        if x.dtype == self.output_dtype == tf.uint8 and not blends:  # offsets only: exact
            colour = self._colour(tf.zeros([1, 1, 1, 3]), seeds)
            return x if colour is None else pixels.add_offsets_uint8(x, colour[1][0])
        x = tf.cast(x, tf.float32)
        colour = self._colour(x[tf.newaxis], seeds)
        if colour is None:
            return x
        x, offsets = colour
        if self.output_dtype == tf.uint8:
            x = pixels.add_channel_offsets(x[0], offsets[0] + 0.5)
            return tf.cast(tf.clip_by_value(x, 0.0, 255.75), tf.uint8)
        return pixels.clip_pixels(pixels.add_channel_offsets(x[0], offsets[0]))

    def _colour(self, x, seeds):
        """Contrast/saturation on batch ``x``, and the summed per-image RGB offsets ``[B, 3]``."""
        c, shift = self.config, self.config.colour_shift
        if not (shift.enabled or c.pca_colour.enabled):
            return None
        n = tf.shape(x)[0]
        offsets = tf.zeros([n, 3])
        if shift.enabled:
            if shift.contrast:
                x = pixels.random_contrast(x, shift.contrast, seeds[1])
            if shift.saturation:
                x = pixels.random_saturation(x, shift.saturation, seeds[2])
            offsets += pixels.rgb_offsets(n, shift.max_offset, seeds[3])
            if shift.brightness:
                offsets += pixels.brightness_offsets(n, shift.brightness, seeds[4])
        if c.pca_colour.enabled:
            pca = self.pca
            offsets += pixels.pca_offsets(n, pca.eigvals, pca.eigvecs, c.pca_colour.sigma, seeds[5])
        return x, offsets

    # --- per batch -------------------------------------------------------------------------------

    @property
    def has_batch_ops(self) -> bool:
        """False when :meth:`per_batch` has nothing to do: the pipeline then skips that step."""
        c = self.config
        per_batch_pixels = c.device == "pipeline" and not self.pixel_ops_per_image
        return per_batch_pixels or c.mixup.enabled or c.cutmix.enabled

    def per_batch(self, images, labels, seed) -> tuple[tf.Tensor, tf.Tensor]:
        """Batched ops on ``[B, S, S, 3]`` images (0..255) and their labels.

        Mirror, colour shift and PCA colour run here only with ``pixel_ops="per_batch"`` (by
        default :meth:`per_image` ran them; with ``device: model`` the Keras layer runs them).
        Then mixup / cutmix, which need one-hot labels. Images come back as
        :attr:`output_dtype` (float32 unless built with ``output_dtype="uint8"``).
        """
        seeds = ops.split_seed(self._fold(seed), 2)
        if self.config.device == "pipeline" and not self.pixel_ops_per_image:
            images = self.per_batch_pixels(images, seeds[0], fold=False)
        images, labels = self.mix_batch(images, labels, seeds[1], fold=False)
        return self._output(tf.convert_to_tensor(images)), labels

    def per_batch_pixels(self, images, seed, *, fold: bool = True) -> tf.Tensor:
        """Mirror, colour shift and PCA colour on a batch; float32, clipped to 0..255. With
        ``device: model`` the policy (RandAugment / TrivialAugment) runs first, per image."""
        c = self.config
        seeds = ops.split_seed(self._fold(seed) if fold else seed, 6)
        x = tf.convert_to_tensor(images)
        if self._policy is not None and self.config.device == "model":
            x = policies.per_image(self._policy, x, seeds[0])
        if c.mirror.enabled:
            x = ops.flip_left_right(x, c.mirror.p, seeds[0])
        x = tf.cast(x, tf.float32)
        colour = self._colour(x, seeds)
        if colour is None:
            return x
        x, offsets = colour
        return pixels.clip_pixels(pixels.add_channel_offsets(x, offsets))

    def mix_batch(self, images, labels, seed, *, fold: bool = True):
        """mixup / cutmix (one of the two per image when both are on); labels must be one-hot."""
        c = self.config
        if not (c.mixup.enabled or c.cutmix.enabled):
            return images, labels
        seeds = ops.split_seed(self._fold(seed) if fold else seed, 3)
        if c.mixup.enabled and c.cutmix.enabled:
            mx, my = pixels.mixup(images, labels, c.mixup.alpha, seeds[0])
            cx, cy = pixels.cutmix(images, labels, c.cutmix.alpha, seeds[1])
            pick = tf.random.stateless_uniform([tf.shape(mx)[0]], seed=seeds[2]) < 0.5
            return (
                tf.where(pick[:, None, None, None], mx, cx),
                tf.where(pick[:, None], my, cy),
            )
        if c.mixup.enabled:
            return pixels.mixup(images, labels, c.mixup.alpha, seeds[0])
        return pixels.cutmix(images, labels, c.cutmix.alpha, seeds[1])

    # --- conveniences ----------------------------------------------------------------------------

    def apply(
        self,
        dataset: tf.data.Dataset,
        batch_size: int,
        seed: int | None = None,
        *,
        resize: bool = True,
        drop_remainder: bool = False,
    ) -> tf.data.Dataset:
        """Augment an unbatched ``(image, label)`` dataset and batch it.

        Images are resized to :meth:`load_size` first when ``resize`` (skip it when the
        pipeline already decodes to that size). Seeds come from :func:`seed_stream`, so epochs
        differ and runs repeat.
        """
        seed = self.seed if seed is None else int(seed)
        side = self.load_size()
        autotune = tf.data.AUTOTUNE

        def one(element, image_seed):
            image, label = element
            if resize and tuple(image.shape[:2]) != (side, side):
                image = tf.image.resize(image, [side, side], antialias=True)
            return self.per_image(image, image_seed), label

        ds = tf.data.Dataset.zip((dataset, seed_stream(seed)))
        ds = ds.map(one, num_parallel_calls=autotune).batch(batch_size, drop_remainder)
        if not self.has_batch_ops:
            return ds
        ds = tf.data.Dataset.zip((ds, seed_stream(seed + 1)))
        return ds.map(lambda b, s: self.per_batch(b[0], b[1], s), num_parallel_calls=autotune)


def build_augmenter(
    config: AugmentConfig | dict,
    *,
    image_size: int,
    pca: PCAStats | dict | None = None,
    seed: int = 0,
    pixel_ops: Literal["per_image", "per_batch"] = "per_image",
    output_dtype: Literal["float32", "uint8"] = "float32",
) -> Augmenter | None:
    """The :class:`Augmenter` for ``config`` at ``image_size``; None when nothing is enabled.

    Args:
        config: The recipe's ``augment`` section (or its dict).
        image_size: The model's square input side.
        pca: Training-set statistics from :func:`~tlkit.augment.compute_pca_stats`; default the
            config's ``pca_colour.stats``. Required when PCA colour is enabled.
        seed: Folded into every seed, so runs with different recipe seeds differ.
        pixel_ops: Where mirror, colour shift and PCA colour run with ``device: pipeline``:
            in :meth:`Augmenter.per_image` (default, faster on CPU) or in
            :meth:`Augmenter.per_batch`.
        output_dtype: What ``per_image`` and ``per_batch`` return. ``uint8`` (rounded) keeps
            batches 4x smaller; the model then casts on the accelerator (Keras casts inputs
            to the ``Input`` dtype).

    Raises:
        UserError: sizes that do not fit, PCA colour without statistics, a bad albumentations
            pipeline.
    """
    if not isinstance(config, AugmentConfig):
        try:
            config = AugmentConfig.model_validate(config)
        except ValueError as exc:
            raise UserError(f"augment: {exc}") from None
    if not config.any_enabled:
        return None
    stats = resolve_pca_stats(config, pca)
    return Augmenter(
        config, image_size=image_size, pca=stats, seed=seed, pixel_ops=pixel_ops,
        output_dtype=output_dtype,
    )  # fmt: skip
