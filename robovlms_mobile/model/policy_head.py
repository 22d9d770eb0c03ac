"""MobileVLALSTMDecoder: action-token features -> chunks of 2-DOF velocities, no gripper.

Same structure as upstream's `LSTMDecoder` (LSTM over the window, `MLPTanhHead` per step) but
with `action_dim` outputs per chunk step instead of `action_dim - 1` plus a gripper head, a
masked Huber loss with no BCE term, and a streaming API of its own for step-by-step inference
(upstream switches to streaming whenever the sequence length is 1, even in training): the caller
owns each episode's feature window (`new_stream()`), `step_stream` advances one, and
`streaming(window)` routes upstream's `forward` calls to `step_stream` for the duration of a block.

With `committed_steps` D > 0 the head is also told the actions already committed to the robot
(training-time RTC, Black et al. 2025): the first d <= D actions of the chunk, which will execute
while the query runs. A zero-initialised projection adds them (and their mask) to the LSTM
output, so a head without them loads unchanged. Training draws d uniformly in 0..D per window
position from the label chunk itself and leaves those d steps out of the loss; inference passes
the executor's queued plan through `committed(prefix)`; d = 0 (validation, no queue) is the
plain head.
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

ZERO_INIT_MODULE = "act_head.commit_proj."  # zero-initialised: a checkpoint without it loads unchanged


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
        committed_steps: int = 0,
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
        if not 0 <= committed_steps < fwd_pred_next_n:
            raise ValueError(f"act_head.committed_steps: {committed_steps!r}; expected 0..{fwd_pred_next_n - 1}")
        self.committed_steps = int(committed_steps)
        if self.committed_steps:
            self.commit_proj = torch.nn.Linear(fwd_pred_next_n * (action_dim + 1), hidden_size)
            torch.nn.init.zeros_(self.commit_proj.weight)
            torch.nn.init.zeros_(self.commit_proj.bias)
        self._committed: torch.Tensor | None = None  # inference prefix (d, action_dim), inside `committed()`
        self._loss_keep: torch.Tensor | None = None  # training: (B, L, n) chunk steps the loss judges
        if down_sample == "pooling":
            self.pool = torch.nn.AdaptiveMaxPool1d(latent)
        self._stream: deque[torch.Tensor] | None = None  # the window `forward` streams into, inside `streaming()`

    def new_stream(self, frames: int | None = None) -> deque[torch.Tensor]:
        """An empty per-episode feature window (the last `frames` <= window_size steps, each (B, 1, n * D)).

        Fewer frames than the window is in distribution: training judges every window position,
        position k seeing k + 1 frames.
        """
        if frames is not None and not 1 <= frames <= self.window_size:
            raise ValueError(f"history frames must be in 1..{self.window_size} (the window), got {frames}")
        return deque(maxlen=self.window_size if frames is None else frames)

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

    @contextmanager
    def committed(self, prefix: torch.Tensor | None) -> Iterator[None]:
        """Inside the block, the newest prediction is conditioned on `prefix` (d, action_dim), normalised to [-1, 1]."""
        if prefix is not None and len(prefix):
            if not self.committed_steps:
                raise ValueError("this head was trained without committed actions (act_head.committed_steps 0)")
            if prefix.ndim != 2 or prefix.shape[1] != self.action_dim:
                raise ValueError(f"committed actions must be (d, action_dim), got {tuple(prefix.shape)}")
            prefix = prefix[: self.committed_steps]
        self._committed = prefix if prefix is not None and len(prefix) else None
        try:
            yield
        finally:
            self._committed = None

    def _condition(self, out: torch.Tensor, prefix: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
        """LSTM output (B, L, H) + projection of the committed chunk steps (B, L, n, a) and their mask (B, L, n)."""
        code = torch.cat([rearrange(prefix * known[..., None], "b l n a -> b l (n a)"), known], dim=-1)
        return out + self.commit_proj(code.to(out.dtype))

    def _inference_prefix(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The committed prefix of `committed()` as (B, L, n, a) actions and (B, L, n) mask for output (B, L, H)."""
        b, l, _ = out.shape
        prefix = out.new_zeros(b, l, self.fwd_pred_next_n, self.action_dim)
        known = out.new_zeros(b, l, self.fwd_pred_next_n)
        if self._committed is not None:
            d = self._committed.shape[0]
            prefix[:, :, :d] = self._committed.to(out)
            known[:, :, :d] = 1.0
        return prefix, known

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
        out = out[:, -1:]
        if self.committed_steps:
            out = self._condition(out, *self._inference_prefix(out))
        return rearrange(self.actions(out), "b l (n d) -> b l n d", n=self.fwd_pred_next_n)

    def forward(self, tok_seq: torch.Tensor, h_0: Any = None, **kwargs: Any) -> tuple[torch.Tensor, None]:
        """(B, L, n, D) action-token states -> ((B, L, chunk, action_dim) velocities, None)."""
        assert tok_seq.ndim == 4, f"expected (B, L, n, D) action tokens, got {tuple(tok_seq.shape)}"
        if self._stream is not None:
            return self.step_stream(tok_seq, self._stream), None
        out, _ = self.rnn(self._features(tok_seq), h_0)  # (B, L, hidden)
        self._loss_keep = None
        if self.committed_steps:
            labels = kwargs.get("actions")
            labels = labels[0] if isinstance(labels, (tuple, list)) else labels
            if self.training and labels is not None:
                prefix, known = self._sample_prefix(labels.to(out.dtype))
                self._loss_keep = known == 0
            else:
                prefix, known = self._inference_prefix(out)
            out = self._condition(out, prefix, known)
        velocities = rearrange(self.actions(out), "b l (n d) -> b l n d", n=self.fwd_pred_next_n)
        return velocities, None

    def _sample_prefix(self, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels (B, L, n, a) -> (the same, mask (B, L, n) of the first d steps), d uniform in 0..committed_steps."""
        assert labels.ndim == 4 and labels.shape[2] == self.fwd_pred_next_n, f"labels (B, L, n, a), got {tuple(labels.shape)}"
        b, l = labels.shape[:2]
        d = torch.randint(0, self.committed_steps + 1, (b, l, 1), device=labels.device)
        known = (torch.arange(self.fwd_pred_next_n, device=labels.device) < d).to(labels.dtype)  # (B, L, n)
        return labels, known

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
        keep, self._loss_keep = self._loss_keep, None  # committed steps (training-time RTC) are given, not judged
        if keep is not None and keep.shape == per_step.shape[:3]:
            attention_mask = keep if attention_mask is None else attention_mask.bool() & keep
        if attention_mask is not None:
            mask = attention_mask.bool()
            per_step, abs_err = per_step[mask], abs_err[mask]
            weight = None if weight is None else weight[mask]
        loss = per_step.mean() if weight is None else (per_step * weight).sum() / weight.sum()
        return {"loss_velocity": loss, "mae_velocity": abs_err.mean()}
