"""MobileVLALSTMDecoder: action-token features -> chunks of 2-DOF velocities, no gripper.

Same structure as upstream's `LSTMDecoder` (LSTM over the window, `MLPTanhHead` per step) but
with `action_dim` outputs per chunk step instead of `action_dim - 1` plus a gripper head, a
masked Huber loss with no BCE term, and an explicit streaming mode for step-by-step inference
(upstream switches to streaming whenever the sequence length is 1, even in training).
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from robovlms.model.policy_head.base_policy import BasePolicyHead, MLPTanhHead, lstm_decoder


class MobileVLALSTMDecoder(BasePolicyHead):
    """LSTM (history over the window) + tanh MLP -> (B, L, chunk, action_dim) in [-1, 1]."""

    def __init__(
        self,
        in_features: int,
        action_dim: int = 2,
        fwd_pred_next_n: int = 10,
        window_size: int = 8,
        hidden_size: int = 1024,
        num_layers: int = 4,
        policy_rnn_dropout_p: float = 0.0,
        down_sample: str = "none",
        latent: int = 1,
        action_space: str = "continuous",
        huber_delta: float = 1.0,
        **kwargs: Any,  # upstream _init_heads also passes tokenizer, n_bin, min/max_action, ...
    ):
        super().__init__(hidden_size, action_dim, action_space=action_space, down_sample=down_sample, latent=latent)
        if down_sample not in ("none", "pooling"):
            raise ValueError(f"act_head.down_sample: {down_sample!r}; expected 'none' or 'pooling'")
        self.in_features = in_features
        self.fwd_pred_next_n = fwd_pred_next_n
        self.window_size = window_size
        self.huber_delta = huber_delta
        self.rnn = lstm_decoder(in_features * latent, hidden_size, num_layers, policy_rnn_dropout_p)
        self.actions = MLPTanhHead(hidden_size, fwd_pred_next_n * action_dim)
        if down_sample == "pooling":
            self.pool = torch.nn.AdaptiveMaxPool1d(latent)
        self.streaming = False
        self.history: deque[torch.Tensor] = deque(maxlen=window_size)

    def reset(self) -> None:
        """Forget the streaming history (new episode)."""
        self.history.clear()

    def _features(self, tok_seq: torch.Tensor) -> torch.Tensor:
        """(B, L, n, D) -> (B, L, n * D) (or pooled over n)."""
        if self.down_sample == "pooling":
            b = tok_seq.shape[0]
            pooled = self.pool(rearrange(tok_seq, "b l n d -> (b l) d n"))
            return rearrange(pooled, "(b l) d n -> b l (n d)", b=b)
        return rearrange(tok_seq, "b l n d -> b l (n d)")

    def forward(self, tok_seq: torch.Tensor, h_0: Any = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
        """(B, L, n, D) action-token states -> ((B, L, chunk, action_dim) velocities, None)."""
        assert tok_seq.ndim == 4, f"expected (B, L, n, D) action tokens, got {tuple(tok_seq.shape)}"
        x = self._features(tok_seq)
        if self.streaming:
            # one new step per call: re-run the LSTM over the last `window_size` steps, exactly
            # as in training, where every window starts from a zero state
            assert x.shape[1] == 1, f"streaming mode takes one step at a time, got L={x.shape[1]}"
            self.history.append(x)
            out, _ = self.rnn(torch.cat(list(self.history), dim=1))
            out = out[:, -1:]
        else:
            out, _ = self.rnn(x, h_0)
        velocities = rearrange(self.actions(out), "b l (n d) -> b l n d", n=self.fwd_pred_next_n)
        return velocities, None

    def loss(self, pred_action: Any, labels: Any, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Masked Huber loss over valid chunk steps; labels = (velocities (B, L, n, 2), None)."""
        if labels is None or labels[0] is None:
            return {}
        pred = pred_action[0] if isinstance(pred_action, (tuple, list)) else pred_action
        target = labels[0].to(pred.dtype)
        assert pred.shape == target.shape, f"prediction {tuple(pred.shape)} vs labels {tuple(target.shape)}"
        per_step = F.huber_loss(pred, target, reduction="none", delta=self.huber_delta)  # (B, L, n, 2)
        abs_err = (pred.detach() - target).abs()
        if attention_mask is not None:
            mask = attention_mask.bool()
            per_step, abs_err = per_step[mask], abs_err[mask]
        return {"loss_velocity": per_step.mean(), "mae_velocity": abs_err.mean()}
