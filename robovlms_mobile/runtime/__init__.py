"""Inference: load a plugin checkpoint, keep per-episode state, turn chunks into per-tick velocities."""
