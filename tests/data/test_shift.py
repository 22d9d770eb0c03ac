"""Random-shift augmentation (`rgb_pad`): upstream's RandomShiftsAug as integer crops, training only."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robovlms_mobile.data.shift import random_shift


def test_equals_pad_then_crop_and_keeps_dtype():
    frames = torch.randint(0, 256, (2, 3, 3, 16, 16), dtype=torch.uint8)  # (B, T, C, H, W)
    out = random_shift(frames, 4, torch.Generator().manual_seed(0))
    offsets = torch.randint(0, 9, (6, 2), generator=torch.Generator().manual_seed(0))  # the same draws: (y, x) per frame
    padded = F.pad(frames.reshape(6, 3, 16, 16).float(), (4, 4, 4, 4), mode="replicate")
    expected = torch.stack([padded[i, :, y : y + 16, x : x + 16] for i, (y, x) in enumerate(offsets.tolist())])
    assert out.dtype == torch.uint8 and out.shape == frames.shape
    assert torch.equal(out, expected.to(torch.uint8).reshape(frames.shape))
    assert len({tuple(o) for o in offsets.tolist()}) > 1  # frames shift independently, as upstream's do


def test_matches_upstream_random_shifts_aug():
    from robovlms.data.base_task_dataset import RandomShiftsAug

    frames = torch.rand(5, 3, 24, 24)  # (T, C, H, W)
    torch.manual_seed(3)
    theirs = RandomShiftsAug(5)(frames)  # draws (x, y) per frame from the global generator
    torch.manual_seed(3)
    ours = random_shift(frames.transpose(-1, -2), 5).transpose(-1, -2)  # our (y, x) order on the transposed image
    assert torch.allclose(theirs, ours, atol=1e-5)


@pytest.mark.parametrize("pad", [0, -1])
def test_off_returns_the_frames(pad):
    frames = torch.zeros(2, 3, 8, 8)
    assert random_shift(frames, pad) is frames


def test_refuses_other_shapes():
    with pytest.raises(ValueError, match=r"expected \(T, C, H, W\) or \(B, T, C, H, W\)"):
        random_shift(torch.zeros(3, 8, 8), 2)


def test_dataset_shifts_training_windows_only(episodes_dir):
    from robovlms_mobile.data.dataset import MobileVLAH5Dataset

    plain = MobileVLAH5Dataset(str(episodes_dir), val_ratio=0.2, image_size=64)
    shifted = MobileVLAH5Dataset(str(episodes_dir), val_ratio=0.2, image_size=64, rgb_pad=6)
    val = MobileVLAH5Dataset(str(episodes_dir), val_ratio=0.2, image_size=64, rgb_pad=6, is_training=False)
    val_plain = MobileVLAH5Dataset(str(episodes_dir), val_ratio=0.2, image_size=64, is_training=False)
    torch.manual_seed(0)
    a, b = plain.__getitems__([0])[0]["frames"], shifted.__getitems__([0])[0]["frames"]
    assert a.shape == b.shape and a.dtype == b.dtype == np.uint8 and not np.array_equal(a, b)
    assert shifted.augment.rgb_pad == 6 and val.augment.rgb_pad == 0  # validation windows are never shifted
    assert np.array_equal(val.__getitems__([0])[0]["frames"], val_plain.__getitems__([0])[0]["frames"])
