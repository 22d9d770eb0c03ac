"""`normalise_batch`: the CLIP formula on any strides, the same values per item and per batch, into a caller's buffer when given."""

from __future__ import annotations

import pytest
import torch

from robovlms_mobile.data.transforms import CLIP_MEAN, CLIP_STD, normalise_batch, normalise_frames


def reference(rgb: torch.Tensor) -> torch.Tensor:
    """(x / 255 - mean) / std per channel, float64 -> float32."""
    mean, std = (torch.tensor(v, dtype=torch.float64).view(3, 1, 1) for v in (CLIP_MEAN, CLIP_STD))
    return ((rgb.double() / 255 - mean) / std).float()


@pytest.fixture
def batch() -> torch.Tensor:
    return torch.randint(0, 256, (2, 3, 3, 16, 16), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))


def test_batch_matches_the_formula_whatever_the_strides(batch):
    channels_last = batch.permute(0, 1, 3, 4, 2).contiguous().permute(0, 1, 4, 2, 3)  # same values, other strides
    out = normalise_batch(batch)
    assert out.dtype == torch.float32 and out.is_contiguous() and out.shape == batch.shape
    torch.testing.assert_close(out, reference(batch), atol=1e-6, rtol=0)
    assert torch.equal(normalise_batch(channels_last), out)
    assert torch.equal(normalise_frames(batch[0].permute(0, 2, 3, 1)), out[0])  # the per-item path: identical values


def test_into_a_reused_buffer(batch):
    buffer = torch.full(batch.shape, float("nan"))
    assert normalise_batch(batch, out=buffer) is buffer and torch.equal(buffer, normalise_batch(batch))
    assert normalise_batch(normalise_batch(batch), out=buffer) is not buffer  # float: normalised already, untouched


@pytest.mark.parametrize("out", [torch.empty(2, 3, 3, 16, 15), torch.empty(2, 3, 3, 16, 16, dtype=torch.float64),
                                 torch.empty(2, 3, 3, 16, 32)[..., ::2]], ids=["shape", "dtype", "strides"])
def test_bad_out_buffer_is_refused(batch, out):
    with pytest.raises(ValueError, match=r"normalise_batch out must be contiguous float32 \(2, 3, 3, 16, 16\) on cpu"):
        normalise_batch(batch, out=out)
