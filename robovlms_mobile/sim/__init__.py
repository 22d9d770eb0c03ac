"""Deterministic closed-loop simulator of the robot's task: room, boxes, bottle, holonomic base."""
