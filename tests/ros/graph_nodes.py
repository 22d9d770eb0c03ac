"""The other nodes of the test graph, each run as its own process: `python graph_nodes.py ROLE ...`.

- camera: sensor_msgs/Image bgr8 640x480 at 10 Hz on /camera/image_raw (the robot's USB
  camera), a moving bright box on a gradient;
- image_service NAME TYPE: serves frames through a service of that type (the robot's CSI camera),
  answering with a JPEG CompressedImage or a bgr8 Image, whichever the response field holds;
- operator LOG: records every /cmd_vel Twist as a line `seq monotonic_time linear_x linear_y` (seq: the
  publisher's sequence number of the message, from its MessageInfo) and publishes std_msgs/Bool on
  /e_stop for each `estop true|false` line read from stdin;
- slow_proxy PORT TARGET SECONDS: an HTTP server on 127.0.0.1:PORT that forwards every request
  to TARGET (the policy server) and answers SECONDS later than the server did (injected latency).

Each ROS role sets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST (prepare_ros_environment) before rclpy.init.
"""

from __future__ import annotations

import io
import signal
import sys
import threading
import time

import numpy as np

from robovlms_mobile.ros.env import prepare_ros_environment

W, H = 640, 480


def frame_bgr(i: int) -> np.ndarray:
    """Frame i: (H, W, 3) uint8 BGR."""
    img = np.zeros((H, W, 3), np.uint8)
    img[..., 1] = np.linspace(0, 200, W, dtype=np.uint8)[None, :]
    x = (40 + 12 * i) % (W - 120)
    img[180:300, x:x + 120] = (40, 40, 230)  # red in BGR
    return img


def image_msg(i: int):
    from sensor_msgs.msg import Image

    msg = Image(height=H, width=W, encoding="bgr8", is_bigendian=0, step=W * 3)
    msg.data = frame_bgr(i).tobytes()
    return msg


def spin_until_signal(rclpy, node) -> None:
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    while not stop.is_set():
        rclpy.spin_once(node, timeout_sec=0.05)


def camera(rclpy) -> None:
    node = rclpy.create_node("test_usb_camera")
    pub = node.create_publisher(__import__("sensor_msgs.msg", fromlist=["Image"]).Image, "/camera/image_raw", 10)
    count = [0]

    def tick():
        msg = image_msg(count[0])
        msg.header.stamp = node.get_clock().now().to_msg()
        pub.publish(msg)
        count[0] += 1

    node.create_timer(0.1, tick)
    print("camera ready", flush=True)
    spin_until_signal(rclpy, node)


def image_service(rclpy, name: str, type_name: str) -> None:
    from robovlms_mobile.ros.interfaces import image_field, import_service_type

    srv = import_service_type(type_name)
    compressed = image_field(srv, "image") == "sensor_msgs/CompressedImage"
    node = rclpy.create_node("test_csi_camera")
    served = [0]

    def answer(request, response):
        if compressed:
            from PIL import Image

            buf = io.BytesIO()
            Image.fromarray(frame_bgr(served[0])[..., ::-1]).save(buf, format="JPEG", quality=90)
            response.image.format = "jpeg"
            response.image.data = buf.getvalue()
        else:
            response.image = image_msg(served[0])
        served[0] += 1
        return response

    node.create_service(srv, name, answer)
    print("image service ready", flush=True)
    spin_until_signal(rclpy, node)


def operator(rclpy, log_path: str) -> None:
    from geometry_msgs.msg import Twist
    from std_msgs.msg import Bool

    node = rclpy.create_node("test_operator")
    out = open(log_path, "a", buffering=1)

    def record(m, info) -> None:
        out.write(f"{info['publication_sequence_number']} {time.monotonic()} {m.linear.x!r} {m.linear.y!r}\n")

    node.create_subscription(Twist, "/cmd_vel", record, 100)
    estop = node.create_publisher(Bool, "/e_stop", 10)

    def read_commands():
        for line in sys.stdin:
            words = line.split()
            if words[:1] == ["estop"]:
                estop.publish(Bool(data=words[1] == "true"))
                print(f"published estop {words[1]}", flush=True)

    threading.Thread(target=read_commands, daemon=True).start()
    print("operator ready", flush=True)
    spin_until_signal(rclpy, node)


def slow_proxy(port: str, target: str, seconds: str) -> None:
    """Forward to `target`, answering `seconds` late; requests run in threads, so answers overlap as on a real link."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import httpx

    delay, upstream = float(seconds), httpx.Client(base_url=target, timeout=60)

    class Handler(BaseHTTPRequestHandler):
        def forward(self) -> None:
            body = self.rfile.read(int(self.headers.get("content-length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
            time.sleep(delay)
            try:
                reply = upstream.request(self.command, self.path, content=body, headers=headers)
            except httpx.TransportError:
                self.send_error(502, "policy server unreachable")
                return
            self.send_response(reply.status_code)
            self.send_header("content-type", reply.headers.get("content-type", "application/json"))
            self.send_header("content-length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)

        do_GET = do_POST = forward

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    print("slow proxy ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if sys.argv[1] == "slow_proxy":
        slow_proxy(*sys.argv[2:])
        sys.exit(0)
    prepare_ros_environment()  # before rclpy.init: DDS stays on loopback
    import rclpy
    from rclpy.signals import SignalHandlerOptions

    rclpy.init(signal_handler_options=SignalHandlerOptions.NO)
    role, args = sys.argv[1], sys.argv[2:]
    {"camera": camera, "image_service": image_service, "operator": operator}[role](rclpy, *args)
    rclpy.shutdown()
