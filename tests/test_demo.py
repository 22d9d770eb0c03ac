"""`make demo` pieces: its goals, the model link into the cache, its part timer."""

from __future__ import annotations

from robovlms_mobile.demo import goals_met, link_model, timed


def test_goals():
    assert goals_met(0.79, 0.33, 0.0) == {"success": True, "blank": True, "untrained": True}
    assert goals_met(0.70, 0.40, 0.04) == {"success": False, "blank": False, "untrained": False}


def test_model_link_replaces_an_old_random_model(tmp_path):
    cached, model_dir = tmp_path / "cache" / "tiny-kosmos2-pretrained-abc", tmp_path / "runs" / "demo" / "tiny-kosmos2"
    cached.mkdir(parents=True)
    (cached / "config.json").write_text("{}")
    model_dir.mkdir(parents=True)
    (model_dir / "config.json").write_text('{"old": 1}')
    link_model(model_dir, cached)
    assert model_dir.is_symlink() and (model_dir / "config.json").read_text() == "{}"
    link_model(model_dir, cached)  # idempotent
    assert model_dir.resolve() == cached.resolve()


def test_timed_records_wall_and_cpu(capsys):
    timings: dict = {}
    with timed(timings, "part"):
        sum(i * i for i in range(200_000))
    assert set(timings["part"]) == {"wall_s", "cpu_s"} and timings["part"]["cpu_s"] >= 0
    assert "[time] part:" in capsys.readouterr().out
