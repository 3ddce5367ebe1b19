"""OpenAI-shaped errors: ``{"error": {"message", "type", "param", "code"}}`` with the HTTP status."""
from __future__ import annotations

from typing import Any, Optional

from starlette.requests import Request
from starlette.responses import JSONResponse


class APIError(Exception):
    """An error the client gets as an OpenAI error body; the server goes on serving."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.param = param
        self.code = code

    def body(self) -> dict[str, Any]:
        """The JSON body (also used as an SSE error event)."""
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status)


def bad_request(message: str, param: Optional[str] = None, code: Optional[str] = None) -> APIError:
    """400 invalid_request_error."""
    return APIError(400, message, param=param, code=code)


def unknown_model(name: str, served: str) -> APIError:
    """404 for a model name this server does not serve."""
    return APIError(404, f"The model `{name}` does not exist: this server serves `{served}`",
                    type="invalid_request_error", param="model", code="model_not_found")


def body_too_large(size: Optional[int], limit: int) -> APIError:
    """413 for a request body over the server's limit."""
    got = f"{size} bytes" if size is not None else "more"
    return APIError(413, f"request body is {got}, over this server's limit of {limit} bytes "
                         f"(start it with a larger --max-body-bytes)", type="invalid_request_error",
                    code="request_too_large")


async def api_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """FastAPI handler for APIError."""
    assert isinstance(exc, APIError)
    return exc.response()


async def http_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unknown path, wrong method) in the OpenAI shape."""
    status = int(getattr(exc, "status_code", 500))
    detail = getattr(exc, "detail", None) or "error"
    kind = "invalid_request_error" if status < 500 else "server_error"
    return APIError(status, f"{detail}: {request.method} {request.url.path}", type=kind).response()


async def internal_error_handler(request: Request, exc: Exception) -> JSONResponse:
    """Anything unexpected: 500 with the exception's message, the server keeps running."""
    return APIError(500, f"internal error: {type(exc).__name__}: {exc}", type="server_error").response()


class BodyLimit:
    """ASGI middleware: 413 before reading a body whose Content-Length is over ``limit`` bytes, and
    when a chunked body grows past it."""

    def __init__(self, app: Any, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    size = int(value)
                except ValueError:
                    await _send(send, bad_request("Content-Length is not a number").response())
                    return
                if size > self.limit:
                    await _send(send, body_too_large(size, self.limit).response())
                    return
        seen = 0

        async def limited_receive() -> Any:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise body_too_large(None, self.limit)
            return message

        await self.app(scope, limited_receive, send)


async def _send(send: Any, response: JSONResponse) -> None:
    await send({"type": "http.response.start", "status": response.status_code, "headers": response.raw_headers})
    await send({"type": "http.response.body", "body": response.body})
