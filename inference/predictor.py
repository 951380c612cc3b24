"""TiledPredictor: a whole image in, probabilities out, in ONE tf.function.

Graph (no Python loop over tiles, no host round trip):
  uint8 [H, W, 3] -> (input_scale "native": bicubic enlargement by the model's scale)
  -> reflect padding to a tile grid: with an overlap_margin (`overlap`), overlap // 2
     reflected pixels around the image and tiles overlapping by `overlap`; with
     `min_overlap`, per image the smallest grid whose tiles overlap by >= min_overlap
  -> tf.while_loop over chunks of `batch_size` tiles, cut from the padded uint8 image by
     the `tiler`: "slices" (tiling.gather_tiles, per chunk; ~50x cheaper than
     extract_patches on a CPU) or "extract_patches" (tf.image.extract_patches once, the
     design's op, for GPUs); "auto" picks extract_patches when a GPU is visible
  -> /255, test-time augmentation, model, inverse augmentation, mean, x blend window
  -> overlap-add of the weighted tile probabilities / summed weights -> crop
  -> ("native": area-average back to H x W) -> probabilities float32 [H, W],
     mask uint8 [H, W] (0 / 255).
Only one chunk of tiles is ever converted to float; the float buffers that grow with
the image are the single-channel tile probabilities and the canvas.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np
import tensorflow as tf

from tiled_vessel_seg import imaging, model_loading
from tiled_vessel_seg.inference import blend as blend_lib
from tiled_vessel_seg.inference import input_scale as input_scale_lib
from tiled_vessel_seg.inference import tiling

TTAS = ("none", "flips", "d4")
INPUT_SCALES = ("enlarged", "native")
TILERS = ("auto", "extract_patches", "slices")


def resolve_tiler(tiler: str) -> str:
    """"auto" -> "extract_patches" when TensorFlow sees a GPU (where the graph will run),
    else "slices"; the others as they are."""
    if tiler not in TILERS:
        raise ValueError(f"tiler must be one of {', '.join(TILERS)}, got {tiler!r}")
    if tiler != "auto":
        return tiler
    return "extract_patches" if tf.config.list_logical_devices("GPU") else "slices"


def _identity(x):
    return x


def _flip_lr(x):
    return tf.reverse(x, [2])


def _flip_ud(x):
    return tf.reverse(x, [1])


def _rot180(x):
    return tf.reverse(x, [1, 2])


def _rot90(x):
    return tf.image.rot90(x, 1)


def _rot270(x):
    return tf.image.rot90(x, 3)


def _transpose(x):
    return tf.transpose(x, [0, 2, 1, 3])


def _anti_transpose(x):
    return tf.reverse(_transpose(x), [1, 2])


def tta_transforms(tta: str) -> list[tuple[Callable, Callable]]:
    """(forward, inverse) pairs acting on square tile batches [B, T, T, C].

    none: identity. flips: identity, left-right, up-down, both. d4: the 8 symmetries of
    the square (4 rotations, 2 flips, transpose, anti-transpose).
    """
    flips = [(_identity, _identity), (_flip_lr, _flip_lr), (_flip_ud, _flip_ud),
             (_rot180, _rot180)]
    if tta == "none":
        return flips[:1]
    if tta == "flips":
        return flips
    if tta == "d4":
        return flips + [(_rot90, _rot270), (_rot270, _rot90), (_transpose, _transpose),
                        (_anti_transpose, _anti_transpose)]
    raise ValueError(f"tta must be one of {', '.join(TTAS)}, got {tta!r}")


def model_tile_size(model) -> Optional[int]:
    """The square tile size fixed by the model's input shape, or None if dynamic."""
    shape = tuple(model.input_shape)
    if len(shape) != 4 or shape[-1] != 3:
        raise ValueError(f"model input shape {shape} is not [batch, height, width, 3]")
    h, w = shape[1], shape[2]
    if h is None or w is None:
        return None
    if h != w:
        raise ValueError(f"model input {h}x{w} is not square; tiles are square")
    return int(h)


class TiledPredictor:
    """Segments whole images of any size with a Keras tile model.

    model: takes float32 [B, T, T, 3] RGB in [0, 1], returns [B, T, T, 1] probabilities
      (any float dtype; cast to float32).
    tile_size: T; default the model's static input size (required if it is dynamic).
    overlap: pixels shared by neighbouring tiles, in [0, T), with overlap // 2 reflected
      pixels around the image (tiling.tile_grid).
    min_overlap: if given, replaces `overlap`: per image, the smallest grid whose tiles
      overlap by >= min_overlap, no margin (tiling.fitted_grid): fewer tiles.
    tiler: auto | extract_patches | slices (how tiles are cut; identical tiles).
    batch_size: tiles per model call.
    blend: gaussian | linear | none (see blend.py). tta: none | flips | d4.
    threshold: mask = probabilities > threshold.
    scale, input_scale: with input_scale "native" the image is enlarged by `scale` (the
      model's training scale) in the graph and the probabilities area-averaged back;
      "enlarged" feeds the image as it is.

    Call with uint8 [H, W, 3] (numpy or tensor) and optionally threshold=... ->
    (probabilities float32 [H, W], mask uint8 [H, W] in {0, 255}); `segment` is the
    tf.function itself, segment(image, threshold float32 scalar): one trace per
    predictor whatever the image size or threshold.
    """

    def __init__(self, model, *, tile_size: Optional[int] = None, overlap: int = 64,
                 batch_size: int = 4, blend: str = "gaussian", tta: str = "none",
                 threshold: float = 0.5, scale: int = 1, input_scale: str = "enlarged",
                 min_overlap: Optional[int] = None, tiler: str = "auto"):
        static = model_tile_size(model)
        if tile_size is None:
            if static is None:
                raise ValueError("the model takes any input size: pass tile_size")
            tile_size = static
        elif static is not None and static != tile_size:
            raise ValueError(f"tile_size {tile_size} != the model's input size {static}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if input_scale not in INPUT_SCALES:
            raise ValueError(f"input_scale must be one of {', '.join(INPUT_SCALES)}, "
                             f"got {input_scale!r}")
        if scale < 1:
            raise ValueError(f"scale must be >= 1, got {scale}")
        self.model = model
        self.tile_size = int(tile_size)
        self.fitted = min_overlap is not None
        self.overlap = int(min_overlap if self.fitted else overlap)
        if not 0 <= self.overlap < self.tile_size:
            raise ValueError(f"{'min_overlap' if self.fitted else 'overlap'} must be in "
                             f"[0, tile size {self.tile_size}), got {self.overlap}")
        self.tiler = resolve_tiler(tiler)
        self.batch_size = int(batch_size)
        self.blend = blend
        self.tta = tta
        self.threshold = float(threshold)
        self.enlarge = int(scale) if input_scale == "native" else 1
        self._profile = blend_lib.blend_profile(self.tile_size, self.overlap, blend)
        self._transforms = tta_transforms(tta)
        # The threshold is an argument of the graph, not a constant in it: changing
        # predictor.threshold or calling with threshold=... reuses the one trace.
        self.segment = tf.function(
            self.segment_graph, autograph=False,
            input_signature=[tf.TensorSpec([None, None, 3], tf.uint8, name="image"),
                             tf.TensorSpec([], tf.float32, name="threshold")])

    def __call__(self, image, threshold: Optional[float] = None):
        """uint8 [H, W, 3] -> (probabilities float32 [H, W], mask uint8 [H, W] 0/255);
        threshold: this call's (default self.threshold), without retracing."""
        value = self.threshold if threshold is None else threshold
        return self.segment(image, tf.constant(value, tf.float32))

    def tile_probabilities(self, tiles: tf.Tensor) -> tf.Tensor:
        """uint8 [b, T, T, 3] -> float32 [b, T, T], averaged over the TTA transforms."""
        x = tf.cast(tiles, tf.float32) / 255.0
        k = len(self._transforms)
        batch = tf.concat([fwd(x) for fwd, _ in self._transforms], axis=0) if k > 1 else x
        y = tf.cast(self.model(batch, training=False), tf.float32)
        y = tf.reshape(y, tf.concat([tf.shape(batch)[:3], [1]], 0))
        if k > 1:
            parts = tf.split(y, k, axis=0)
            y = tf.add_n([inv(p) for (_, inv), p in zip(self._transforms, parts)]) / k
        return y[..., 0]

    def segment_graph(self, image: tf.Tensor, threshold: Optional[tf.Tensor] = None):
        """The graph body of `segment` (also used by the serving export, which leaves
        threshold None: self.threshold as a constant)."""
        T, O, B = self.tile_size, self.overlap, self.batch_size
        image = tf.ensure_shape(image, [None, None, 3])
        if self.enlarge > 1:
            image = imaging.enlarge_image_graph(image, self.enlarge)  # = the Beam job's cv2 kernel
        h, w = tf.shape(image)[0], tf.shape(image)[1]
        grid = tiling.fitted_grid if self.fitted else tiling.tile_grid
        ny, top, bottom = grid(h, T, O)
        nx, left, right = grid(w, T, O)
        padded = tiling.reflect_pad(image, ((top, bottom), (left, right)))
        n = ny * nx
        offsets = tiling.tile_offsets((ny, nx), T, O)
        chunks = (n + B - 1) // B
        window = tf.constant(np.outer(self._profile, self._profile))
        if self.tiler == "extract_patches":  # all uint8 tiles at once, row-major
            every_tile = tiling.extract_tiles(padded, T, O)

        def body(i, acc):
            # The last chunk may be short: clamp its indices, then drop the repeats.
            index = tf.minimum(i * B + tf.range(B), n - 1)
            if self.tiler == "extract_patches":
                tiles = tf.gather(every_tile, index)
            else:
                tiles = tiling.gather_tiles(padded, tf.gather(offsets, index), T)
            probs = self.tile_probabilities(tiles[:tf.minimum(B, n - i * B)])
            return i + 1, acc.write(i, probs * window)

        acc = tf.TensorArray(tf.float32, size=chunks, infer_shape=False,
                             element_shape=tf.TensorShape([None, T, T]))
        # parallel_iterations=1: one chunk of float tiles in flight at a time.
        _, acc = tf.while_loop(lambda i, _: i < chunks, body, [tf.constant(0), acc],
                               parallel_iterations=1)
        canvas = tiling.overlap_add(acc.concat(), (ny, nx), O)
        profile = tf.constant(self._profile)
        wy = tiling.overlap_add_1d(tf.tile(profile[None, None], [1, ny, 1]), T - O)[0]
        wx = tiling.overlap_add_1d(tf.tile(profile[None, None], [1, nx, 1]), T - O)[0]
        probs = (canvas[top:top + h, left:left + w]
                 / (wy[top:top + h, None] * wx[None, left:left + w]))
        if self.enlarge > 1:
            s = self.enlarge
            probs = tf.nn.avg_pool2d(probs[None, :, :, None], s, s, "VALID")[0, :, :, 0]
        if threshold is None:
            threshold = tf.constant(self.threshold, tf.float32)
        mask = tf.cast(probs > threshold, tf.uint8) * 255
        return probs, mask


def load_predictor(model_dir: str, *, overlap: Optional[int] = None, batch_size: int = 4,
                   blend: str = "gaussian", tta: str = "none",
                   threshold: Optional[float] = None,
                   input_scale: str = "enlarged", min_overlap: Optional[int] = None,
                   tiler: str = "auto") -> TiledPredictor:
    """A TiledPredictor for `model_dir`; overlap and threshold default to model_info.json;
    min_overlap (the fitted grid) replaces overlap when given.

    input_scale "auto" or a number gives an input_scale.AutoScalePredictor: each photo
    resampled to the model's FOV diameter (or by the number), else, for models that
    record none, native or enlarged chosen per image by size (inference/input_scale.py).
    """
    model, info = model_loading.load_model(model_dir)

    def make(scale: str) -> TiledPredictor:
        return TiledPredictor(
            model, tile_size=model_tile_size(model) or info.tile_size,
            overlap=info.overlap if overlap is None else overlap, batch_size=batch_size,
            blend=blend, tta=tta, threshold=info.threshold if threshold is None else threshold,
            scale=info.scale, input_scale=scale, min_overlap=min_overlap, tiler=tiler)

    return input_scale_lib.scaled_predictor(make, info, input_scale)
