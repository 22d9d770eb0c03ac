from drive_fixtures import frames, tiny_checkpoint  # noqa: F401  (shared session fixtures)
