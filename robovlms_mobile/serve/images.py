"""Uploaded images -> RGB uint8 arrays, refusing bombs before decoding (`data/decode.py`: the header is checked first)."""

from __future__ import annotations

import numpy as np

from robovlms_mobile.data.decode import ImageError, ImageLimits, decode_checked, open_checked
from robovlms_mobile.serve.errors import ApiError

FORMATS = ("JPEG", "PNG")
STATUS = {"invalid_image": 422, "image_too_large": 413, "unsupported_image_format": 415}


def decode_image(data: bytes, limits: ImageLimits) -> np.ndarray:
    """JPEG/PNG bytes -> RGB uint8 (H, W, 3); ApiError 413/415/422 with the reason otherwise."""
    try:
        img = decode_checked(open_checked(data, limits, formats=FORMATS), mode=None)
        if img.mode == "I" or img.mode.startswith("I;16"):
            return grey16_to_rgb(np.array(img))
        rgb = decode_checked(img)  # converted: 8-bit grey, palette, alpha, CMYK JPEG
    except ImageError as exc:
        raise ApiError(STATUS[exc.code], exc.code, str(exc)) from None
    return np.array(rgb)  # a writable copy (asarray of a PIL image is read-only; torch warns on those)


def grey16_to_rgb(grey: np.ndarray) -> np.ndarray:
    """16-bit grey (H, W) -> RGB uint8 (H, W, 3), 0..65535 scaled to 0..255 (Pillow's convert would clip to white)."""
    scaled = np.clip(np.rint(grey.astype(np.float64) / 257.0), 0, 255).astype(np.uint8)
    return np.repeat(scaled[..., None], 3, axis=-1)
