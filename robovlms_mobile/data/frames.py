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


def decode_jpeg(buf: bytes | np.ndarray, min_size: int | None = None) -> np.ndarray:
    """A JPEG as (H, W, 3) uint8 in the JPEG's own colour order (for collector files: the camera's BGR).

    With `min_size`, the decoder may scale by 1/2, 1/4 or 1/8 while both sides stay >= min_size
    (libjpeg's DCT scaling: ~5x faster on a 720p frame resized to 224 afterwards).
    """
    img = _pil(buf)
    if min_size:
        img.draft("RGB", (min_size, min_size))
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img)


def read_frames_stored(f: h5py.File, episode, start: int, stop: int, *, min_size: int | None = None) -> tuple[np.ndarray, bool]:
    """Frames [start, stop) as stored (n, H, W, 3) and whether their order is BGR (V4, V5 JPEG): swap after resizing.

    `min_size`: the frames are about to be resized to that size; JPEG frames may come back smaller than stored.
    """
    images = f[episode.image_key]
    if episode.storage == "jpeg":
        frames = [decode_jpeg(buf, min_size) for buf in images[start:stop]]
        if len({x.shape for x in frames}) > 1 or (not min_size and frames and frames[0].shape != tuple(episode.frame_shape)):
            raise ValueError(f"JPEG frames {start}:{stop} have sizes {sorted({x.shape for x in frames})}, "
                             f"expected {tuple(episode.frame_shape)}")
        return np.stack(frames), True
    frames = images[start:stop]
    if frames.shape[1:] != tuple(episode.frame_shape):
        raise ValueError(f"read frames of shape {frames.shape}, expected (n, {', '.join(map(str, episode.frame_shape))})")
    return frames, episode.generation == "v4"


def read_frames_rgb(f: h5py.File, episode, start: int, stop: int) -> np.ndarray:
    """Frames [start, stop) as RGB uint8 (n, H, W, 3), reading only those frames."""
    frames, bgr = read_frames_stored(f, episode, start, stop)
    return np.ascontiguousarray(frames[..., ::-1]) if bgr else frames


def dark_and_flat_frames(images: h5py.Dataset, storage: str, black_max: int, constant_std: float) -> tuple[list[int], list[int]]:
    """Steps whose frame is black (max <= black_max) and those of one flat colour (per-channel std < constant_std)."""
    black, flat = [], []
    for t in range(images.shape[0]):  # one frame at a time (T is bounded by the checks): a 720p frame is 2.7 MB
        frame = decode_jpeg(images[t]) if storage == "jpeg" else images[t]
        if int(frame.max()) <= black_max:
            black.append(t)
        elif float(frame.reshape(-1, frame.shape[-1]).std(axis=0).max()) < constant_std:  # flat in every channel
            flat.append(t)
    return black, flat
