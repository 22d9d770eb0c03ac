"""`make demo` pieces: its goals, the model link into the cache, its part timer."""

from __future__ import annotations

import pytest

from robovlms_mobile.recipes.demo import expert_episodes, goals_met, link_into, timed


def test_goals():
    good = {"trained": 0.79, "instruction_blanked": 0.33, "image_frozen": 0.25, "replay": 0.2}
    assert goals_met(good, 0.1) == {"success": True, "blank": True, "replay": True, "image_frozen": True, "seen_in_training": True}
    bad = {"trained": 0.70, "instruction_blanked": 0.40, "image_frozen": 0.3, "replay": 0.25}
    assert goals_met(bad, 0.11) == {"success": False, "blank": False, "replay": False, "image_frozen": False,
                                    "seen_in_training": False}
    never = {"trained": 0.0, "instruction_blanked": 0.0, "image_frozen": 0.0, "replay": 0.0}
    assert not goals_met(never, 0.0)["blank"]  # 0 <= half of 0 says nothing about the instruction


def test_rows_table_keeps_per_seed_values_and_fixed_rows():
    from robovlms_mobile.recipes.demo import rows_table

    def overall(success):
        return {"success_rate": success, "spl": success / 2, "collision_rate": 0.1, "wrong_side_rate": 0.0, "moved_rate": 1.0}

    runs = [{"closed_loop": {"trained": overall(v)}} for v in (0.5, 0.7, 0.9)]
    table = rows_table(runs, {"replay": {"overall": overall(0.1)}})
    assert table["trained"]["success"]["per_seed"] == [0.5, 0.7, 0.9]
    assert table["trained"]["success"]["mean"] == pytest.approx(0.7) and table["trained"]["spl"]["mean"] == pytest.approx(0.35)
    assert table["trained"]["success"]["std"] == pytest.approx(0.1633, abs=1e-4)
    assert table["replay"]["policy_independent"] and table["replay"]["success"]["per_seed"] == [0.1] * 3


def test_link_moves_an_old_folder_aside_and_deletes_nothing(tmp_path, capsys):
    cached, model_dir = tmp_path / "cache" / "tiny-kosmos2-pretrained-abc", tmp_path / "runs" / "demo" / "tiny-kosmos2"
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text('{"old": 1}')
    link_into(model_dir, cached)
    assert model_dir.is_symlink() and (model_dir / "config.json").read_text() == "{}"
    (aside,) = [p for p in model_dir.parent.iterdir() if p.name.startswith("tiny-kosmos2.replaced-")]
    assert (aside / "config.json").read_text() == '{"old": 1}' and "moved aside" in capsys.readouterr().out
    link_into(model_dir, cached)  # idempotent
    assert model_dir.resolve() == cached.resolve()
    other = tmp_path / "cache" / "other"
    other.mkdir()
    link_into(model_dir, other)  # an old link is replaced; its target stays
    assert model_dir.resolve() == other.resolve() and (cached / "config.json").is_file()


def test_expert_episodes_come_from_a_content_keyed_cache(tmp_path):
    first = expert_episodes(2, seed=0, frame_size=(36, 64), cache_root=tmp_path, progress=False)
    files = sorted(first.glob("*.h5"))
    assert len(files) == 2 and first.parent == tmp_path and not list(tmp_path.glob(".robovlms-build-*"))
    stamps = [f.stat().st_mtime_ns for f in files]
    assert expert_episodes(2, seed=0, frame_size=(36, 64), cache_root=tmp_path, progress=False) == first
    assert [f.stat().st_mtime_ns for f in files] == stamps  # reused, not rewritten
    assert expert_episodes(3, seed=0, frame_size=(36, 64), cache_root=tmp_path, progress=False) != first


def test_timed_records_wall_and_cpu(capsys):
    timings: dict = {}
    with timed(timings, "part"):
        sum(i * i for i in range(200_000))
    assert set(timings["part"]) == {"wall_s", "cpu_s"} and timings["part"]["cpu_s"] >= 0
    assert "[time] part:" in capsys.readouterr().out
