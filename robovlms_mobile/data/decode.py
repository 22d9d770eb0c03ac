"""Bounded image decoding: what an image's header declares is checked before any pixel is decoded.

The one helper for the data loader, the training preflight and the server. Decoding costs in
proportion to the pixels a header declares and (progressive JPEG) to the number of scans, not
to the bytes sent: a 70 KB file may declare 8000x8000 frames (decoded as grey fill), an 89 KB
progressive JPEG may repeat 2,000 scans (seconds of CPU). So a JPEG's marker segments are walked
first (a regex over the entropy-coded data, well under a millisecond a frame) for its size, its
scan count and its end marker, and a PNG's IHDR is read; only then does Pillow decode.
"""

from __future__ import annotations

import io
import re
import warnings
from dataclasses import dataclass

from PIL import Image

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
MAX_JPEG_SCANS = 32  # baseline: 1 (3 non-interleaved); libjpeg's progressive script: 10 (colour), 6 (grey)
# No JPEG codes an 8x8 block in less than one bit (its DC difference): 512 grey pixels per byte at
# the very most. A header declaring more pixels than that per stored byte describes data that is not there.
MAX_JPEG_PIXELS_PER_BYTE = 1024
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # frame headers (not DHT/JPG/DAC)
_SOS, _EOI, _SOI = 0xDA, 0xD9, 0xD8
_MARKER = re.compile(rb"\xff[^\x00\xd0-\xd7\xff]")  # the next marker after entropy data (FF00 is a stuffed byte, FFD0-D7 restarts)


class ImageError(ValueError):
    """An image refused before or while decoding; `code` is invalid_image | image_too_large | unsupported_image_format."""

    def __init__(self, code: str, message: str):
        self.code = code
        super().__init__(message)


@dataclass(frozen=True)
class ImageLimits:
    """Largest accepted image: per side and in total pixels (checked from the header)."""

    max_side: int = 4096
    max_pixels: int = 3840 * 2160


@dataclass(frozen=True)
class Header:
    """What an image declares: format, size, scans (JPEG; 1 for PNG)."""

    format: str  # "JPEG" | "PNG"
    height: int
    width: int
    scans: int = 1


def jpeg_header(data: bytes) -> Header:
    """Walk a JPEG's marker segments: its frame size and scan count; ImageError when it is malformed or incomplete."""
    n = len(data)
    if not data.startswith(JPEG_MAGIC):
        raise ImageError("unsupported_image_format", "not JPEG data (no FF D8 FF start marker)")
    pos, scans, size = 2, 0, None
    while True:
        if pos >= n:
            raise ImageError("invalid_image", f"truncated JPEG ({n} bytes, no end-of-image marker)")
        if data[pos] != 0xFF:
            raise ImageError("invalid_image", f"corrupt JPEG (byte {pos} is not a marker)")
        while pos < n and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= n:
            raise ImageError("invalid_image", f"truncated JPEG ({n} bytes, no end-of-image marker)")
        code = data[pos]
        pos += 1
        if code == _EOI:
            break
        if code == _SOI:
            raise ImageError("invalid_image", f"corrupt JPEG (a second start-of-image marker at byte {pos - 2})")
        if 0xD0 <= code <= 0xD7 or code == 0x01:  # segments without a length
            continue
        if pos + 2 > n:
            raise ImageError("invalid_image", f"truncated JPEG ({n} bytes, cut inside a marker)")
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2 or pos + length > n:
            raise ImageError("invalid_image", f"truncated JPEG ({n} bytes, a segment of {length} bytes at byte {pos} "
                                              "runs past the end)")
        if code in _SOF:
            if size is not None or length < 8:
                raise ImageError("invalid_image", "corrupt JPEG (a second or short frame header)")
            size = int.from_bytes(data[pos + 3:pos + 5], "big"), int.from_bytes(data[pos + 5:pos + 7], "big")
        pos += length
        if code == _SOS:
            scans += 1
            if size is None:
                raise ImageError("invalid_image", "corrupt JPEG (a scan before the frame header)")
            if scans > MAX_JPEG_SCANS:  # stop walking at once: the count alone refuses it
                raise ImageError("image_too_large", f"progressive JPEG with more than {MAX_JPEG_SCANS} scans; "
                                                    f"expected at most {MAX_JPEG_SCANS} (each scan costs a pass over every pixel)")
            marker = _MARKER.search(data, pos)
            if marker is None:
                raise ImageError("invalid_image", f"truncated JPEG ({n} bytes, cut inside scan {scans}, no end-of-image marker)")
            pos = marker.start()
    if size is None or scans == 0:
        raise ImageError("invalid_image", "corrupt JPEG (no frame header or no scan before the end marker)")
    return Header("JPEG", size[0], size[1], scans)


def png_header(data: bytes) -> Header:
    """A PNG's size from its IHDR chunk; ImageError when there is none."""
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ImageError("invalid_image", "corrupt PNG (no IHDR header chunk)")
    return Header("PNG", int.from_bytes(data[20:24], "big"), int.from_bytes(data[16:20], "big"))


def read_header(data: bytes, formats: tuple[str, ...] = ("JPEG",)) -> Header:
    """The header of JPEG (and, when allowed, PNG) bytes; ImageError otherwise."""
    if not data:
        raise ImageError("invalid_image", "the image is empty (0 bytes)")
    if data.startswith(JPEG_MAGIC) and "JPEG" in formats:
        return jpeg_header(data)
    if data.startswith(PNG_MAGIC) and "PNG" in formats:
        return png_header(data)
    raise ImageError("unsupported_image_format", f"not {'/'.join(formats)} data (no {'/'.join(formats)} start marker)")


def check_header(header: Header, nbytes: int, limits: ImageLimits, expect: tuple[int, int] | None = None) -> None:
    """Refuse a declared size that is empty, over the limits, not the expected (H, W), or more than the bytes can hold."""
    h, w = header.height, header.width
    if h < 1 or w < 1:
        raise ImageError("invalid_image", f"the {header.format} image declares {w}x{h} pixels")
    if max(h, w) > limits.max_side or h * w > limits.max_pixels:
        raise ImageError("image_too_large", f"the {header.format} image declares {w}x{h} pixels; the limit is "
                                            f"{limits.max_side} per side and {limits.max_pixels} pixels in total")
    if header.format == "JPEG" and h * w > MAX_JPEG_PIXELS_PER_BYTE * nbytes:
        raise ImageError("invalid_image", f"the JPEG declares {w}x{h} pixels in {nbytes} bytes; a JPEG holds at most "
                                          f"{MAX_JPEG_PIXELS_PER_BYTE} pixels per byte (the rest would decode as grey fill)")
    if expect is not None and (h, w) != tuple(expect):
        raise ImageError("invalid_image", f"the {header.format} image declares {w}x{h} pixels; expected {expect[1]}x{expect[0]} "
                                          "(the episode's frame size)")


def open_checked(data: bytes, limits: ImageLimits, *, formats: tuple[str, ...] = ("JPEG",),
                 expect: tuple[int, int] | None = None) -> Image.Image:
    """A Pillow image whose header passed `check_header`, not yet decoded (call .draft/.load/.convert next)."""
    header = read_header(data, formats)
    check_header(header, len(data), limits, expect)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data), formats=[header.format])
    except Exception as exc:  # noqa: BLE001 - Pillow raises many types on bad headers
        raise ImageError("invalid_image", f"the {header.format} header is corrupt ({type(exc).__name__}: {exc})") from None
    if (img.height, img.width) != (header.height, header.width):
        raise ImageError("invalid_image", f"the {header.format} image is {img.width}x{img.height} pixels but its header "
                                          f"declares {header.width}x{header.height}")
    return img


def decode_checked(img: Image.Image, mode: str | None = "RGB") -> Image.Image:
    """Decode an `open_checked` image (converted to `mode` unless None); ImageError when the data is truncated or corrupt."""
    try:
        img.load()  # LOAD_TRUNCATED_IMAGES stays False: a truncated file fails here
        return img.convert(mode) if mode and img.mode != mode else img
    except Exception as exc:  # noqa: BLE001 - Pillow raises OSError, SyntaxError, ValueError, ... on bad data
        raise ImageError("invalid_image", f"the {img.format} image is truncated or corrupt ({type(exc).__name__}: {exc})") from None
