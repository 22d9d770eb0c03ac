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


# ---- committed actions (training-time RTC) -------------------------------------------------------------------

def test_committed_head_starts_as_the_plain_head_and_loads_its_weights():
    plain, committed = make_head(), make_head(committed_steps=5)
    missing = committed.load_state_dict(plain.state_dict(), strict=False).missing_keys
    assert sorted(missing) == ["commit_proj.bias", "commit_proj.weight"]
    x, prefix = torch.randn(2, 8, 1, 16), torch.rand(3, 2) * 2 - 1
    with committed.committed(prefix):
        out, _ = committed.eval()(x)
    assert torch.equal(out, plain.eval()(x)[0])  # zero-initialised: the prefix changes nothing until trained


def test_training_judges_only_the_steps_after_the_committed_prefix():
    head = make_head(committed_steps=5).train()
    labels = torch.rand(4, 8, 10, 2) * 2 - 1
    pred, _ = head(torch.randn(4, 8, 1, 16), actions=(labels, None))
    keep = head._loss_keep
    assert keep.shape == (4, 8, 10)
    given = (~keep).sum(-1)  # (B, L): d per window position, a prefix of the chunk
    assert given.min() >= 0 and given.max() <= 5 and len(given.unique()) > 1
    assert torch.equal(keep, torch.arange(10) >= given[..., None])
    target = labels.clone()
    target[~keep] = 7.0  # a huge error on the committed steps only: not in the loss
    loss = head.loss(pred, (target, None), torch.ones(4, 8, 10))["loss_velocity"]
    expected = torch.nn.functional.huber_loss(pred[keep], labels[keep])
    assert torch.allclose(loss, expected)
    assert head._loss_keep is None  # consumed: the next (eval) loss judges every step


def test_validation_and_inference_without_a_queue_see_no_prefix():
    head = make_head(committed_steps=5)
    with torch.no_grad():
        head.commit_proj.weight.normal_()
    x, labels = torch.randn(2, 8, 1, 16), torch.rand(2, 8, 10, 2)
    val, _ = head.eval()(x, actions=(labels, None))
    with head.committed(None):
        bare, _ = head(x)
    with head.committed(labels[0, -1, :2]):
        told, _ = head(x)
    assert torch.equal(val, bare) and not torch.allclose(told, bare)
    assert head._loss_keep is None


def test_streaming_with_committed_actions_matches_the_window_forward():
    head = make_head(committed_steps=4).eval()
    with torch.no_grad():
        head.commit_proj.weight.normal_()
    x, prefix = torch.randn(1, 8, 1, 16), torch.rand(6, 2) * 2 - 1  # longer than committed_steps: the first 4 count
    with head.committed(prefix):
        whole, _ = head(x)
        window = head.new_stream()
        with head.streaming(window):
            for t in range(8):
                step, _ = head(x[:, t:t + 1])
    assert torch.allclose(step[0, -1], whole[0, -1], atol=1e-5)
    with head.committed(prefix[:4]):
        assert torch.equal(head(x)[0], whole)


def test_committed_actions_are_refused_where_the_head_cannot_take_them():
    with pytest.raises(ValueError, match="trained without committed actions"):
        with make_head().committed(torch.zeros(2, 2)):
            pass
    with pytest.raises(ValueError, match=r"\(d, action_dim\)"):
        with make_head(committed_steps=3).committed(torch.zeros(2, 3)):
            pass
    with pytest.raises(ValueError, match="act_head.committed_steps"):
        make_head(committed_steps=10)


def test_a_trained_committed_head_reads_its_prefix():
    """Known answer: a chunk that repeats one random sign, nothing in the features: only the prefix tells it."""
    torch.manual_seed(0)
    head = make_head(committed_steps=3, num_layers=1)
    opt = torch.optim.Adam(head.parameters(), lr=3e-3)
    x = torch.zeros(32, 8, 1, 16)
    for _ in range(150):
        sign = torch.randint(0, 2, (32, 8, 1, 1)).float() * 2 - 1
        labels = (0.8 * sign).expand(32, 8, 10, 2)
        head.train()
        pred, _ = head(x, actions=(labels, None))
        loss = head.loss(pred, (labels, None), None)["loss_velocity"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    head.eval()
    for s in (-0.8, 0.8):
        with head.committed(torch.full((1, 2), s)):
            out, _ = head(x[:1])
        assert (out[0, -1, 1:] * s > 0.5).all(), out[0, -1]  # follows the committed sign
    assert head(x[:1])[0].abs().max() < 0.3  # untold: the sign is a coin toss


def test_a_shorter_inference_window_is_the_training_forward_at_that_position():
    head = make_head().eval()
    x = torch.randn(1, 8, 1, 16)
    window = head.new_stream(3)
    with head.streaming(window):
        for t in range(8):
            step, _ = head(x[:, t:t + 1])
    assert len(window) == 3
    whole, _ = head(x[:, 5:8])  # the last three frames as a training window: its newest position
    assert torch.allclose(step[0, -1], whole[0, -1], atol=1e-5)
    for bad in (0, 9):
        with pytest.raises(ValueError, match="history frames must be in 1..8"):
            head.new_stream(bad)
