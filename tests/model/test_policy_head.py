"""MobileVLALSTMDecoder: shapes, loss, streaming, and upstream's construction path."""

from __future__ import annotations

import pytest
import torch

from robovlms_mobile.model.policy_head import MobileVLALSTMDecoder


def make_head(**kw) -> MobileVLALSTMDecoder:
    torch.manual_seed(0)
    return MobileVLALSTMDecoder(**{"in_features": 16, "hidden_size": 32, "num_layers": 4, "fwd_pred_next_n": 10, "window_size": 8, **kw})


@pytest.mark.parametrize("down_sample,latent", [("none", 1), ("pooling", 1)])
def test_output_shape_and_no_gripper(down_sample, latent):
    head = make_head(down_sample=down_sample, latent=latent)
    velocities, gripper = head(torch.randn(3, 8, 4 if down_sample == "pooling" else 1, 16))
    assert velocities.shape == (3, 8, 10, 2) and gripper is None
    assert velocities.abs().max() <= 1.0  # tanh head, labels live in [-1, 1]


def test_default_architecture_is_the_spec():
    head = MobileVLALSTMDecoder(in_features=2048)
    assert (head.rnn.num_layers, head.rnn.hidden_size, head.rnn.input_size) == (4, 1024, 2048)
    assert head.actions.mlp[-2].out_features == 10 * 2


def test_masked_huber_loss_ignores_masked_steps():
    head = make_head()
    pred = torch.zeros(2, 8, 10, 2)
    labels = torch.zeros(2, 8, 10, 2)
    labels[1] = 5.0  # huge error, but masked out
    mask = torch.ones(2, 8, 10, dtype=torch.bool)
    mask[1] = False
    out = head.loss((pred, None), (labels, None), mask)
    assert out["loss_velocity"].item() == 0.0 and out["mae_velocity"].item() == 0.0
    unmasked = head.loss(pred, (labels, None), None)["loss_velocity"]
    expected = torch.nn.functional.huber_loss(pred, labels)
    assert torch.allclose(unmasked, expected)
    assert head.loss(pred, None) == {} and head.loss(pred, (None, None)) == {}


def test_loss_has_no_none_values_and_gradients_flow():
    head = make_head()
    pred, _ = head(torch.randn(2, 8, 1, 16))
    out = head.loss(pred, (torch.rand(2, 8, 10, 2) * 2 - 1, None), torch.ones(2, 8, 10))
    assert all(v is not None for v in out.values())
    out["loss_velocity"].backward()
    assert all(p.grad is not None for p in head.parameters())


def test_shape_mismatch_is_reported():
    head = make_head()
    with pytest.raises(AssertionError, match=r"prediction \(2, 8, 10, 2\) vs labels \(2, 8, 10, 7\)"):
        head.loss(torch.zeros(2, 8, 10, 2), (torch.zeros(2, 8, 10, 7), None))


def test_streaming_matches_window_forward():
    """Step-by-step inference equals the last step of a full-window forward, also past the window."""
    head = make_head().eval()
    feats = torch.randn(1, 12, 1, 16)
    window = head.new_stream()
    streamed = [head.step_stream(feats[:, t : t + 1], window) for t in range(12)]
    assert len(window) == 8
    for t in range(12):
        lo = max(0, t - 7)
        full = head(feats[:, lo : t + 1])[0][:, -1:]
        assert torch.allclose(streamed[t], full, atol=1e-6), t
    fresh = head.new_stream()
    assert torch.allclose(head.step_stream(feats[:, 5:6], fresh), head(feats[:, 5:6])[0], atol=1e-6)


def test_streaming_block_routes_forward_and_ends():
    """Inside `streaming(window)` upstream's forward call streams into that window; outside, whole windows."""
    head = make_head().eval()
    feats = torch.randn(1, 3, 1, 16)
    window = head.new_stream()
    with head.streaming(window):
        steps = [head(feats[:, t : t + 1])[0] for t in range(3)]
        with pytest.raises(RuntimeError, match="already streaming"):
            with head.streaming(head.new_stream()):
                pass
    assert len(window) == 3
    assert torch.allclose(steps[-1], head(feats)[0][:, -1:], atol=1e-6)
    assert head(feats)[0].shape == (1, 3, 10, 2)  # no longer streaming


def test_training_with_window_one_does_not_stream():
    """Upstream's LSTMDecoder streams whenever L == 1, even in training; ours only when asked."""
    head = make_head()
    x = torch.randn(2, 1, 1, 16)
    a, _ = head(x)
    b, _ = head(x)
    assert torch.equal(a, b)


def test_sideways_weight_is_a_weighted_mean_over_sideways_labels():
    """Known answer: one sideways label (error 1) among 4 elements weighs w; w=1 is the plain mean."""
    pred = torch.zeros(1, 1, 2, 2)
    labels = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])  # forward, then a sideways key: errors 1, 0, 0, 1
    h = lambda e: 0.5 * e * e  # Huber below delta 1
    assert make_head(fwd_pred_next_n=2).loss(pred, (labels, None))["loss_velocity"].item() == pytest.approx(2 * h(1.0) / 4)
    weighted = make_head(fwd_pred_next_n=2, sideways_weight=4.0).loss(pred, (labels, None))["loss_velocity"].item()
    assert weighted == pytest.approx((h(1.0) + 4 * h(1.0)) / (3 + 4))
