"""The serve tests' real server: one per session, API key on, reuse 2, small limits."""

from __future__ import annotations

import pytest

from drive_fixtures import frames, tiny_checkpoint  # noqa: F401  (shared session fixtures)
from server_process import API_KEY, SERVER_ARGS, start_server, stop_server


@pytest.fixture(scope="session")
def server(tiny_checkpoint, tiny_model_dir, tmp_path_factory):
    """One real server for the serve tests (API key on, reuse 2, small limits)."""
    srv = start_server(tiny_checkpoint, tiny_model_dir, tmp_path_factory.mktemp("server") / "server.log", *SERVER_ARGS,
                       env={"ROBOVLMS_MOBILE_API_KEY": API_KEY})
    yield srv
    stop_server(srv)
    log = srv.log.read_text()
    assert "Traceback" not in log, log[-4000:]  # no request ended in an unhandled exception (a 500)
