"""Moved to `tiled_vessel_seg.imaging` (one decoder for Beam, the tools and inference);
this name is kept only while open branches still import it."""
from tiled_vessel_seg.imaging import (  # noqa: F401
    IMAGE_EXTENSIONS, MASK_THRESHOLD, ImageReadError, decode_image_bytes, decode_mask_bytes,
    image_extension, read_image, read_mask, rgb_to_mask, sha256_hex)
from tiled_vessel_seg.imaging import read_image_bytes as read_bytes  # noqa: F401
