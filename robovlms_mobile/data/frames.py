"""Reading stored frames: one decoder per image kind (raw V4 BGR, raw V5 RGB, V5 collector JPEG).

The V5 gradio collector's JPEG storage (`observations/images` (T,) vlen uint8, attrs
`format=jpeg`) encodes an RGB array with OpenCV, which takes it for BGR: the JPEG's own colours
have red and blue swapped. A standard decoder (PIL) therefore returns the camera's BGR order, so
these frames are handled like V4's BGR frames: swapped back to RGB after resizing, where it is
cheapest. Decoding goes through `decode.py` (headers checked first) to PIL's libjpeg-turbo
(measured in benchmarks/loader.py: `jpeg_over_raw`).
"""

from __future__ import annotations

import h5py
import numpy as np

from robovlms_mobile.data.decode import ImageError, ImageLimits, decode_checked, open_checked
from robovlms_mobile.data.format import MAX_FRAME_SIDE

FRAME_LIMITS = ImageLimits(max_side=MAX_FRAME_SIDE, max_pixels=MAX_FRAME_SIDE * MAX_FRAME_SIDE)


def is_jpeg_storage(images: h5py.Dataset) -> bool:
    """True for a (T,) dataset of variable-length uint8 (one encoded image per frame)."""
    return images.ndim == 1 and h5py.check_vlen_dtype(images.dtype) == np.dtype(np.uint8)


def jpeg_size(buf: bytes | np.ndarray) -> tuple[int, int]:
    """(height, width) of a stored JPEG frame whose markers and header passed every check; ImageError before any decoding."""
    img = open_checked(buf.tobytes() if isinstance(buf, np.ndarray) else bytes(buf), FRAME_LIMITS)
    return img.height, img.width


def decode_jpeg(buf: bytes | np.ndarray, min_size: int | None = None, expect: tuple[int, int] | None = None) -> np.ndarray:
    """A JPEG as (H, W, 3) uint8 in the JPEG's own colour order (for collector files: the camera's BGR).

    `expect`: the episode's (H, W); a header declaring another size is refused before decoding.
    With `min_size`, the decoder may scale by 1/2, 1/4 or 1/8 while both sides stay >= min_size
    (libjpeg's DCT scaling: ~5x faster on a 720p frame resized to 224 afterwards).
    """
    img = open_checked(buf.tobytes() if isinstance(buf, np.ndarray) else bytes(buf), FRAME_LIMITS, expect=expect)
    if min_size:
        img.draft("RGB", (min_size, min_size))
    return np.asarray(decode_checked(img))


def read_frames_stored(f: h5py.File, episode, start: int, stop: int, *, min_size: int | None = None,
                       step: int = 1) -> tuple[np.ndarray, bool]:
    """Frames start, start + step, ... < stop as stored (n, H, W, 3) and whether their order is BGR (V4, V5 JPEG):
    swap after resizing. Only those frames are read and decoded.

    `min_size`: the frames are about to be resized to that size; JPEG frames may come back smaller than stored.
    """
    images = f[episode.image_key]
    if episode.storage == "jpeg":
        frames = []
        for t, buf in zip(range(start, stop, step), images[start:stop:step]):
            try:
                frames.append(decode_jpeg(buf, min_size, episode.frame_shape[:2]))
            except ImageError as exc:
                raise ImageError(exc.code, f"{episode.path}: JPEG frame {t} of '{episode.image_key}': {exc}") from None
        if len({x.shape for x in frames}) > 1 or (not min_size and frames and frames[0].shape != tuple(episode.frame_shape)):
            raise ValueError(f"JPEG frames {start}:{stop} have sizes {sorted({x.shape for x in frames})}, "
                             f"expected {tuple(episode.frame_shape)}")
        return np.stack(frames), True
    frames = images[start:stop:step]
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
        try:
            frame = decode_jpeg(images[t]) if storage == "jpeg" else images[t]
        except ImageError as exc:
            raise ImageError(exc.code, f"JPEG frame {t} of '{images.name}' cannot be decoded: {exc}") from None
        if int(frame.max()) <= black_max:
            black.append(t)
        elif float(frame.reshape(-1, frame.shape[-1]).std(axis=0).max()) < constant_std:  # flat in every channel
            flat.append(t)
    return black, flat
