"""The rclpy node: camera -> DriveController -> safety -> geometry_msgs/Twist on /cmd_vel.

Deliberately thin: it converts messages and forwards callbacks; every decision is in
controller.py and safety.py (tested without ROS). Frames come from an image topic
(sensor_msgs/Image or CompressedImage) or by polling an image service whose type is named at
run time (the robot's CSI camera: camera_interfaces/srv/GetImage). rclpy and the messages are
the `ros` extra (PyPI wheels); they are imported only when the node starts, after
`prepare_ros_environment()` has pinned DDS discovery to this machine.
"""

from __future__ import annotations

import os
import signal
import threading
from dataclasses import dataclass
from typing import Any

from robovlms_mobile.ros.controller import DriveController
from robovlms_mobile.ros.frames import image_msg_to_rgb
from robovlms_mobile.ros.safety import Command

ROS_HINT = ("rclpy is not importable: install the ROS 2 wheels (`pip install 'robovlms-mobile[ros]'` or "
            "`pip install -r requirements-ros.txt`), or run inside a sourced ROS 2 environment")


TEARDOWN_S = 10.0  # seconds allowed for node/middleware teardown after the closing zero


class RosUnavailableError(ImportError):
    """rclpy (or the message packages) cannot be imported."""


@dataclass(frozen=True)
class Topics:
    """Topic and service names and rates of the node."""

    image: str = "/camera/image_raw"
    compressed: bool = False  # subscribe sensor_msgs/CompressedImage instead of sensor_msgs/Image
    cmd_vel: str = "/cmd_vel"
    estop: str = "/e_stop"  # std_msgs/Bool: true engages, false releases
    instruction: str = "/instruction"  # std_msgs/String: a new command starts a new episode
    publish_hz: float = 20.0
    tick_hz: float = 10.0
    image_service: str | None = None  # poll this service for frames instead of subscribing to `image`
    image_service_type: str = "camera_interfaces/srv/GetImage"
    image_service_field: str = "image"  # response field holding a sensor_msgs/Image or CompressedImage
    image_service_timeout_s: float = 1.0  # an unanswered request is dropped and sent again after this


def require_rclpy() -> Any:
    """The rclpy module, or RosUnavailableError with what to do."""
    try:
        import rclpy  # noqa: F401
        from geometry_msgs.msg import Twist  # noqa: F401
        from sensor_msgs.msg import CompressedImage, Image  # noqa: F401
        from std_msgs.msg import Bool, String  # noqa: F401
    except ImportError as exc:
        raise RosUnavailableError(f"{ROS_HINT} ({str(exc).splitlines()[0]})") from None
    return rclpy


def fill_twist(twist: Any, command: Command) -> Any:
    """Write a safety Command into a geometry_msgs/Twist (planar: everything else zero)."""
    twist.linear.x, twist.linear.y, twist.linear.z = float(command.linear_x), float(command.linear_y), 0.0
    twist.angular.x = twist.angular.y = twist.angular.z = 0.0
    return twist


def frame_from_msg(msg: Any, compressed: bool) -> Any:
    """What the controller takes: RGB array from an Image, the encoded bytes of a CompressedImage."""
    if compressed:
        data = bytes(msg.data)
        if not data:
            raise ValueError("empty CompressedImage (the camera had no frame)")
        return data
    return image_msg_to_rgb(msg)


def run_node(controller: DriveController, topics: Topics, node_name: str = "mobile_vla_bridge", *,
             allow_network_discovery: bool = False, log: Any = print) -> None:
    """Spin the bridge node until SIGINT/SIGTERM; publishes a zero Twist on the way out."""
    from robovlms_mobile.ros.env import prepare_ros_environment

    prepare_ros_environment(allow_network_discovery)  # before rclpy.init, whatever the caller did
    rclpy = require_rclpy()
    from geometry_msgs.msg import Twist
    from rclpy.duration import Duration
    from rclpy.node import Node
    from rclpy.qos import qos_profile_sensor_data
    from rclpy.signals import SignalHandlerOptions
    from sensor_msgs.msg import CompressedImage, Image
    from std_msgs.msg import Bool, String

    service_type = compressed_service = None
    if topics.image_service:
        from robovlms_mobile.ros.interfaces import image_field, import_service_type

        service_type = import_service_type(topics.image_service_type)
        compressed_service = image_field(service_type, topics.image_service_field) == "sensor_msgs/CompressedImage"

    class BridgeNode(Node):
        def __init__(self) -> None:
            super().__init__(node_name)
            self.publisher = self.create_publisher(Twist, topics.cmd_vel, 10)
            self.create_subscription(Bool, topics.estop, lambda m: controller.on_estop(bool(m.data)), 10)
            self.create_subscription(String, topics.instruction, self.on_instruction, 10)
            self.create_timer(1.0 / topics.publish_hz, self.publish)
            self.published = 0  # /cmd_vel messages sent: the DDS publication sequence number of the last one
            self.pending: Any = None
            self.pending_sent = 0.0
            self.service_timeouts = 0
            if service_type is not None:
                self.client = self.create_client(service_type, topics.image_service)
                self.create_timer(1.0 / topics.tick_hz, self.poll_service)
            else:  # best effort matches both reliable and best-effort camera publishers
                self.create_subscription(CompressedImage if topics.compressed else Image, topics.image, self.on_image,
                                         qos_profile_sensor_data)

        def on_image(self, msg: Any) -> None:
            try:
                controller.on_frame(frame_from_msg(msg, topics.compressed))
            except ValueError as exc:
                self.get_logger().warning(f"frame dropped: {exc}", throttle_duration_sec=5.0)

        def on_instruction(self, msg: Any) -> None:
            try:
                controller.set_instruction(str(msg.data))
            except ValueError as exc:
                self.get_logger().warning(f"instruction ignored: {exc}")

        def poll_service(self) -> None:
            """One request in flight at a time; the frame is stamped with the time the request was sent."""
            now = controller.clock()
            if self.pending is not None:
                if not self.pending.done() and now - self.pending_sent < topics.image_service_timeout_s:
                    return
                if not self.pending.done():
                    self.client.remove_pending_request(self.pending)
                    self.service_timeouts += 1
                self.pending = None
            if not self.client.service_is_ready():
                return
            self.pending_sent = now
            self.pending = self.client.call_async(service_type.Request())
            self.pending.add_done_callback(lambda future, sent=now: self.on_service_frame(future, sent))

        def on_service_frame(self, future: Any, sent: float) -> None:
            try:
                response = future.result()
                if response is None:
                    return
                frame = frame_from_msg(getattr(response, topics.image_service_field), compressed_service)
            except Exception as exc:  # noqa: BLE001 - a bad frame is dropped; the watchdog covers the gap
                self.get_logger().warning(f"service frame dropped: {exc}", throttle_duration_sec=5.0)
                return
            controller.on_frame(frame, stamp=sent)

        def publish(self) -> None:
            command = controller.command()
            if command is not None:
                self.publisher.publish(fill_twist(Twist(), command))
                self.published += 1
                controller.on_published(command, self.published)

    # rclpy's own handlers would shut the context down before the closing zero could be sent
    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    stopping = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stopping.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    node = BridgeNode()
    worker_stop = threading.Event()
    worker = threading.Thread(target=controller.run, args=(worker_stop, topics.tick_hz), name="policy-ticks", daemon=True)
    worker.start()
    source = f"service {topics.image_service} ({topics.image_service_type})" if service_type else f"topic {topics.image}"
    log(f"ros-bridge: frames from {source}, /cmd_vel on {topics.cmd_vel}, e-stop on {topics.estop}", flush=True)
    try:
        while not stopping.is_set() and rclpy.ok():
            rclpy.spin_once(node, timeout_sec=0.05)
    finally:
        worker_stop.set()
        controller.on_estop(True)
        node.publisher.publish(fill_twist(Twist(), Command(0.0, 0.0, "estop")))
        node.publisher.wait_for_all_acked(Duration(seconds=1.0))
        log(f"ros-bridge: stopped, zero published ({controller.stats()})", flush=True)
        # the stop is out: a middleware teardown that hangs must not keep the process alive
        guard = threading.Timer(TEARDOWN_S, _exit_after_teardown_timeout, args=(log,))
        guard.daemon = True
        guard.start()
        node.destroy_node()
        if rclpy.ok():
            rclpy.shutdown()
        worker.join(timeout=2.0)
        guard.cancel()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _exit_after_teardown_timeout(log: Any) -> None:
    log(f"ros-bridge: node teardown took over {TEARDOWN_S:.0f} s after the zero was published; exiting", flush=True)
    os._exit(0)
