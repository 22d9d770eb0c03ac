"""`make demo` pieces: its goals, the model link into the cache, its part timer."""

from __future__ import annotations

from robovlms_mobile.recipes.demo import expert_episodes, goals_met, link_into, timed


def test_goals():
    assert goals_met(0.79, 0.33, 0.0) == {"success": True, "blank": True, "untrained": True}
    assert goals_met(0.70, 0.40, 0.04) == {"success": False, "blank": False, "untrained": False}


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
    assert len(files) == 2 and first.parent == tmp_path and not list(tmp_path.glob(".build-*"))
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
