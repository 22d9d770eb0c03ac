"""Training-time augmentation (data/augment.py) and its dataset hook."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robovlms_mobile.data.augment import AugmentSettings, augment_window, color_jitter, mirror_window, shift_window, swap_sides


def _frames(n: int = 3, h: int = 8, w: int = 10) -> torch.Tensor:
    return torch.arange(n * h * w * 3, dtype=torch.int64).remainder(251).to(torch.uint8).reshape(n, h, w, 3)


def test_mirror_flips_frames_negates_lateral_and_swaps_sides():
    frames, actions = _frames(), torch.tensor([[1.0, 0.5], [0.0, -1.0]])
    out, acts, text = mirror_window(frames, actions, "go around the box on the left and stop in front of the bottle")
    assert torch.equal(out[:, :, 0], frames[:, :, -1])
    assert acts.tolist() == [[1.0, -0.5], [0.0, 1.0]] and actions[0, 1] == 0.5  # input untouched
    assert text == "go around the box on the right and stop in front of the bottle"
    assert swap_sides("turn right, then left; leftover") == "turn left, then right; leftover"
    three = mirror_window(frames, torch.tensor([[1.0, 0.5, 0.25]]), "left")[1]
    assert three.tolist() == [[1.0, -0.5, -0.25]]  # angular_z negated too


def test_random_shift_is_a_seeded_pad_and_crop():
    frames = _frames(4)
    a = shift_window(frames, 2, torch.Generator().manual_seed(0))
    b = shift_window(frames, 2, torch.Generator().manual_seed(0))
    assert a.shape == frames.shape and a.dtype == torch.uint8 and torch.equal(a, b)
    assert shift_window(frames, 0) is frames
    # every output pixel row is some input row shifted by at most 2 (edges replicated)
    for i in range(4):
        assert any(torch.equal(a[i, 3], frames[i, r][torch.clamp(torch.arange(10) + d, 0, 9)])
                   for r in range(1, 6) for d in range(-2, 3))


def test_color_jitter_one_factor_per_window():
    frames = torch.full((2, 4, 4, 3), 100, dtype=torch.uint8)
    out = color_jitter(frames, 0.4, torch.Generator().manual_seed(1))
    assert torch.equal(out[0], out[1]) and not torch.equal(out, frames)
    assert color_jitter(frames, 0.0) is frames


@pytest.mark.parametrize("kwargs, key", [({"mirror": 1.5}, "mirror"), ({"rgb_pad": -1}, "rgb_pad"), ({"rgb_pad": 2.5}, "rgb_pad"),
                                         ({"color_jitter": 1.0}, "color_jitter")], ids=["mirror", "pad_neg", "pad_float", "jitter"])
def test_bad_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        AugmentSettings.from_kwargs(kwargs)


def test_dataset_mirrors_training_windows_only(episodes_dir, tiny_model_dir):
    from transformers import AutoProcessor

    from robovlms_mobile.data.dataset import MobileVLAH5Dataset

    tok = AutoProcessor.from_pretrained(tiny_model_dir).tokenizer
    torch.manual_seed(0)
    train = MobileVLAH5Dataset(str(episodes_dir), tok, image_size=32, split="train", val_ratio=0.2, mirror=1.0)
    plain = MobileVLAH5Dataset(str(episodes_dir), tok, image_size=32, split="train", val_ratio=0.2)
    val = MobileVLAH5Dataset(str(episodes_dir), tok, image_size=32, split="val", val_ratio=0.2, mirror=1.0)
    a, b = train.__getitems__([0])[0], plain.__getitems__([0])[0]
    assert np.array_equal(np.asarray(a["frames"]), np.asarray(b["frames"])[:, :, ::-1])
    assert torch.equal(a["actions"][:, 1], -b["actions"][:, 1]) and a["instruction"] == swap_sides(b["instruction"])
    assert not val.augment.active
    batch = train.collater(train.__getitems__([0, 1]))
    assert batch["rgb"].shape[0] == 2


def test_augment_window_is_repeatable_for_a_seed():
    s = AugmentSettings(mirror=0.5, rgb_pad=2, color_jitter=0.2)
    frames, actions = _frames(), torch.tensor([[1.0, 0.5]])
    a = augment_window(frames, actions, "left", s, torch.Generator().manual_seed(3))
    b = augment_window(frames, actions, "left", s, torch.Generator().manual_seed(3))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and a[2] == b[2]
