"""Every error as one JSON shape (``message``, ``error``, ``error_type``, ``field``), never an HTML page.

A bad request is a 4xx that says what is wrong with it; a 500 (the model failed) also says
``Connection: close``, so that a kept-alive client does not send its next request into a closed connection.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException


class ApiError(Exception):
    """An error answered with ``status`` (4xx, or 503/504 for load), naming the request ``field`` at fault."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        field: str | None = None,
        error_type: str = "validation",
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.field = field
        self.error_type = error_type
        self.headers = headers


def error_body(message: str, error_type: str, field: str | None = None) -> dict[str, Any]:
    return {"message": message, "error": message, "error_type": error_type, "field": field}


def error_response(
    status: int, message: str, error_type: str, field: str | None = None, headers: dict[str, str] | None = None
) -> JSONResponse:
    """The JSON error answer; a 500, or a 408 (the body did not arrive), closes the connection."""
    if status in (408, 500):
        headers = {**(headers or {}), "Connection": "close"}
    return JSONResponse(error_body(message, error_type, field), status_code=status, headers=headers)


def _unparsable(cause: BaseException | None) -> str:
    """Why FastAPI could not parse a JSON body (it says only "There was an error parsing the body")."""
    if isinstance(cause, RecursionError):
        return "the request body is valid JSON but nested too deeply to read; send documents as a flat list"
    if isinstance(cause, UnicodeDecodeError):
        return f"the request body is not valid JSON in UTF-8: byte {cause.start} is not UTF-8"
    if isinstance(cause, ValueError) and "digits" in str(cause):  # Python's limit on int() of a long string
        return f"the request body has a number too long to read (more than {sys.get_int_max_str_digits()} digits)"
    return "the request body is not valid JSON in UTF-8"


_WRONG_TYPE = frozenset({"string_type", "model_type", "model_attributes_type", "dict_type"})
"""Pydantic's errors of a union member that the input is not (a string where an object is)."""


def _json_content_type(value: str | None) -> bool:
    kind = (value or "").split(";")[0].strip().lower()
    return kind == "application/json" or (kind.startswith("application/") and kind.endswith("+json"))


def _field(location: Sequence[Any]) -> str | None:
    """``("body", "documents", 3, "text")`` -> ``"documents[3].text"``; union branch names are dropped."""
    parts = list(location[1:]) if location and location[0] == "body" else list(location)
    name = ""
    for part in parts:
        if isinstance(part, int):
            name += f"[{part}]"
        elif isinstance(part, str) and ("[" in part or part in {"str", "TextDocument"} or part.startswith("function-")):
            continue  # pydantic's name of a union member, not a field of the request
        else:
            name += f".{part}" if name else str(part)
    return name or None


def install_handlers(app: FastAPI) -> None:
    """Map FastAPI's and Starlette's errors, and :class:`ApiError`, to the JSON error shape."""

    @app.exception_handler(ApiError)
    async def api_error(request: Request, error: ApiError) -> JSONResponse:
        return error_response(error.status, error.message, error.error_type, error.field, error.headers)

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
        problems = list(error.errors())
        if not problems:
            return error_response(422, "the request body is not valid", "validation")
        # A union (a string or a {"text": ...} object) fails once per member: the deepest is the telling one, and
        # of equally deep ones, a check of ours (a value error) tells more than "should be a valid string".
        first = max(problems, key=lambda problem: (len(problem.get("loc", ())), problem.get("type") not in _WRONG_TYPE))
        kind = str(first.get("type", ""))
        declared = request.headers.get("content-type")
        if isinstance(error.body, bytes) and error.body and not _json_content_type(declared):
            given = f"'Content-Type: {declared}'" if declared else "no Content-Type"
            return error_response(
                415,
                f"the request body must be JSON sent with 'Content-Type: application/json' (got {given}); with curl, "
                "add -H 'Content-Type: application/json'",
                "content_type",
                "Content-Type",
            )
        if kind == "json_invalid":
            reason = (first.get("ctx") or {}).get("error", "")
            return error_response(400, f"the request body is not valid JSON: {reason}".rstrip(": "), "json")
        field = _field(first.get("loc", ()))
        message = str(first.get("msg", "invalid value")).removeprefix("Value error, ")
        if kind == "string_unicode":  # pydantic, on a dictionary key it cannot read
            message = "a field name or value is not valid Unicode text (it has a lone surrogate)"
        if kind == "missing" and field:
            message = "a required field is missing"
        text = f"{field}: {message}" if field else f"the request body is not valid: {message}"
        if len(problems) > 1:
            text += f" (and {len(problems) - 1} more problem{'s' if len(problems) > 2 else ''})"
        return error_response(422, text, "validation", field)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, error: Exception) -> JSONResponse:
        # Not a bad request: the model failed. Still a JSON answer, and the traceback is in the server's log.
        return error_response(500, f"scoring failed: {type(error).__name__}: {error}", "backend")

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, error: StarletteHTTPException) -> JSONResponse:
        message = error.detail if isinstance(error.detail, str) else str(error.detail)
        if error.status_code == 400 and "pars" in message.lower():  # FastAPI: a body it could not decode
            message = _unparsable(error.__cause__)
        kind = {401: "authentication", 404: "not_found", 405: "method", 413: "payload_too_large"}.get(
            error.status_code, "http"
        )
        headers = dict(error.headers) if error.headers else None
        return error_response(error.status_code, message, kind, headers=headers)
