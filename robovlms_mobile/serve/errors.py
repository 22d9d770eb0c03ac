"""API errors: every refusal is `{"error": <code>, "detail": <reason>}` with a 4xx status."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

STARLETTE_CODES = {400: "malformed_body", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}


class ApiError(Exception):
    """A request the server refuses, with its HTTP status, a stable code and a human reason."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers

    def response(self) -> JSONResponse:
        """The JSON response for this error."""
        return JSONResponse({"error": self.code, "detail": self.detail}, status_code=self.status, headers=self.headers)


def install_error_handlers(app: FastAPI) -> None:
    """Map ApiError, Starlette's HTTP errors (multipart parsing, 404, 405) and validation errors to the JSON shape."""

    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = STARLETTE_CODES.get(exc.status_code, "http_error")
        return JSONResponse({"error": code, "detail": str(exc.detail)}, status_code=exc.status_code,
                            headers=getattr(exc, "headers", None))

    async def validation_error(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse({"error": "invalid_field", "detail": str(exc.errors())}, status_code=422)

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, validation_error)
