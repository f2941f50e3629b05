"""The API docs work without internet: every asset /docs and /redoc load is served by the controller."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from controller.main import create_app
from controller.settings import Settings


@pytest.mark.parametrize("page", ["/docs", "/redoc"])
def test_docs_assets_are_local(page: str, tmp_path: Path) -> None:
    client = TestClient(create_app(Settings(data_dir=tmp_path, mqtt_enabled=False)))
    html = client.get(page)
    assert html.status_code == 200
    assets = re.findall(r"""(?:src|href)=["']([^"']+\.(?:js|css))["']""", html.text)
    assert assets, html.text[:500]
    for url in assets:
        assert url.startswith("/"), f"{page} loads {url} from elsewhere"
        assert client.get(url).status_code == 200, url
    assert client.get("/openapi.json").json()["info"]["title"] == "edgefleet controller"
