"""The policy server's Python client lives in the runtime layer (`robovlms_mobile.runtime.client`); re-exported here."""

from robovlms_mobile.runtime.client import (  # noqa: F401
    JPEG_QUALITY,
    PolicyClient,
    PolicyServerError,
    PolicyServerUnreachable,
    RemotePolicy,
    encode_jpeg,
)
