"""The rclpy node: camera -> DriveController -> safety -> geometry_msgs/Twist on /cmd_vel.

Deliberately thin: it converts messages and forwards callbacks; every decision is in
controller.py and safety.py (tested without ROS). rclpy and the message packages come from a
ROS 2 installation (not PyPI), so they are imported only when the node starts.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any

from robovlms_mobile.ros.controller import DriveController
from robovlms_mobile.ros.frames import image_msg_to_rgb
from robovlms_mobile.ros.safety import Command

ROS_HINT = ("rclpy is not importable: run inside a ROS 2 environment (e.g. `source /opt/ros/humble/setup.bash`); "
            "it is not installable from PyPI")


class RosUnavailableError(ImportError):
    """rclpy (or the message packages) cannot be imported."""


@dataclass(frozen=True)
class Topics:
    """Topic names and rates of the node."""

    image: str = "/camera/image_raw"
    compressed: bool = False  # subscribe sensor_msgs/CompressedImage instead of sensor_msgs/Image
    cmd_vel: str = "/cmd_vel"
    estop: str = "/e_stop"  # std_msgs/Bool: true engages, false releases
    instruction: str = "/instruction"  # std_msgs/String: a new command starts a new episode
    publish_hz: float = 20.0
    tick_hz: float = 10.0


def require_rclpy() -> Any:
    """The rclpy module, or RosUnavailableError with what to do."""
    try:
        import rclpy  # noqa: F401
        from geometry_msgs.msg import Twist  # noqa: F401
        from sensor_msgs.msg import CompressedImage, Image  # noqa: F401
        from std_msgs.msg import Bool, String  # noqa: F401
    except ImportError as exc:
        raise RosUnavailableError(f"{ROS_HINT} ({exc})") from None
    return rclpy


def fill_twist(twist: Any, command: Command) -> Any:
    """Write a safety Command into a geometry_msgs/Twist (planar: everything else zero)."""
    twist.linear.x, twist.linear.y, twist.linear.z = float(command.linear_x), float(command.linear_y), 0.0
    twist.angular.x = twist.angular.y = twist.angular.z = 0.0
    return twist


def frame_from_msg(msg: Any, compressed: bool) -> Any:
    """What the controller takes: RGB array from an Image, the encoded bytes of a CompressedImage."""
    return bytes(msg.data) if compressed else image_msg_to_rgb(msg)


def run_node(controller: DriveController, topics: Topics, node_name: str = "mobile_vla_bridge") -> None:
    """Spin the bridge node until shutdown; publishes one zero Twist on the way out."""
    rclpy = require_rclpy()
    from geometry_msgs.msg import Twist
    from rclpy.node import Node
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Bool, String

    class BridgeNode(Node):
        def __init__(self) -> None:
            super().__init__(node_name)
            self.publisher = self.create_publisher(Twist, topics.cmd_vel, 10)
            self.create_subscription(CompressedImage if topics.compressed else Image, topics.image, self.on_image, 1)
            self.create_subscription(Bool, topics.estop, lambda m: controller.on_estop(bool(m.data)), 10)
            self.create_subscription(String, topics.instruction, lambda m: controller.set_instruction(str(m.data)), 10)
            self.create_timer(1.0 / topics.publish_hz, self.publish)

        def on_image(self, msg: Any) -> None:
            try:
                controller.on_frame(frame_from_msg(msg, topics.compressed))
            except ValueError as exc:
                self.get_logger().warning(f"frame dropped: {exc}", throttle_duration_sec=5.0)

        def publish(self) -> None:
            command = controller.command()
            if command is not None:
                self.publisher.publish(fill_twist(Twist(), command))

    rclpy.init()
    node = BridgeNode()
    stop = threading.Event()
    worker = threading.Thread(target=controller.run, args=(stop, topics.tick_hz), name="policy-ticks", daemon=True)
    worker.start()
    try:
        rclpy.spin(node)
    except KeyboardInterrupt:
        pass
    finally:
        stop.set()
        controller.on_estop(True)
        node.publisher.publish(fill_twist(Twist(), controller.command() or Command(0.0, 0.0, "estop")))
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        worker.join(timeout=2.0)
