"""Camera message fields -> RGB frames: encodings, row padding, compressed images, bad messages."""

from __future__ import annotations

import io
import numpy as np
import pytest
from PIL import Image as PILImage
from sensor_msgs.msg import CompressedImage, Image

from robovlms_mobile.ros.frames import compressed_msg_to_rgb, image_msg_to_rgb, message_to_rgb

RGB = np.random.default_rng(0).integers(0, 255, (4, 5, 3), dtype=np.uint8)


def msg(pixels: np.ndarray, encoding: str, pad: int = 0) -> Image:
    """A real sensor_msgs/Image of `pixels` with `pad` bytes of padding at the end of every row."""
    h, w = pixels.shape[:2]
    rows = pixels.reshape(h, -1)
    rows = np.concatenate([rows, np.zeros((h, pad), np.uint8)], axis=1)
    return Image(height=h, width=w, encoding=encoding, step=rows.shape[1], is_bigendian=0, data=rows.tobytes())


@pytest.mark.parametrize("encoding, pixels", [
    ("rgb8", RGB),
    ("bgr8", RGB[..., ::-1]),
    ("rgba8", np.concatenate([RGB, np.full((4, 5, 1), 255, np.uint8)], axis=2)),
    ("bgra8", np.concatenate([RGB[..., ::-1], np.full((4, 5, 1), 7, np.uint8)], axis=2)),
])
@pytest.mark.parametrize("pad", [0, 3])
def test_encodings_to_rgb(encoding, pixels, pad):
    out = image_msg_to_rgb(msg(pixels, encoding, pad))
    assert out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"] and out.flags["WRITEABLE"]
    np.testing.assert_array_equal(out, RGB)


def test_mono8_to_rgb():
    gray = RGB[..., 0]
    out = image_msg_to_rgb(msg(gray[..., None], "mono8"))
    np.testing.assert_array_equal(out, np.repeat(gray[..., None], 3, axis=2))


def test_unsupported_encoding_and_short_buffer():
    with pytest.raises(ValueError, match="encoding '16UC1' is not supported"):
        image_msg_to_rgb(msg(RGB, "16UC1"))
    short = msg(RGB, "rgb8")
    short.data = short.data[:-1]
    with pytest.raises(ValueError, match="too small"):
        image_msg_to_rgb(short)


def test_compressed_png():
    buf = io.BytesIO()
    PILImage.fromarray(RGB).save(buf, format="PNG")
    np.testing.assert_array_equal(compressed_msg_to_rgb(CompressedImage(format="png", data=buf.getvalue())), RGB)


@pytest.mark.parametrize("data, match", [(b"", "empty CompressedImage"), (b"\xff\xd8not a jpeg", "does not decode"),
                                         (b"GIF89a....", "does not decode")])
def test_bad_compressed_images_are_refused(data, match):
    with pytest.raises(ValueError, match=match):
        compressed_msg_to_rgb(CompressedImage(format="jpeg", data=data))


@pytest.mark.parametrize("height, width", [(0, 5), (5, 0), (100_000, 100_000)])  # uint32 fields: no negative sizes
def test_bad_image_sizes_are_refused(height, width):
    bad = msg(RGB, "rgb8")
    bad.height, bad.width = height, width
    with pytest.raises(ValueError, match="image size"):
        image_msg_to_rgb(bad)


def test_one_entry_point_for_both_message_types():
    buf = io.BytesIO()
    PILImage.fromarray(RGB).save(buf, format="PNG")
    np.testing.assert_array_equal(message_to_rgb(CompressedImage(format="png", data=buf.getvalue()), compressed=True), RGB)
    np.testing.assert_array_equal(message_to_rgb(msg(RGB[..., ::-1], "bgr8"), compressed=False), RGB)
