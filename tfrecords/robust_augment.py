"""Online augmentation for photographs from other cameras: zoom, blur, gamma, channel
gains and JPEG re-compression of a training tile, in the tf.data graph (training only).

Vessel widths in pixels depend on the camera and the resolution, colour and contrast on the
camera and its settings, sharpness on focus and on resampling, and many photographs reach a
user as JPEG. The offline augmentations of the Beam job (flips, rotations, elastic) move
none of these, so a model trained on 7 STARE photographs learns their one scale and colour;
this module draws a fresh change per tile and epoch.

Order: zoom (image and label planes together, one geometric transform) -> blur -> gamma ->
per-channel gains -> clip to [0, 1] -> JPEG. Everything is stateless in the seed, so a
seeded input pipeline gives the same tiles run to run.
"""
from __future__ import annotations

import dataclasses
import math

import tensorflow as tf

from tiled_vessel_seg.configs import schema


@dataclasses.dataclass(frozen=True)
class RobustAugmentation:
    """What to draw per tile (the identity by default).

    zoom_range: (low, high) factor on vessel widths, drawn log-uniformly; > 1 magnifies a
      central-ish crop, < 1 shrinks the tile into a black (label 0) border, as a photo
      taken at a lower resolution would look.
    channel_gain: per-channel gains drawn uniformly in [1 - channel_gain, 1 + channel_gain].
    gamma_range: (low, high) exponent on intensities in [0, 1], drawn log-uniformly.
    blur_sigma: half the tiles are blurred by a Gaussian of sigma uniform in [0, blur_sigma] px.
    jpeg_quality: half the tiles are re-compressed as JPEG at a quality uniform in
      [jpeg_quality, 100]; 100 turns it off.
    """
    zoom_range: tuple[float, float] = (1.0, 1.0)
    channel_gain: float = 0.0
    gamma_range: tuple[float, float] = (1.0, 1.0)
    blur_sigma: float = 0.0
    jpeg_quality: int = 100

    def __post_init__(self):  # the limits are the config schema's ([train] augment_*)
        schema.check_robust_augmentation(self.zoom_range, self.gamma_range,
                                         self.channel_gain, self.blur_sigma,
                                         self.jpeg_quality)

    @property
    def is_identity(self) -> bool:
        return self == RobustAugmentation()


def from_train_config(train: schema.TrainConfig) -> RobustAugmentation:
    """The spec of a config's [train] augment_* keys (configs.schema.TrainConfig)."""
    return RobustAugmentation(
        zoom_range=train.augment_zoom, channel_gain=train.augment_channel_gain,
        gamma_range=train.augment_gamma, blur_sigma=train.augment_blur_sigma,
        jpeg_quality=train.augment_jpeg_quality)


def _log_uniform(seed: tf.Tensor, low: float, high: float) -> tf.Tensor:
    return tf.exp(tf.random.stateless_uniform([], seed, math.log(low), math.log(high)))


def zoom(image: tf.Tensor, planes: tf.Tensor, factor: tf.Tensor, offset: tf.Tensor
         ) -> tuple[tf.Tensor, tf.Tensor]:
    """Magnify (factor > 1) or shrink (factor < 1) a tile and its label planes together.

    image: float32 [H, W, 3]; planes: float32 [H, W, C] in {0, 1} (vessels, and any other
    label plane that must move with them); factor: float32 scalar; offset: float32 [2] in
    [0, 1], where the window sits in the range it can move in. The output window covers
    1/factor of the tile per axis (outside the tile: image 0, planes 0); bilinear
    resampling, planes thresholded back to {0, 1} at one half.
    Returns (image float32 [H, W, 3], planes float32 [H, W, C]).
    """
    height, width = tf.shape(image)[0], tf.shape(image)[1]
    side = 1.0 / factor
    start = offset * (1.0 - side)  # in [0, 1 - side] when side < 1, [1 - side, 0] else
    box = tf.stack([start[0], start[1], start[0] + side, start[1] + side])[None]
    channels = tf.shape(image)[-1]
    both = tf.image.crop_and_resize(tf.concat([image, planes], -1)[None], box, [0],
                                    tf.stack([height, width]), method="bilinear",
                                    extrapolation_value=0.0)[0]
    return (both[..., :channels],
            tf.cast(both[..., channels:] >= 0.5, tf.float32))


def gaussian_blur(image: tf.Tensor, sigma: tf.Tensor, radius: int) -> tf.Tensor:
    """Separable Gaussian blur with reflected borders.

    image: float32 [H, W, C]; sigma: float32 scalar px (~0: unchanged); radius: static
    half-width of the kernel. Returns float32 [H, W, C].
    """
    x = tf.range(-radius, radius + 1, dtype=tf.float32)
    weights = tf.exp(-tf.square(x) / (2.0 * tf.square(sigma) + 1e-6))
    weights = weights / tf.reduce_sum(weights)
    channels = tf.shape(image)[-1]
    padded = tf.pad(image, [[radius, radius], [radius, radius], [0, 0]], mode="REFLECT")[None]
    rows = tf.tile(tf.reshape(weights, [-1, 1, 1, 1]), [1, 1, channels, 1])
    columns = tf.reshape(rows, [1, -1, channels, 1])
    out = tf.nn.depthwise_conv2d(padded, rows, [1, 1, 1, 1], "VALID")
    return tf.nn.depthwise_conv2d(out, columns, [1, 1, 1, 1], "VALID")[0]


def robust_augment(image: tf.Tensor, mask: tf.Tensor, seed: tf.Tensor,
                   spec: RobustAugmentation) -> tuple[tf.Tensor, tf.Tensor]:
    """One random draw of `spec` for one tile.

    image: float32 [H, W, 3] in [0, 1]; mask: float32 [H, W, C] in {0, 1} (C label planes
    moved by the zoom with the image); seed: int32/int64 [2].
    Returns (image float32 [H, W, 3] in [0, 1], mask float32 [H, W, C]).
    """
    seeds = tf.random.experimental.stateless_split(tf.cast(seed, tf.int64), num=8)
    if spec.zoom_range != (1.0, 1.0):
        factor = _log_uniform(seeds[0], *spec.zoom_range)
        offset = tf.random.stateless_uniform([2], seeds[1])
        image, mask = zoom(image, mask, factor, offset)
    if spec.blur_sigma > 0.0:
        sigma = tf.random.stateless_uniform([], seeds[2], 0.0, spec.blur_sigma)
        sigma = tf.where(tf.random.stateless_uniform([], seeds[3]) < 0.5, sigma, 0.0)
        image = tf.cond(sigma > 0.05, lambda: gaussian_blur(
            image, sigma, radius=max(1, math.ceil(3.0 * spec.blur_sigma))), lambda: image)
    if spec.gamma_range != (1.0, 1.0):
        image = tf.pow(tf.maximum(image, 1e-6), _log_uniform(seeds[4], *spec.gamma_range))
    if spec.channel_gain > 0.0:
        image = image * tf.random.stateless_uniform(
            [3], seeds[5], 1.0 - spec.channel_gain, 1.0 + spec.channel_gain)
    image = tf.clip_by_value(image, 0.0, 1.0)
    if spec.jpeg_quality < 100:
        shape = tf.shape(image)
        image = tf.cond(
            tf.random.stateless_uniform([], seeds[6]) < 0.5,
            lambda: tf.reshape(tf.image.stateless_random_jpeg_quality(
                image, spec.jpeg_quality, 100, seeds[7]), shape),
            lambda: image)
    return image, mask
