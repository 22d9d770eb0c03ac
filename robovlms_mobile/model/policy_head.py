"""MobileVLALSTMDecoder: action-token features -> chunks of 2-DOF velocities, no gripper.

Same structure as upstream's `LSTMDecoder` (LSTM over the window, `MLPTanhHead` per step) but
with `action_dim` outputs per chunk step instead of `action_dim - 1` plus a gripper head, a
masked Huber loss with no BCE term, and a streaming API of its own for step-by-step inference
(upstream switches to streaming whenever the sequence length is 1, even in training): the caller
owns each episode's feature window (`new_stream()`), `step_stream` advances one, and
`streaming(window)` routes upstream's `forward` calls to `step_stream` for the duration of a block.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from einops import rearrange
from robovlms.model.policy_head.base_policy import BasePolicyHead, MLPTanhHead, lstm_decoder

from robovlms_mobile.task import ACTION_DIM, CHUNK, WINDOW


class MobileVLALSTMDecoder(BasePolicyHead):
    """LSTM (history over the window) + tanh MLP -> (B, L, chunk, action_dim) in [-1, 1]."""

    def __init__(
        self,
        in_features: int,
        action_dim: int = ACTION_DIM,
        fwd_pred_next_n: int = CHUNK,
        window_size: int = WINDOW,
        hidden_size: int = 1024,
        num_layers: int = 4,
        policy_rnn_dropout_p: float = 0.0,
        down_sample: str = "none",
        latent: int = 1,
        action_space: str = "continuous",
        huber_delta: float = 1.0,
        sideways_weight: float = 1.0,
        **kwargs: Any,  # upstream _init_heads also passes tokenizer, n_bin, min/max_action, ...
    ):
        super().__init__(hidden_size, action_dim, action_space=action_space, down_sample=down_sample, latent=latent)
        if down_sample not in ("none", "pooling"):
            raise ValueError(f"act_head.down_sample: {down_sample!r}; expected 'none' or 'pooling'")
        self.in_features = in_features
        self.fwd_pred_next_n = fwd_pred_next_n
        self.window_size = window_size
        self.huber_delta = huber_delta
        # a sideways key is pressed in ~15 % of frames; weighting them was tried on the CNN without gain (results §0c)
        self.sideways_weight = sideways_weight
        self.rnn = lstm_decoder(in_features * latent, hidden_size, num_layers, policy_rnn_dropout_p)
        self.actions = MLPTanhHead(hidden_size, fwd_pred_next_n * action_dim)
        if down_sample == "pooling":
            self.pool = torch.nn.AdaptiveMaxPool1d(latent)
        self._stream: deque[torch.Tensor] | None = None  # the window `forward` streams into, inside `streaming()`

    def new_stream(self) -> deque[torch.Tensor]:
        """An empty per-episode feature window (the last `window_size` steps, each (B, 1, n * D))."""
        return deque(maxlen=self.window_size)

    @contextmanager
    def streaming(self, window: deque[torch.Tensor]) -> Iterator[None]:
        """Inside the block, `forward` takes one step at a time into `window` (upstream calls `forward`)."""
        if self._stream is not None:
            raise RuntimeError("MobileVLALSTMDecoder is already streaming; serialise calls on one model")
        self._stream = window
        try:
            yield
        finally:
            self._stream = None

    def _features(self, tok_seq: torch.Tensor) -> torch.Tensor:
        """(B, L, n, D) -> (B, L, n * D) (or pooled over n)."""
        if self.down_sample == "pooling":
            b = tok_seq.shape[0]
            pooled = self.pool(rearrange(tok_seq, "b l n d -> (b l) d n"))
            return rearrange(pooled, "(b l) d n -> b l (n d)", b=b)
        return rearrange(tok_seq, "b l n d -> b l (n d)")

    def step_stream(self, tok_seq: torch.Tensor, window: deque[torch.Tensor]) -> torch.Tensor:
        """One new step (B, 1, n, D) joins `window`; the LSTM re-runs over it from a zero state, as in training.

        Returns (B, 1, chunk, action_dim): the prediction at the newest position of the window.
        """
        assert tok_seq.ndim == 4 and tok_seq.shape[1] == 1, f"step_stream takes (B, 1, n, D), got {tuple(tok_seq.shape)}"
        window.append(self._features(tok_seq))
        out, _ = self.rnn(torch.cat(list(window), dim=1))  # (B, len(window), hidden)
        return rearrange(self.actions(out[:, -1:]), "b l (n d) -> b l n d", n=self.fwd_pred_next_n)

    def forward(self, tok_seq: torch.Tensor, h_0: Any = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
        """(B, L, n, D) action-token states -> ((B, L, chunk, action_dim) velocities, None)."""
        assert tok_seq.ndim == 4, f"expected (B, L, n, D) action tokens, got {tuple(tok_seq.shape)}"
        if self._stream is not None:
            return self.step_stream(tok_seq, self._stream), None
        out, _ = self.rnn(self._features(tok_seq), h_0)
        velocities = rearrange(self.actions(out), "b l (n d) -> b l n d", n=self.fwd_pred_next_n)
        return velocities, None

    def loss(self, pred_action: Any, labels: Any, attention_mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Masked Huber loss over valid chunk steps; labels = (velocities (B, L, n, 2), None).

        With `sideways_weight` w != 1 the loss is a weighted mean: linear_y labels of a sideways key (nonzero) weigh w.
        """
        if labels is None or labels[0] is None:
            return {}
        pred = pred_action[0] if isinstance(pred_action, (tuple, list)) else pred_action
        target = labels[0].to(pred.dtype)
        assert pred.shape == target.shape, f"prediction {tuple(pred.shape)} vs labels {tuple(target.shape)}"
        per_step = F.huber_loss(pred, target, reduction="none", delta=self.huber_delta)  # (B, L, n, 2)
        abs_err = (pred.detach() - target).abs()
        weight = None
        if self.sideways_weight != 1.0:  # (B, L, n, 2): linear_y of a sideways key weighs w, the rest 1
            weight = torch.ones_like(per_step)
            weight[..., 1] = torch.where(target[..., 1] != 0, self.sideways_weight, 1.0)
        if attention_mask is not None:
            mask = attention_mask.bool()
            per_step, abs_err = per_step[mask], abs_err[mask]
            weight = None if weight is None else weight[mask]
        loss = per_step.mean() if weight is None else (per_step * weight).sum() / weight.sum()
        return {"loss_velocity": loss, "mae_velocity": abs_err.mean()}
