"""MobileVLAPolicy: safe loading, restored scale and prompt, streaming == training forward, episodes."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from robovlms_mobile.checkpoint.format import PLUGIN_KEY, CheckpointError, UnsafeCheckpointError
from robovlms_mobile.data.dataset import MobileVLAH5Dataset
from robovlms_mobile.data.frames import read_frames_rgb
from robovlms_mobile.data.prompt import encode_prompts
from robovlms_mobile.runtime.chunking import StrategySpec
from robovlms_mobile.runtime.loader import BaseModelError
from robovlms_mobile.runtime.policy import MobileVLAPolicy

LEFT = "go around the box on the left and stop in front of the bottle"
RIGHT = "go around the box on the right and stop in front of the bottle"


@pytest.fixture(scope="module")
def policy(tiny_checkpoint, tiny_model_dir) -> MobileVLAPolicy:
    return MobileVLAPolicy.from_checkpoint(tiny_checkpoint, base_model_dir=tiny_model_dir)


def training_forward(policy: MobileVLAPolicy, rgb: torch.Tensor, text: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The training-time forward (whole window at once; the head streams only inside a query) -> (B, W, n, 2) normalised."""
    with torch.inference_mode():
        return policy.model.forward_continuous(rgb, text, attention_mask=mask, mode="inference")[0]


def test_streaming_equals_training_forward(policy, tmp_path):
    """Frame-by-frame streaming reproduces every window position of the training forward, past the first window too."""
    from robovlms_mobile.data.synthetic import generate_episodes

    generate_episodes(tmp_path, 2, seed=1, frame_size=(72, 128), length=20)  # 3 windows per episode
    data = MobileVLAH5Dataset(tmp_path, tokenizer=policy.tokenizer, split="all", window_size=8, fwd_pred_next_n=10)
    e = data.index[0][0]
    episode = data.episodes[e]
    starts = [i for i, (ep, _) in enumerate(data.index) if ep == e][:3]  # windows starting at frames 0, 1, 2
    frames = read_frames_rgb(data._file(episode.path), episode, 0, 10)  # (10, H, W, 3) RGB, as the robot sends
    ep = policy.new_episode()
    streamed = np.stack([policy.predict(f, episode.instruction, ep) for f in frames])  # (10, n, 2) m/s

    batch = data.collater([data[i] for i in starts])
    assert batch["rgb"].shape == (3, 8, 3, 224, 224)
    text, mask = encode_prompts(policy.tokenizer, [episode.instruction], policy.prompt_template)
    assert torch.equal(batch["text"][:1], text)  # training's collater and serving tokenise identically
    reference = training_forward(policy, batch["rgb"], batch["text"], batch["text_mask"]).numpy() * policy.max_speed
    np.testing.assert_allclose(streamed[:8], reference[0], atol=1e-5, rtol=1e-4)  # positions 0..7 of window 0
    np.testing.assert_allclose(streamed[8], reference[1, -1], atol=1e-5, rtol=1e-4)  # frame 8 = end of window 1
    np.testing.assert_allclose(streamed[9], reference[2, -1], atol=1e-5, rtol=1e-4)
    assert len(ep.history) == 8 and ep.queries == 10


def test_action_scale_and_prompt_restored(policy, frames):
    assert policy.max_speed == 1.15 and policy.axes == ["linear_x", "linear_y"]
    assert policy.prompt(LEFT) == f"<grounding>An image of a robot {LEFT}"
    chunk = policy.predict(frames[0], LEFT, policy.new_episode())
    assert chunk.shape == (10, 2) and chunk.dtype == np.float64
    raw = training_forward(policy, *_one(policy, frames[0], LEFT))[0, 0].numpy()
    np.testing.assert_allclose(chunk, raw * 1.15, atol=1e-6)
    assert np.all(np.abs(chunk) <= 1.15)


def _one(policy, frame, instruction):
    from robovlms_mobile.data.transforms import preprocess_frames

    text, mask = encode_prompts(policy.tokenizer, [instruction], policy.prompt_template)
    return preprocess_frames(frame[None], 224)[None], text, mask


def test_custom_prompt_template_from_checkpoint(tiny_checkpoint, tiny_model_dir, tmp_path):
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    ckpt[PLUGIN_KEY]["prompt"]["template"] = "<grounding>Robot, {instruction}."
    ckpt[PLUGIN_KEY]["action_scale"]["max_speed"] = 2.0
    torch.save(ckpt, tmp_path / "custom.ckpt")
    policy = MobileVLAPolicy.from_checkpoint(tmp_path / "custom.ckpt", base_model_dir=tiny_model_dir)
    assert policy.prompt(" turn left ") == "<grounding>Robot, turn left."
    assert policy.max_speed == 2.0
    ep = policy.new_episode()
    policy.predict(np.zeros((32, 32, 3), np.uint8), "turn left", ep)
    assert torch.equal(ep.text[0], encode_prompts(policy.tokenizer, ["turn left"], "<grounding>Robot, {instruction}.")[0])


def test_instruction_changes_the_output(policy, frames):
    left = policy.predict(frames[0], LEFT, policy.new_episode())
    right = policy.predict(frames[0], RIGHT, policy.new_episode())
    assert not np.allclose(left, right)


def test_episodes_are_independent_and_reset_starts_over(policy, frames):
    a, b = policy.new_episode(), policy.new_episode()
    first = policy.predict(frames[0], LEFT, a)
    for f in frames[1:5]:
        policy.predict(f, LEFT, a)
    np.testing.assert_array_equal(policy.predict(frames[0], LEFT, b), first)  # b unaffected by a's window
    policy.reset(a)
    assert len(a.history) == 0 and a.tick == 0
    np.testing.assert_array_equal(policy.predict(frames[0], LEFT, a), first)
    # the built-in episode (no state argument) behaves the same
    policy.reset()
    np.testing.assert_array_equal(policy.predict(frames[0], LEFT), first)


def test_new_instruction_restarts_the_window(policy, frames):
    ep = policy.new_episode()
    for f in frames[:4]:
        policy.step(f, LEFT, ep)
    result = policy.step(frames[4], RIGHT, ep)
    assert result.tick == 0 and result.window == 1
    np.testing.assert_array_equal(result.chunk, policy.predict(frames[4], RIGHT, policy.new_episode()))


@pytest.mark.parametrize("name, queried", [
    ("receding", [True] * 7),
    ("reuse", [True, False, False, True, False, False, True]),
    ("ensemble", [True] * 7),
])
def test_step_follows_the_chunk_strategy(policy, frames, name, queried):
    runner = MobileVLAPolicy(policy.module, max_speed=policy.max_speed, prompt_template=policy.prompt_template,
                             strategy=StrategySpec(name, reuse_steps=3))
    assert runner._lock is policy._lock  # the same model, the same lock
    ep = runner.new_episode()
    results = [runner.step(frames[i], LEFT, ep) for i in range(7)]
    assert [r.queried for r in results] == queried
    assert [r.tick for r in results] == list(range(7))
    assert all(r.velocity.shape == (2,) and (r.model_ms > 0) == r.queried for r in results)
    if name == "reuse":
        np.testing.assert_array_equal(results[1].velocity, results[0].chunk[1])
        np.testing.assert_array_equal(results[2].velocity, results[0].chunk[2])
        assert results[3].window == 2  # the model saw one frame per query
    else:
        assert results[-1].window == 7


@pytest.mark.parametrize("frame, message", [
    (np.zeros((8, 8), np.uint8), "RGB uint8"),
    (np.zeros((8, 8, 4), np.uint8), "RGB uint8"),
    (np.zeros((8, 8, 3), np.float32), "RGB uint8"),
])
def test_bad_frames_are_refused(policy, frame, message):
    with pytest.raises(ValueError, match=message):
        policy.predict(frame, LEFT, policy.new_episode())


def test_bad_instructions_are_refused(policy, frames):
    for bad, message in (("  ", "non-empty"), ("x" * 513, "limit is 512")):
        with pytest.raises(ValueError, match=message):
            policy.step(frames[0], bad, policy.new_episode())


class Payload:
    def __reduce__(self):
        return (print, ("pwned",))


def test_pickled_payload_checkpoint_is_refused(tmp_path, tiny_model_dir, capsys):
    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "x": Payload()}, path)
    with pytest.raises(UnsafeCheckpointError, match="refusing to load"):
        MobileVLAPolicy.from_checkpoint(path, base_model_dir=tiny_model_dir)
    assert "pwned" not in capsys.readouterr().out


def test_non_plugin_checkpoint_is_refused(tmp_path, tiny_model_dir):
    torch.save({"state_dict": {"w": torch.zeros(1)}}, tmp_path / "plain.ckpt")
    with pytest.raises(CheckpointError, match="not a robovlms-mobile checkpoint"):
        MobileVLAPolicy.from_checkpoint(tmp_path / "plain.ckpt", base_model_dir=tiny_model_dir)


def test_base_model_dir_overrides_and_is_checked(tiny_checkpoint, tiny_model_dir, tmp_path):
    moved = tmp_path / "kosmos"
    shutil.copytree(tiny_model_dir, moved)
    policy = MobileVLAPolicy.from_checkpoint(tiny_checkpoint, base_model_dir=moved)
    assert policy.configs["vlm"]["pretrained_model_name_or_path"] == str(moved.resolve())
    assert policy.metadata.model_dir == moved and policy.describe()["instructions"]
    assert policy.configs["tokenizer"]["pretrained_model_name_or_path"] == str(moved.resolve())
    with pytest.raises(BaseModelError, match="no config.json"):
        MobileVLAPolicy.from_checkpoint(tiny_checkpoint, base_model_dir=tmp_path / "missing")
    (moved / "tokenizer.json").write_text("{broken")
    with pytest.raises(BaseModelError, match="processor does not load"):
        MobileVLAPolicy.from_checkpoint(tiny_checkpoint, base_model_dir=moved)
    assert (moved / "config.json").is_file()  # upstream's rmtree fallback never ran


def test_model_folder_with_custom_code_is_refused(tiny_checkpoint, tiny_model_dir, tmp_path):
    import json

    moved = tmp_path / "kosmos"
    shutil.copytree(tiny_model_dir, moved)
    cfg = json.loads((moved / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "evil.Model"}
    (moved / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(BaseModelError, match="auto_map"):
        MobileVLAPolicy.from_checkpoint(tiny_checkpoint, base_model_dir=moved)
