"""JSON request bodies checked before any schema sees them.

Every route of the service is an :class:`ApiRoute`. When a route takes a JSON body, the body
is decoded here first: one that is not UTF-8 JSON is refused with 400 ``invalid_json`` (the
same answer whether the bytes are not UTF-8 or not JSON), and one with a string holding a
lone surrogate anywhere (a key or a value, however deep) with 422 ``validation_error`` naming
where. Schemas then only ever see text that can be stored and sent back.
"""

from __future__ import annotations

import email.message
import functools
import json
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import params
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from bigupload.errors import AppError, ErrorBody
from bigupload.request_head import HEAD_ANSWERS
from bigupload.text import find_surrogate, may_hold_surrogates

SURROGATE_MESSAGE = "must be valid Unicode text (it holds a lone surrogate code point)"


class InvalidJson(AppError):
    status = 400
    code = "invalid_json"


@functools.lru_cache(maxsize=256)
def _is_json(content_type: str | None) -> bool:
    """Whether a body of this type is read as JSON (cached: clients send few types, and the
    parse makes an ``email.message.Message``, once per request otherwise)."""
    if not content_type:
        return True  # FastAPI reads a body without a type as JSON
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def decode_json(body: bytes) -> Any:
    """A request's JSON document; :class:`InvalidJson` if it is not UTF-8 JSON."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidJson(
            f"the body is not UTF-8 (invalid byte at offset {exc.start})",
            details={"offset": exc.start},
        ) from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidJson(
            f"the body is not JSON: {exc.msg} at offset {exc.pos}", details={"offset": exc.pos}
        ) from None
    if may_hold_surrogates(text):
        refuse_surrogates(document, ("body",))
    return document


def refuse_surrogates(value: Any, location: tuple[str, ...]) -> None:
    """Raise a validation error naming the first string of ``value`` with a lone surrogate."""
    found = find_surrogate(value)
    if found is not None:
        raise RequestValidationError(
            [
                {
                    "type": "string_unicode",
                    "loc": (*location, *found),
                    "msg": SURROGATE_MESSAGE,
                    "input": None,
                }
            ]
        )


class ApiRoute(APIRoute):
    """A route whose JSON body, if it takes one, is decoded and checked by :func:`decode_json`.

    Its OpenAPI answers include what the app may answer before the route runs: 400
    ``invalid_json`` when it takes JSON, and on every route the request-head refusals of
    :mod:`bigupload.request_head`.
    """

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, endpoint, **kwargs)
        # In the shape of the route's other errors (``/s3`` ones carry a top-level message).
        shape = self.responses.get(422, {}).get("model", ErrorBody)
        answers = dict(HEAD_ANSWERS)
        if self._takes_json():
            answers[400] = "`invalid_json`: the body is not JSON, or not UTF-8."
        for status, description in answers.items():
            self.responses.setdefault(status, {"model": shape, "description": description})

    def _takes_json(self) -> bool:
        return self.body_field is not None and not isinstance(
            self.body_field.field_info, params.Form
        )

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        if not self._takes_json():
            return handler

        async def checked(request: Request) -> Response:
            body = await request.body()
            if body and _is_json(request.headers.get("content-type")):
                # Starlette's own cache of the decoded body: FastAPI reads it from there.
                request._json = decode_json(body)
            return await handler(request)

        return checked
