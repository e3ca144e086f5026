"""The verbs' direct dispatch (:class:`scheduler.extender.http.ServiceAPI`): a POST to a verb's
path answers exactly as through FastAPI's router, errors included, and a middleware added to the
app is never skipped (the verbs then take FastAPI's way). Real uvicorn on 127.0.0.1."""

from __future__ import annotations

from pathlib import Path

import httpx
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.requests import Request
from starlette.responses import Response

from scheduler.app import ServeOptions, build_runtime
from scheduler.extender.http import ServiceAPI
from tests.support.serve import uvicorn_serving

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "kube-scheduler" / "v1.35.4"


async def answers(app: object) -> dict[str, tuple[int, str, bytes]]:
    """Status, content type and body of each verb for the captured payloads and a bad body,
    plus a GET on a verb's path, a trailing slash, and a miss."""
    out: dict[str, tuple[int, str, bytes]] = {}
    async with uvicorn_serving(app) as url, httpx.AsyncClient(base_url=url, timeout=30) as http:
        for verb in ("filter", "prioritize", "bind", "preempt"):
            body = (FIXTURES / f"{verb}.args.nodeCacheCapable-true.json").read_bytes()
            for name, content in ((verb, body), (f"{verb}-bad", b"[")):
                r = await http.post(f"/scheduler/{verb}", content=content)
                out[name] = (r.status_code, r.headers["content-type"], r.content)
        for name, method, path in (
            ("get", "GET", "/scheduler/filter"),
            ("slash", "POST", "/scheduler/filter/"),
            ("miss", "POST", "/filter"),
        ):
            r = await http.request(method, path, content=b"{}")
            out[name] = (r.status_code, r.headers.get("content-type", ""), r.content)
    return out


async def test_direct_and_routed_verbs_answer_alike() -> None:
    direct = build_runtime(ServeOptions(url_prefix="/scheduler")).app
    routed = build_runtime(ServeOptions(url_prefix="/scheduler")).app
    assert isinstance(direct, ServiceAPI) and isinstance(routed, ServiceAPI)

    async def passthrough(request: Request, call_next: object) -> Response:
        assert callable(call_next)
        response: Response = await call_next(request)
        response.headers["x-passed"] = "1"
        return response

    routed.add_middleware(BaseHTTPMiddleware, dispatch=passthrough)
    seen_direct, seen_routed = await answers(direct), await answers(routed)
    verbs = {f"/scheduler/{v}" for v in ("filter", "prioritize", "bind", "preempt")}
    assert set(direct._direct or {}) == verbs  # these went the direct way
    assert routed._direct is None  # these through the middleware and FastAPI's router
    assert seen_direct == seen_routed
    assert seen_direct["filter"][0] == 200 and seen_direct["filter-bad"][0] == 400
    assert seen_direct["get"][0] == 405 and seen_direct["miss"][0] == 404


async def test_an_added_middleware_sees_the_verbs_too() -> None:
    app = build_runtime(ServeOptions()).app
    seen: list[str] = []

    async def record(request: Request, call_next: object) -> Response:
        assert callable(call_next)
        seen.append(request.url.path)
        response: Response = await call_next(request)
        return response

    app.add_middleware(BaseHTTPMiddleware, dispatch=record)
    body = (FIXTURES / "prioritize.args.nodeCacheCapable-true.json").read_bytes()
    async with uvicorn_serving(app) as url, httpx.AsyncClient(base_url=url) as http:
        assert (await http.post("/prioritize", content=body)).status_code == 200
        assert (await http.post("/bind", content=b"{]")).status_code == 400
    assert seen == ["/prioritize", "/bind"]
