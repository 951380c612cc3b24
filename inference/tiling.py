"""Pure TensorFlow graph functions: tile grid, reflect padding, tiles, overlap-add.

All shapes are dynamic (images of any size) and everything runs inside one graph.
Conventions: T = tile size, S = T - overlap = stride, a tile grid of n tiles along an
axis covers (n - 1) * S + T pixels.
"""
from __future__ import annotations

import tensorflow as tf


def tile_grid(size: tf.Tensor, tile_size: int, overlap: int):
    """Tile count and padding along one axis of length `size` (int32 scalar tensors).

    The image is first given a margin of overlap // 2 reflected pixels on each side (so
    that image borders do not sit at a tile border, where a conv net sees padding), then
    padded up to the smallest grid of tiles at stride T - overlap that covers it, the
    extra split evenly before/after. Returns (count, pad_before, pad_after).
    """
    stride = tile_size - overlap
    margin = overlap // 2
    needed = size + 2 * margin
    count = 1 + tf.maximum(0, (needed - tile_size + stride - 1) // stride)
    padded = (count - 1) * stride + tile_size
    before = margin + (padded - needed) // 2
    return count, before, padded - size - before


def fitted_grid(size: tf.Tensor, tile_size: int, min_overlap: int):
    """The smallest tile grid along one axis whose tiles overlap by >= min_overlap px.

    count = ceil((size - min_overlap) / (T - min_overlap)) tiles (at least 1) at stride
    T - min_overlap cover (count - 1) * stride + T >= size pixels; the few pixels over
    are reflected padding, split evenly before/after (no margin beyond that). At STARE's
    enlarged 3025 x 3500 and T = 512 that is 6 x 7 = 42 tiles for min_overlap <= 9, where
    `tile_grid` with overlap 64 takes 7 x 8 = 56. Returns (count, pad_before, pad_after).
    """
    stride = tile_size - min_overlap
    count = tf.maximum(1, (size - min_overlap + stride - 1) // stride)
    padded = (count - 1) * stride + tile_size
    before = (padded - size) // 2
    return count, before, padded - size - before


# The grid the tools use unless told otherwise (--overlap, --min_overlap, a config):
# fitted_grid with min_overlap 8. On the 7 STARE photos with stare_small (256 px tiles)
# it cuts 9 tiles instead of 12 per photo at the same F1 inside the FOV (0.8024 vs
# 0.7989 for tile_grid's overlap 32), and 195 instead of 224 with them enlarged 5x in the
# graph (0.4364 vs 0.4365); benchmarks/grid_quality_bench.py, README.
DEFAULT_MIN_OVERLAP = 8


def reflect_indices(size: tf.Tensor, before: tf.Tensor, after: tf.Tensor) -> tf.Tensor:
    """int32 [before + size + after]: source index of every padded position under
    reflection (edge pixel not repeated, as numpy/TF 'reflect'), for ANY pad amount.

    Unlike tf.pad(mode='REFLECT') the padding may exceed size - 1: the reflection
    repeats with period 2 * (size - 1); a size-1 axis just repeats its one pixel.
    """
    i = tf.range(-before, size + after)
    period = tf.maximum(2 * (size - 1), 1)
    m = tf.math.floormod(i, period)
    return tf.where(m < size, m, period - m)


def reflect_pad(image: tf.Tensor, pads) -> tf.Tensor:
    """Reflect-pads the first two axes of `image` [H, W, ...] by
    pads = ((top, bottom), (left, right)), any amounts, via two gathers."""
    shape = tf.shape(image)
    (top, bottom), (left, right) = pads
    image = tf.gather(image, reflect_indices(shape[0], top, bottom), axis=0)
    return tf.gather(image, reflect_indices(shape[1], left, right), axis=1)


def extract_tiles(padded: tf.Tensor, tile_size: int, overlap: int) -> tf.Tensor:
    """[Hp, Wp, C] (any dtype, uint8 stays uint8) -> tiles [ny * nx, T, T, C], row-major,
    tile (i, j) starting at (i * S, j * S), via tf.image.extract_patches.

    The predictor takes each chunk's tiles with `gather_tiles` instead (same tiles,
    ~50x faster on CPU, no tile stack in memory); this one serves the benchmark and
    the tests as the reference tile stack."""
    stride = tile_size - overlap
    channels = padded.shape[-1]
    patches = tf.image.extract_patches(
        padded[None], sizes=[1, tile_size, tile_size, 1], strides=[1, stride, stride, 1],
        rates=[1, 1, 1, 1], padding="VALID")
    return tf.reshape(patches, [-1, tile_size, tile_size, channels])


def tile_offsets(grid_shape, tile_size: int, overlap: int) -> tf.Tensor:
    """int32 [ny * nx, 2]: top-left (y, x) of every tile of the grid, row-major."""
    ny, nx = grid_shape
    k = tf.range(ny * nx)
    return tf.stack([k // nx, k % nx], axis=1) * (tile_size - overlap)


def gather_tiles(padded: tf.Tensor, offsets: tf.Tensor, tile_size: int) -> tf.Tensor:
    """[Hp, Wp, C] and int32 offsets [b, 2] with a static b -> tiles [b, T, T, C], same
    dtype, by b strided slices (a copy of b tiles, nothing else; unlike
    tf.image.extract_patches, which costs ~1-2 s per 3500x3025 image on a CPU)."""
    return tf.stack([padded[offsets[k, 0]:offsets[k, 0] + tile_size,
                            offsets[k, 1]:offsets[k, 1] + tile_size]
                     for k in range(offsets.shape[0])])


def _fold(x: tf.Tensor, stride: int) -> tf.Tensor:
    """Overlap-add along axis 1: x [A, n, T, R] -> [A, (n - 1) * stride + T, R],
    out[a, k * stride + t] += x[a, k, t]. Dense slices and adds, no scatter.

    overlap = T - stride <= stride (the usual case): the output is, per tile k, an
    overlap zone (tile k's first `overlap` rows + tile k-1's last ones) then tile k's
    own rows; the last tile's tail closes it. Larger overlaps: each tile is cut into
    m = ceil(T / stride) pieces; piece j of tile k lands on output piece k + j.
    """
    tile = x.shape[2]
    overlap = tile - stride
    shape = tf.shape(x)
    rows, n, rest = shape[0], shape[1], shape[3]
    if overlap <= stride:
        head, own, tail = x[:, :, :overlap], x[:, :, overlap:stride], x[:, :, stride:]
        zone = head + tf.pad(tail, [[0, 0], [1, 0], [0, 0], [0, 0]])[:, :n]
        body = tf.reshape(tf.concat([zone, own], axis=2), [rows, n * stride, rest])
        return tf.concat([body, tail[:, n - 1]], axis=1)
    pieces = -(-tile // stride)
    x = tf.pad(x, [[0, 0], [0, 0], [0, pieces * stride - tile], [0, 0]])
    x = tf.reshape(x, [rows, n, pieces, stride, rest])
    out = tf.pad(x[:, :, 0], [[0, 0], [0, pieces - 1], [0, 0], [0, 0]])
    for j in range(1, pieces):
        out += tf.pad(x[:, :, j], [[0, 0], [j, pieces - 1 - j], [0, 0], [0, 0]])
    out = tf.reshape(out, [rows, (n + pieces - 1) * stride, rest])
    return out[:, :(n - 1) * stride + tile]


def overlap_add_1d(x: tf.Tensor, stride: int) -> tf.Tensor:
    """Overlap-add along the last two axes: x [A, n, T] -> [A, (n - 1) * stride + T],
    out[a, k * stride + t] += x[a, k, t]."""
    return _fold(x[..., None], stride)[..., 0]


def overlap_add(tiles: tf.Tensor, grid_shape, overlap: int) -> tf.Tensor:
    """Folds tiles [ny * nx, T, T] (row-major grid) back into the padded canvas
    [Hp, Wp] = [(ny-1)S + T, (nx-1)S + T], summing where tiles overlap."""
    ny, nx = grid_shape
    tile = tiles.shape[-1]
    stride = tile - overlap
    t = tf.transpose(tf.reshape(tiles, [ny, nx, tile, tile]), [0, 2, 1, 3])  # [ny, T, nx, T]
    rows = _fold(tf.reshape(t, [1, ny, tile, nx * tile]), stride)           # [1, Hp, nx*T]
    height = tf.shape(rows)[1]
    return _fold(tf.reshape(rows, [height, nx, tile, 1]), stride)[..., 0]   # [Hp, Wp]
