"""The environment every ROS 2 node of this package starts in: DDS discovery on loopback only.

`prepare_ros_environment()` runs before `rclpy.init()` in every process that starts a node (the
bridge, the test nodes). It sets ROS_AUTOMATIC_DISCOVERY_RANGE=LOCALHOST when unset and refuses
any other range, or static peers, unless the caller explicitly allows network discovery (the
bridge's `--allow-network-discovery`). The PyPI wheels need nothing else from the shell: their
package `ros-wheels-bootstrapper` puts the wheels' library folders on LD_LIBRARY_PATH (it
re-executes the interpreter once at start-up), and the only middleware installed,
rmw_fastrtps_cpp, is the default.
"""

from __future__ import annotations

import os
from typing import MutableMapping

DISCOVERY_ENV = "ROS_AUTOMATIC_DISCOVERY_RANGE"
STATIC_PEERS_ENV = "ROS_STATIC_PEERS"
LOCALHOST = "LOCALHOST"
RMW_ENV, DEFAULT_RMW = "RMW_IMPLEMENTATION", "rmw_fastrtps_cpp"
ALLOW_FLAG = "--allow-network-discovery"


class DiscoveryRangeError(ValueError):
    """The environment would let DDS discovery leave this machine."""


def prepare_ros_environment(allow_network_discovery: bool = False,
                            environ: MutableMapping[str, str] | None = None) -> str:
    """Set/check the discovery range before rclpy.init; returns the range in force."""
    env = os.environ if environ is None else environ
    value = env.get(DISCOVERY_ENV, "").strip()
    if not value:
        env[DISCOVERY_ENV] = value = LOCALHOST
    if not allow_network_discovery:
        if value.upper() != LOCALHOST:
            raise DiscoveryRangeError(f"${DISCOVERY_ENV}={value!r}: expected LOCALHOST (DDS stays on this machine); "
                                      f"pass {ALLOW_FLAG} to use another range")
        if env.get(STATIC_PEERS_ENV, "").strip():
            raise DiscoveryRangeError(f"${STATIC_PEERS_ENV} is set ({env[STATIC_PEERS_ENV]!r}): expected it unset "
                                      f"(DDS stays on this machine); pass {ALLOW_FLAG} to use static peers")
        env[DISCOVERY_ENV] = LOCALHOST
    env.setdefault(RMW_ENV, DEFAULT_RMW)
    return env[DISCOVERY_ENV]
