"""``/docs`` of a real ``lowcarb serve`` loads nothing from outside: every asset the page names
(scripts, style sheets, icon, the OpenAPI document swagger-ui fetches) is served by lowcarb itself,
and ``/openapi.json`` is the committed contract."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Callable
from html.parser import HTMLParser
from importlib.resources import files
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import httpx

from tests.support.fakeapi import free_port

from .conftest import wait_for

REPO = Path(__file__).resolve().parents[2]
ABSOLUTE = re.compile(r"""(?:https?:)?//[A-Za-z0-9.-]+""")


class Assets(HTMLParser):
    """Every URL an HTML page makes the browser load: script src, link href, img src, and the
    ``url:`` swagger-ui is configured to fetch; the inline scripts' text too."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if tag == "script":
            self._in_script = True
            if found.get("src"):
                self.urls.append(str(found["src"]))
        elif tag == "link" and found.get("href"):
            self.urls.append(str(found["href"]))
        elif tag in ("img", "iframe", "source") and found.get("src"):
            self.urls.append(str(found["src"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "script":
            self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.scripts.append(data)
            self.urls += re.findall(r"""\burl\s*:\s*['"]([^'"]+)['"]""", data)


def test_docs_page_assets_are_all_served_by_lowcarb(
    lowcarb_serve: Callable[..., subprocess.Popen[bytes]], tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = lowcarb_serve("--port", str(port))
    wait_for(f"{base}/healthz", process, tmp_path / "serve.log")
    with httpx.Client(base_url=base, timeout=30.0) as client:
        page = client.get("/docs")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert ABSOLUTE.findall(page.text) == []  # no CDN, no other host, not even //host/...
        parser = Assets()
        parser.feed(page.text)
        assert any("SwaggerUIBundle(" in s for s in parser.scripts)
        urls = sorted(set(parser.urls))
        loaded = {urlsplit(u).path.rsplit("/", 1)[-1] for u in urls}
        assert loaded == {"swagger-ui-bundle.js", "swagger-ui.css", "favicon.png", "openapi.json"}
        expect = {".js": "javascript", ".css": "text/css", ".png": "image/png", ".json": "json"}
        for url in urls:
            absolute = urljoin(f"{base}/docs", url)
            assert urlsplit(absolute).netloc == f"127.0.0.1:{port}", url
            answer = client.get(absolute)
            assert answer.status_code == 200, (url, answer.status_code)
            assert answer.content, url
            kind = next(v for k, v in expect.items() if url.endswith(k))
            assert kind in answer.headers["content-type"], (url, answer.headers["content-type"])
        # the scripts and styles are swagger-ui's dist files as the pinned package ships them
        shipped = files("fastapi_offline").joinpath("static")
        for name in ("swagger-ui-bundle.js", "swagger-ui.css"):
            served = client.get(f"/docs/assets/{name}").content
            assert served == shipped.joinpath(name).read_bytes(), name
        served_doc = client.get("/openapi.json").json()
    # the contract served is the committed one (verbs at the root, as lowcarb serve's default)
    assert served_doc == json.loads((REPO / "docs" / "openapi.json").read_text())
