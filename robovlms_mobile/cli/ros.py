"""`robovlms-mobile ros-bridge`: the ROS 2 node, with actions from the policy server or in-process."""

from __future__ import annotations

import argparse
import dataclasses

from robovlms_mobile.cli.errors import UsageError
from robovlms_mobile.cli.options import (API_KEY_ENV, add_client_options, add_execution_options, add_model_options,
                                         add_strategy_options, command, execution_spec, resolve_device)
from robovlms_mobile.task import MAX_SPEED



def add_parser(subparsers: argparse._SubParsersAction) -> None:
    """Register `ros-bridge`."""
    p = command(
        subparsers, "ros-bridge", run_bridge, help="ROS 2 node: camera -> policy -> safety layer -> /cmd_vel (needs the `ros` extra)",
        description="Subscribe to a camera, get actions from a policy server (--server) or a checkpoint loaded in "
                    "this process (--checkpoint), and publish geometry_msgs/Twist behind the safety layer: speed "
                    "clamp, watchdog (zero when no fresh action within --deadline), latched e-stop topic, "
                    "acceleration and publication rate limits. DDS discovery stays on this machine "
                    "(ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST is set before the node starts).")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--server", help="policy server URL, e.g. http://127.0.0.1:8000")
    src.add_argument("--checkpoint", help="plugin checkpoint to run in this process")
    add_model_options(p)  # with --checkpoint
    add_client_options(p)  # with --server
    p.add_argument("--instruction", required=True, help="the navigation command; /instruction (std_msgs/String) changes it")
    add_strategy_options(p)  # with --checkpoint (a server has its own)
    add_execution_options(p, ensemble_decay=False)  # --ensemble-decay above serves --merge ensemble too
    p.add_argument("--image-topic", default="/camera/image_raw")
    p.add_argument("--compressed", action="store_true", help="the image topic is sensor_msgs/CompressedImage")
    p.add_argument("--image-service", help="poll this service for frames instead of subscribing (the robot's CSI camera: "
                                           "get_image_service); one request in flight, at --tick-hz")
    p.add_argument("--image-service-type", default="camera_interfaces/srv/GetImage",
                   help="its type, imported at run time (default: %(default)s)")
    p.add_argument("--image-service-field", default="image",
                   help="response field holding a sensor_msgs/Image or CompressedImage (default: %(default)s)")
    p.add_argument("--image-service-timeout", type=float, default=1.0,
                   help="seconds before an unanswered request is dropped and sent again (default: %(default)s)")
    p.add_argument("--cmd-vel-topic", default="/cmd_vel")
    p.add_argument("--estop-topic", default="/e_stop", help="std_msgs/Bool: true engages (latched), false releases")
    p.add_argument("--instruction-topic", default="/instruction")
    p.add_argument("--max-linear-x", type=float, default=MAX_SPEED, help="m/s (default: %(default)s)")
    p.add_argument("--max-linear-y", type=float, default=MAX_SPEED, help="m/s (default: %(default)s)")
    p.add_argument("--deadline", type=float, default=0.5, help="watchdog: seconds without a fresh action before zero (default: %(default)s)")
    p.add_argument("--max-accel", type=float, default=2.0, help="m/s^2 on the velocity vector; 0 = off (default: %(default)s)")
    p.add_argument("--stop-speed", type=float, default=0.0,
                   help="m/s: an action with both axes below this is a stop, published as zero at once (the "
                        "simulator's rule is 0.2875 = 0.25 x max speed) (default: %(default)s: only an exact zero)")
    p.add_argument("--max-rate-hz", type=float, default=20.0, help="most /cmd_vel messages per second (default: %(default)s)")
    p.add_argument("--publish-hz", type=float, default=20.0, help="/cmd_vel timer (default: %(default)s)")
    p.add_argument("--tick-hz", type=float, default=10.0,
                   help="policy ticks per second; each tick executes one chunk step (the recorded data has 0.4 s "
                        "per step, i.e. 2.5 Hz) (default: %(default)s)")
    p.add_argument("--max-frame-age", type=float, default=0.5, help="seconds; older frames are not sent (default: %(default)s)")
    p.add_argument("--action-log", help="append one JSON line per policy answer (frame stamp, velocity, accepted by "
                                        "the safety layer), per e-stop message and per change of the published state "
                                        "(with the number of the /cmd_vel message that first carried it) to this file")
    p.add_argument("--allow-network-discovery", action="store_true",
                   help="accept a ROS_AUTOMATIC_DISCOVERY_RANGE other than LOCALHOST, or ROS_STATIC_PEERS "
                        "(default: refuse them; DDS stays on this machine)")


def run_bridge(args: argparse.Namespace) -> int:
    """Check ROS 2 is there, build the source and the safety layer, spin the node."""
    from robovlms_mobile.ros.bridge import RosUnavailableError, Topics, require_rclpy, run_node
    from robovlms_mobile.ros.controller import DriveController
    from robovlms_mobile.ros.env import prepare_ros_environment
    from robovlms_mobile.ros.safety import SafetyConfig, SafetyLayer

    try:
        prepare_ros_environment(args.allow_network_discovery)  # before anything can import rclpy
        require_rclpy()  # before loading any model
        for flag in ("publish_hz", "tick_hz", "max_frame_age", "image_service_timeout"):
            value = getattr(args, flag)
            if not (value > 0 and value != float("inf")):
                raise ValueError(f"--{flag.replace('_', '-')} must be a finite number > 0, got {value}")
        if args.max_accel < 0 or args.max_accel != args.max_accel:
            raise ValueError(f"--max-accel must be >= 0 (0 = off), got {args.max_accel}")
        try:
            config = SafetyConfig(args.max_linear_x, args.max_linear_y, args.deadline, args.max_accel or None,
                                  args.max_rate_hz, args.stop_speed)
        except ValueError as exc:  # name the flag, not the field
            names = {"max_linear_x": "--max-linear-x", "max_linear_y": "--max-linear-y", "deadline_s": "--deadline",
                     "max_accel": "--max-accel", "max_rate_hz": "--max-rate-hz", "stop_speed": "--stop-speed"}
            message = str(exc)
            for field, flag in names.items():
                message = message.replace(f"safety {field}", flag)
            raise ValueError(message) from None
        topics = Topics(args.image_topic, args.compressed, args.cmd_vel_topic, args.estop_topic, args.instruction_topic,
                        args.publish_hz, args.tick_hz, args.image_service, args.image_service_type,
                        args.image_service_field, args.image_service_timeout)
        if topics.image_service:  # the type must import and carry an image before any model is loaded
            from robovlms_mobile.ros.interfaces import image_field, import_service_type

            image_field(import_service_type(topics.image_service_type), topics.image_service_field)
        if args.execution == "async" and args.server and args.api != "native":
            raise ValueError("--execution async needs --api native (the original API answers no chunk)")
        source, chunk_size = _source(args)
        executor, step_s = None, 1.0 / args.tick_hz
        if args.execution == "async":
            executor = execution_spec(args).build(chunk_size)
            config = dataclasses.replace(config, max_horizon_s=2 * chunk_size * step_s)
        controller = DriveController(source, SafetyLayer(config), args.instruction, max_frame_age_s=args.max_frame_age,
                                     on_action=_action_logger(args.action_log) if args.action_log else None,
                                     executor=executor, step_s=step_s,
                                     committed_steps=getattr(source, "committed_steps", 0) if args.committed == "auto" else 0)
    except (RosUnavailableError, RuntimeError) as exc:  # no ROS here, or the policy server is not usable
        raise UsageError(str(exc)) from None
    run_node(controller, topics, allow_network_discovery=args.allow_network_discovery)
    return 0


def _action_logger(path: str):
    """A callback appending JSON lines to `path` (line-buffered, so a killed bridge leaves whole lines)."""
    import json
    import threading

    try:
        out = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115 - open for the life of the process
    except OSError as exc:
        raise ValueError(f"--action-log {path}: cannot open for writing ({exc.strerror})") from None
    lock = threading.Lock()  # the policy thread and the ROS thread both write

    def write(record: dict) -> None:
        with lock:
            out.write(json.dumps(record) + "\n")

    return write


def _source(args: argparse.Namespace):
    """The action source the flags name and its chunk length."""
    if args.server:
        from robovlms_mobile.runtime.client import PolicyClient, PolicyServerError, RemotePolicy

        client = PolicyClient(args.server, api_key=args.api_key, api=args.api)
        try:  # fail now, not at the first frame, if the server is not there or refuses the key
            health = client.health()
        except ConnectionError as exc:
            raise RuntimeError(f"policy server {args.server} is not reachable ({exc})") from None
        except PolicyServerError as exc:
            raise RuntimeError(f"policy server {args.server} refused /health ({exc})") from None
        if args.api == "original":
            if health.get("model_loaded") is False:
                raise RuntimeError(f"policy server {args.server} says its model is not loaded (/health model_loaded false)")
            return RemotePolicy(client, vlm_model="kosmos"), 1
        if "policy" not in health:
            raise RuntimeError(f"policy server {args.server} refused the API key (set ${API_KEY_ENV} or --api-key)")
        try:
            chunk_size = int(health["policy"]["chunk_size"])
        except (KeyError, TypeError, ValueError):
            raise RuntimeError(f"policy server {args.server}: /health names no policy chunk_size") from None
        return RemotePolicy(client), chunk_size
    from robovlms_mobile.runtime.chunking import StrategySpec
    from robovlms_mobile.runtime.in_process import InProcessPolicy
    from robovlms_mobile.runtime.policy import MobileVLAPolicy

    strategy = StrategySpec(args.strategy, reuse_steps=args.reuse_steps, ensemble_decay=args.ensemble_decay)
    device = resolve_device(args.device)
    runtime = MobileVLAPolicy.from_checkpoint(args.checkpoint, base_model_dir=args.base_model_dir, strategy=strategy,
                                              device=device, dtype=args.dtype)
    return InProcessPolicy.wrap(runtime), runtime.chunk_size
