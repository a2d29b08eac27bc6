"""The playground page at /: served by the API with its own assets, under a Content-Security-Policy, outside the
OpenAPI document. What it does in a browser is tests/e2e/test_playground.py."""

import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.config import ApiSettings
from api.main import create_app

STATIC = Path(__file__).parents[2] / "api" / "static"


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    # Nothing here touches Redis: the page, its assets and the OpenAPI document are static.
    return TestClient(create_app(ApiSettings(api_keys="k" * 16, storage_url=f"file://{tmp_path}")))


def test_the_page_loads_every_asset_from_the_api_itself(client: TestClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    references = re.findall(r"""(?:src|href)=["']([^"']+)["']""", page.text)
    assert {"static/app.js", "static/style.css", "static/favicon.svg"} <= set(references)
    types = {"app.js": "text/javascript", "style.css": "text/css", "favicon.svg": "image/svg+xml"}
    for reference in references:
        assert "//" not in reference, reference  # relative: no CDN, and it works under a proxy's path prefix
        asset = client.get(f"/{reference}")
        assert asset.status_code == 200, reference
        name = reference.rsplit("/", 1)[-1]
        if name in types:
            assert asset.headers["content-type"].startswith(types[name])


def test_the_page_runs_only_its_own_script_and_talks_only_to_the_api(client: TestClient) -> None:
    page = client.get("/")
    policy = dict(part.strip().split(" ", 1) for part in page.headers["content-security-policy"].split(";"))
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == "'self'" and policy["style-src"] == "'self'"
    assert policy["connect-src"] == "'self'"
    assert {"http:", "https:"} <= set(policy["img-src"].split()) & set(policy["media-src"].split())
    assert page.headers["referrer-policy"] == "no-referrer"  # signed storage URLs never leave in a Referer
    # The policy allows no inline code, so the page has none.
    assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", page.text)
    assert not re.search(r"\son[a-z]+=", page.text)


def test_every_element_the_script_uses_is_on_the_page() -> None:
    ids = set(re.findall(r'\bid="([^"]+)"', (STATIC / "index.html").read_text()))
    used = set(re.findall(r'\$\("([^"]+)"\)', (STATIC / "app.js").read_text()))
    assert used and used <= ids, sorted(used - ids)


@pytest.mark.parametrize("path", ["/static/index.html", "/static/missing.js", "/static/..%2Fplayground.py"])
def test_only_the_listed_assets_are_served(client: TestClient, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_the_page_is_not_part_of_the_api_description(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert "/" not in paths and not [path for path in paths if path.startswith("/static")]
