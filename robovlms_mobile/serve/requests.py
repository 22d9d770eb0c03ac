"""Parsing an /act request (multipart upload or JSON with a base64 image) into one checked record."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request
from starlette.datastructures import UploadFile

from robovlms_mobile.serve.errors import ApiError
from robovlms_mobile.serve.parsing import (check_bool, check_committed, check_episode_id, check_fields, check_instruction,
                                            decode_base64, read_json)

ACT_FIELDS = {"image", "instruction", "episode_id", "start", "committed"}


@dataclass
class ActRequest:
    """A parsed, validated /act request."""

    image: bytes
    instruction: str
    episode_id: str | None
    start: bool
    committed: list[list[float]] | None = None  # the client's actions that run while this query is out (m/s)


async def parse_act(request: Request) -> ActRequest:
    """The /act body as an ActRequest; ApiError 4xx naming the field otherwise."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype == "application/json":
        fields = await read_json(request)
        check_fields(fields, ACT_FIELDS, "/act")
        image = decode_base64(fields.get("image"))
    elif ctype == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=len(ACT_FIELDS), max_part_size=64 * 1024)
        fields = {k: v for k, v in form.multi_items()}
        upload = fields.get("image")
        if upload is not None and not isinstance(upload, UploadFile):
            raise ApiError(422, "invalid_field", "'image' must be a file part (multipart upload)")
        if any(isinstance(fields.get(k), UploadFile) for k in ("instruction", "episode_id", "committed")):
            raise ApiError(422, "invalid_field", "'instruction', 'episode_id' and 'committed' must be text fields")
        check_fields(fields, ACT_FIELDS, "/act")
        if upload is None:
            raise ApiError(422, "missing_field", "'image' is required (JPEG or PNG)")
        image = await upload.read()
    else:
        raise ApiError(415, "unsupported_media_type", f"content type {ctype or '(none)'!r}: send multipart/form-data "
                                                      f"(image file) or application/json (base64 image)")
    return ActRequest(image=image, instruction=check_instruction(fields.get("instruction")),
                      episode_id=check_episode_id(fields.get("episode_id")), start=check_bool(fields.get("start"), "start"),
                      committed=check_committed(fields.get("committed")))
