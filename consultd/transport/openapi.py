"""HTTP routes declared once with their models; the OpenAPI document is built from them.

``Api.route`` registers a handler together with its request and response models. The
wrapper validates the JSON body with the request model and serialises the result with the
response model, and ``Api.openapi()`` turns the same declarations into OpenAPI 3.1, so
the document cannot drift from what the server accepts.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError
from pydantic.json_schema import models_json_schema

from consultd import __version__
from consultd.errors import BadRequest, PayloadTooLarge, ValidationFailed
from consultd.transport.schemas import ErrorBody

Handler = Callable[..., Awaitable[Any]]

#: Statuses any API call may answer with (all with an ``ErrorBody``).
COMMON_ERRORS = (400, 401, 403, 404, 413, 415, 422, 429)
_STATUS_TEXT = {
    400: "Malformed request",
    401: "Not signed in, or the token is unknown",
    403: "Not allowed",
    404: "Not found",
    409: "Conflict",
    410: "Gone (room ended, code expired, revoked or used up)",
    413: "Body too large",
    415: "Body must be application/json",
    422: "Invalid fields",
    423: "Share code locked",
    429: "Rate limited",
}


@dataclass(frozen=True, slots=True)
class Endpoint:
    method: str
    path: str
    handler: Handler
    summary: str
    body: type[BaseModel] | None
    response: type[BaseModel] | None
    status: int
    errors: tuple[int, ...]
    security: tuple[str, ...]
    tag: str


class Api:
    def __init__(self, *, max_body_bytes: int) -> None:
        self.endpoints: list[Endpoint] = []
        self.max_body_bytes = max_body_bytes

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str,
        body: type[BaseModel] | None = None,
        response: type[BaseModel] | None = None,
        status: int = 200,
        errors: tuple[int, ...] = (),
        security: tuple[str, ...] = (),
        tag: str = "consultd",
    ) -> Callable[[Handler], Handler]:
        def register(handler: Handler) -> Handler:
            self.endpoints.append(
                Endpoint(
                    method, path, handler, summary, body, response, status, errors, security, tag
                )
            )
            return handler

        return register

    def install(self, app: web.Application) -> None:
        for ep in self.endpoints:
            app.router.add_route(ep.method, ep.path, self._wrap(ep))

    def _wrap(self, ep: Endpoint) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def handle(request: web.Request) -> web.StreamResponse:
            args: list[Any] = [request]
            if ep.body is not None:
                args.append(await self._parse_body(request, ep.body))
            result = await ep.handler(*args)
            if isinstance(result, web.StreamResponse):
                return result
            if ep.response is None:
                return web.Response(status=ep.status)
            payload = ep.response.model_validate(result).model_dump_json()
            return web.Response(status=ep.status, text=payload, content_type="application/json")

        return handle

    async def _parse_body(self, request: web.Request, model: type[BaseModel]) -> BaseModel:
        if request.content_type != "application/json":
            raise web.HTTPUnsupportedMediaType(
                text=json.dumps(
                    {
                        "error": {
                            "code": "unsupported_media_type",
                            "message": "send application/json",
                            "details": [],
                        }
                    }
                ),
                content_type="application/json",
            )
        if request.content_length is not None and request.content_length > self.max_body_bytes:
            raise PayloadTooLarge(f"body over {self.max_body_bytes} bytes")
        raw = await request.content.read(self.max_body_bytes + 1)
        if len(raw) > self.max_body_bytes:
            raise PayloadTooLarge(f"body over {self.max_body_bytes} bytes")
        try:
            data = json.loads(raw or b"{}")
        except (ValueError, UnicodeDecodeError) as exc:
            raise BadRequest("the body is not valid JSON") from exc
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            details = [
                {"loc": [str(p) for p in e["loc"]], "msg": e["msg"], "type": e["type"]}
                for e in exc.errors(include_url=False, include_input=False)
            ]
            raise ValidationFailed("invalid request fields", details=details) from exc

    def openapi(self) -> dict[str, Any]:
        models: list[tuple[type[BaseModel], Any]] = [(ErrorBody, "serialization")]
        for ep in self.endpoints:
            if ep.body is not None:
                models.append((ep.body, "validation"))
            if ep.response is not None:
                models.append((ep.response, "serialization"))
        keys, defs = models_json_schema(
            list(dict.fromkeys(models)), ref_template="#/components/schemas/{model}"
        )
        schemas = defs.get("$defs", {})

        def ref(model: type[BaseModel], mode: str) -> dict[str, Any]:
            return dict(keys[(model, mode)])  # type: ignore[index]

        error_ref = ref(ErrorBody, "serialization")
        paths: dict[str, dict[str, Any]] = {}
        for ep in self.endpoints:
            params = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
                }
                for name in re.findall(r"{(\w+)}", ep.path)
            ]
            responses: dict[str, Any] = {}
            if ep.response is not None:
                responses[str(ep.status)] = {
                    "description": "OK",
                    "content": {"application/json": {"schema": ref(ep.response, "serialization")}},
                }
            else:
                responses[str(ep.status)] = {"description": "Done"}
            for code in sorted(set(COMMON_ERRORS) | set(ep.errors)):
                responses[str(code)] = {
                    "description": _STATUS_TEXT.get(code, "Error"),
                    "content": {"application/json": {"schema": error_ref}},
                }
            if "429" in responses:
                responses["429"]["headers"] = {"Retry-After": {"schema": {"type": "integer"}}}
            op: dict[str, Any] = {
                "summary": ep.summary,
                "operationId": ep.handler.__name__,
                "tags": [ep.tag],
                "responses": responses,
            }
            if params:
                op["parameters"] = params
            if ep.body is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": ref(ep.body, "validation")}},
                }
            if ep.security:
                op["security"] = [{s: []} for s in ep.security]
            paths.setdefault(ep.path, {})[ep.method.lower()] = op
        return {
            "openapi": "3.1.0",
            "info": {
                "title": "consultd",
                "version": __version__,
                "description": "Consult rooms for physicians. Real-time events travel over "
                "socket.io (see docs/protocol.md).",
            },
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {
                    "session": {"type": "apiKey", "in": "cookie", "name": "consultd_session"},
                    "participant": {"type": "http", "scheme": "bearer"},
                },
            },
        }
