"""Uploaded images -> RGB uint8 arrays, refusing bombs before decoding: only the header is read first."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, UnidentifiedImageError

from robovlms_mobile.serve.errors import ApiError

FORMATS = ("JPEG", "PNG")


@dataclass(frozen=True)
class ImageLimits:
    """Largest accepted image: per side and in total pixels (checked from the header)."""

    max_side: int = 4096
    max_pixels: int = 3840 * 2160


def decode_image(data: bytes, limits: ImageLimits) -> np.ndarray:
    """JPEG/PNG bytes -> RGB uint8 (H, W, 3); ApiError 413/415/422 with the reason otherwise."""
    if not data:
        raise ApiError(422, "invalid_image", "the image is empty (0 bytes)")
    try:
        img = Image.open(io.BytesIO(data), formats=FORMATS)  # reads the header only
    except UnidentifiedImageError:
        raise ApiError(415, "unsupported_image_format", f"the image is not one of {'/'.join(FORMATS)}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ApiError(422, "invalid_image", f"the image header is corrupt ({exc})") from None
    width, height = img.size
    if width < 1 or height < 1:
        raise ApiError(422, "invalid_image", f"the image is {width}x{height} pixels")
    if max(width, height) > limits.max_side or width * height > limits.max_pixels:
        raise ApiError(413, "image_too_large", f"the image is {width}x{height} pixels; the limit is {limits.max_side} "
                                               f"per side and {limits.max_pixels} pixels in total")
    try:
        img.load()  # the full decode; a truncated file fails here (LOAD_TRUNCATED_IMAGES stays False)
        if img.mode == "I" or img.mode.startswith("I;16"):
            return grey16_to_rgb(np.array(img))
        rgb = img.convert("RGB")  # 8-bit grey, palette, alpha, CMYK JPEG
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ApiError(422, "invalid_image", f"the {img.format} image is truncated or corrupt ({exc})") from None
    return np.array(rgb)  # a writable copy (asarray of a PIL image is read-only; torch warns on those)


def grey16_to_rgb(grey: np.ndarray) -> np.ndarray:
    """16-bit grey (H, W) -> RGB uint8 (H, W, 3), 0..65535 scaled to 0..255 (Pillow's convert would clip to white)."""
    scaled = np.clip(np.rint(grey.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    return np.repeat(scaled[..., None], 3, axis=-1)
