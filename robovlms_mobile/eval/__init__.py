"""Evaluation: offline metrics on episode files, closed-loop driving in the simulator."""
