"""ROS 2 side: a thin rclpy node (bridge.py) over pure-Python parts (safety, frames, controller)."""
