"""ROS 2 interface types named at run time: `package/srv/Type` -> the generated service class.

rosidl's own helper (rosidl_runtime_py.utilities.get_service) is not published as a wheel, so
this does what it does — import the generated `package.srv` module and take the class — with
checks and one-line errors. Used for the robot's CSI camera, which serves frames only through
a service (camera_interfaces/srv/GetImage: empty request, the frame in the response).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

SERVICE_NAME = re.compile(r"^(?P<package>[a-z][a-z0-9_]*)/(?:srv/)?(?P<type>[A-Z][A-Za-z0-9]*)$")
IMAGE_TYPES = ("sensor_msgs/Image", "sensor_msgs/CompressedImage")


def import_service_type(name: str, *, flag: str = "--image-service-type") -> Any:
    """The service class for 'package/srv/Type' (or 'package/Type'); ValueError naming the flag otherwise."""
    match = SERVICE_NAME.match(name or "")
    if match is None:
        raise ValueError(f"{flag} {name!r}: expected 'package/srv/Type', e.g. camera_interfaces/srv/GetImage")
    package, type_name = match["package"], match["type"]
    try:
        module = importlib.import_module(f"{package}.srv")
    except ImportError as exc:
        raise ValueError(f"{flag} {name!r}: the interface package {package!r} is not importable ({exc}); build it "
                         f"and put its install folder on PYTHONPATH and LD_LIBRARY_PATH") from None
    srv = getattr(module, type_name, None)
    if srv is None or not (hasattr(srv, "Request") and hasattr(srv, "Response")):
        known = sorted(n for n in dir(module) if hasattr(getattr(module, n), "Request"))
        raise ValueError(f"{flag} {name!r}: {package}.srv has no service {type_name!r} (it has: {', '.join(known) or 'none'})")
    from rclpy.type_support import check_is_valid_srv_type

    check_is_valid_srv_type(srv)
    return srv


def image_field(srv: Any, field: str, *, flag: str = "--image-service-field") -> str:
    """The type of the response field holding the frame (one of IMAGE_TYPES); ValueError otherwise."""
    fields = srv.Response.get_fields_and_field_types()
    kind = fields.get(field)
    if kind not in IMAGE_TYPES:
        found = ", ".join(f"{k}: {v}" for k, v in fields.items()) or "no fields"
        raise ValueError(f"{flag} {field!r}: expected a response field of type {' or '.join(IMAGE_TYPES)} "
                         f"(the response has {found})")
    return kind
