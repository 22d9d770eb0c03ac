"""Reading stored frames: one decoder per image kind (raw V4 BGR, raw V5 RGB, V5 collector JPEG).

The V5 gradio collector's JPEG storage (`observations/images` (T,) vlen uint8, attrs
`format=jpeg`) encodes an RGB array with OpenCV, which takes it for BGR: the JPEG's own colours
have red and blue swapped. A standard decoder (PIL) therefore returns the camera's BGR order, so
these frames are handled like V4's BGR frames: swapped back to RGB after resizing, where it is
cheapest. Decoding uses PIL's libjpeg-turbo (measured in benchmarks/loader.py: `jpeg_over_raw`).
"""

from __future__ import annotations

import io
import warnings

import h5py
import numpy as np
from PIL import Image

JPEG_MAGIC = b"\xff\xd8\xff"


def is_jpeg_storage(images: h5py.Dataset) -> bool:
    """True for a (T,) dataset of variable-length uint8 (one encoded image per frame)."""
    return images.ndim == 1 and h5py.check_vlen_dtype(images.dtype) == np.dtype(np.uint8)


def _pil(buf: bytes | np.ndarray) -> Image.Image:
    data = buf.tobytes() if isinstance(buf, np.ndarray) else bytes(buf)
    if not data.startswith(JPEG_MAGIC):
        raise ValueError("not JPEG data (no FF D8 FF start marker)")
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        return Image.open(io.BytesIO(data), formats=["JPEG"])


def jpeg_size(buf: bytes | np.ndarray) -> tuple[int, int]:
    """(height, width) from a JPEG header, without decoding the pixels."""
    img = _pil(buf)
    return img.height, img.width


def decode_jpeg(buf: bytes | np.ndarray) -> np.ndarray:
    """A JPEG as (H, W, 3) uint8 in the JPEG's own colour order (for collector files: the camera's BGR)."""
    img = _pil(buf)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def read_frames_stored(f: h5py.File, episode, start: int, stop: int) -> tuple[np.ndarray, bool]:
    """Frames [start, stop) as stored (n, H, W, 3) and whether their order is BGR (V4, V5 JPEG): swap after resizing."""
    images = f[episode.image_key]
    if episode.storage == "jpeg":
        out = np.stack([decode_jpeg(buf) for buf in images[start:stop]])
        if out.shape[1:] != tuple(episode.frame_shape):
            raise ValueError(f"a JPEG frame in {start}:{stop} is {out.shape[1:]}, expected {tuple(episode.frame_shape)}")
        return out, True
    return images[start:stop], episode.generation == "v4"


def read_frames_rgb(f: h5py.File, episode, start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) as RGB uint8 (n, H, W, 3), reading only those frames."""
    frames, bgr = read_frames_stored(f, episode, start, stop)
    return np.ascontiguousarray(frames[..., ::-1]) if bgr else frames
