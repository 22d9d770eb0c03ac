"""Request-body parsing shared by the routes: hostile JSON, base64 images and field checks, each a 4xx naming the field.

JSON bodies: integers longer than MAX_INT_DIGITS digits are kept as a `TooLongNumber` marker (the
field check then names the field) instead of Python's digit-limit ValueError; nesting too deep
for the parser is refused naming the top-level field it sits under.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from typing import Any

from starlette.requests import Request

from robovlms_mobile.serve.episodes import EPISODE_ID
from robovlms_mobile.errors import DuplicateKeyError, clip, unique_keys
from robovlms_mobile.serve.errors import ApiError
from robovlms_mobile.task import check_instruction as check_instruction_text

MAX_INT_DIGITS = 64
MAX_DEPTH = 32  # reported nesting limit when the parser runs out of recursion
TRUE, FALSE = {"true", "1", "yes"}, {"false", "0", "no", ""}
_TOKENS = re.compile(r'"(?:[^"\\]|\\.)*"|[\[\]{}]')


class TooLongNumber:
    """An integer literal with more than MAX_INT_DIGITS digits (never converted)."""

    def __init__(self, digits: int):
        self.digits = digits

    def __repr__(self) -> str:
        return f"<integer of {self.digits} digits>"


def _parse_int(text: str) -> int | TooLongNumber:
    return int(text) if len(text) <= MAX_INT_DIGITS else TooLongNumber(len(text.lstrip("-")))


def deep_field(text: str, limit: int = MAX_DEPTH) -> str | None:
    """The top-level key under which `text` nests deeper than `limit` (None if not found)."""
    depth, key = 0, None
    for match in _TOKENS.finditer(text):
        token = match.group()
        if token[0] == '"':
            if depth == 1:
                key = token[1:-1][:60]
        elif token in "[{":
            depth += 1
            if depth > limit:
                return key
        else:
            depth -= 1
    return None


def parse_json(raw: bytes) -> Any:
    """JSON bytes -> value; ApiError 400 naming the problem (and the field, for too-deep nesting)."""
    try:
        return json.loads(raw, parse_int=_parse_int, object_pairs_hook=unique_keys)
    except DuplicateKeyError as exc:
        raise ApiError(422, "invalid_field", f"field {clip(exc.args[0])} appears twice in one object; send each field once") from None
    except RecursionError:
        field = deep_field(raw.decode("utf-8", errors="replace"))
        where = f"field {field!r}" if field else "the JSON body"
        raise ApiError(400, "malformed_body", f"{where} nests too deeply (the limit is about {MAX_DEPTH} levels)") from None
    except (ValueError, UnicodeDecodeError) as exc:  # JSONDecodeError is a ValueError
        raise ApiError(400, "malformed_body", f"the body is not valid JSON ({str(exc).splitlines()[0][:200]})") from None


async def read_json(request: Request, optional: bool = False, raw: bytes | None = None) -> dict[str, Any]:
    """The body as a JSON object ({} when `optional` and empty)."""
    raw = await request.body() if raw is None else raw
    if not raw.strip() and optional:
        return {}
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype != "application/json":
        raise ApiError(415, "unsupported_media_type", f"content type {ctype or '(none)'!r}: send application/json")
    body = parse_json(raw)
    if not isinstance(body, dict):
        raise ApiError(422, "invalid_field", f"the JSON body must be an object, got {type(body).__name__}")
    return body


def check_fields(fields: Any, allowed: set[str], route: str) -> None:
    """422 naming any field `route` does not take."""
    unknown = sorted(clip(str(k)) for k in set(fields) - allowed)
    if unknown:
        more = f" and {len(unknown) - 10} more" if len(unknown) > 10 else ""
        raise ApiError(422, "unknown_field", f"unknown field(s) {unknown[:10]}{more}; {route} takes {sorted(allowed)}")


def decode_base64(value: Any) -> bytes:
    """Base64 (optionally a `data:image/...;base64,` URL) -> bytes."""
    if value is None:
        raise ApiError(422, "missing_field", "'image' is required (JPEG or PNG)")
    if not isinstance(value, str):
        raise ApiError(422, "invalid_field", f"'image' must be a base64 string in a JSON body, got {type(value).__name__}")
    if value.startswith("data:"):
        value = value.partition(",")[2]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ApiError(422, "invalid_field", f"'image' is not valid base64 ({exc})") from None


def check_instruction(value: Any) -> str:
    """A non-empty instruction within the one limit (task.check_instruction), else 422 naming the field."""
    if value is None:
        raise ApiError(422, "missing_field", "'instruction' is required (the navigation command, e.g. 'go around the box on the left')")
    try:
        return check_instruction_text(value, where="'instruction'")
    except ValueError as exc:
        raise ApiError(422, "invalid_field", str(exc)) from None


def check_episode_id(value: Any) -> str | None:
    """None, or an id of 1-64 characters from [A-Za-z0-9._:-]."""
    if value is None:
        return None
    if not isinstance(value, str) or not EPISODE_ID.match(value):
        raise ApiError(422, "invalid_field", "'episode_id' must be 1-64 characters from A-Z a-z 0-9 . _ : -")
    return value


def check_bool(value: Any, name: str) -> bool:
    """A JSON boolean, or a form value true/false/1/0/yes/no."""
    if value is None or isinstance(value, bool):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise ApiError(422, "invalid_field", f"'{name}' must be true or false")


def check_choice(value: Any, name: str, choices: set[str]) -> str | None:
    """None, or one of `choices` (case-insensitive), else 422 naming the field."""
    if value is None:
        return None
    if not isinstance(value, str) or value.strip().lower() not in choices:
        shown = clip(value) if isinstance(value, str) else type(value).__name__
        raise ApiError(422, "invalid_field", f"'{name}' must be one of {sorted(choices)}, got {shown}")
    return value.strip().lower()


MAX_COMMITTED = 64  # rows of `committed` an /act request may carry (a chunk is 10)


def check_committed(value: Any, name: str = "committed") -> list[list[float]] | None:
    """None, or rows [linear_x, linear_y] of finite m/s (a JSON list, or its text in a form field), else 422."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) > 64 * MAX_COMMITTED:
            raise ApiError(422, "invalid_field", f"'{name}' is longer than {64 * MAX_COMMITTED} characters")
        try:
            value = json.loads(value)
        except ValueError:
            raise ApiError(422, "invalid_field", f"'{name}' must be a JSON list of [linear_x, linear_y] rows") from None
    ok = isinstance(value, list) and len(value) <= MAX_COMMITTED and all(
        isinstance(row, list) and len(row) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in row) for row in value)
    if not ok:
        raise ApiError(422, "invalid_field", f"'{name}' must be a list of at most {MAX_COMMITTED} [linear_x, linear_y] rows "
                                             f"of finite numbers (m/s)")
    return [[float(a), float(b)] for a, b in value]
