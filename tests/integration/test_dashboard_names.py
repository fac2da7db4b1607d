"""Batch names with ``/``, ``?``, ``#``, ``%`` and spaces reach their own page."""

from __future__ import annotations

import html
import re

import httpx
import pytest

from klingmon.store import NewTask, Store
from klingmon.testing import AppServer, VirtualClock
from klingmon.web import Dashboard, create_app

NAMES = ["a/b", "a", "q?x=1#y", "100% done", "with space", "x/tasks", "ü/../é"]
TOKEN = "names-token-0123456789"


@pytest.fixture
def server(tmp_path):
    clock = VirtualClock()
    with Store.open(str(tmp_path / "names.db")) as store:
        for i, name in enumerate(NAMES):
            task = NewTask(endpoint="/v1/videos/text2video", body={"prompt": f"p{i}"})
            store.tasks.create_batch(name, [task], 1_000 + i)
        app = create_app(
            store, secret=b"s" * 32, clock=clock, dashboard=Dashboard(token=TOKEN)
        )
        with AppServer(app) as running:
            yield running


def test_every_batch_link_opens_that_batch(server):
    """Each overview link leads to the page of the batch it names, and only it."""
    with httpx.Client(base_url=server.url) as http:
        assert http.get("/login", params={"token": TOKEN}).status_code == 303
        overview = http.get("/").text
        links = re.findall(r'<h2><a href="(/batches/[^"]+)">', overview)
        assert len(links) == len(NAMES)
        opened = {}
        for link in links:
            page = http.get(html.unescape(link))
            assert page.status_code == 200, link
            title = re.search(r'aria-current="page">(.*?)</span>', page.text)
            assert title is not None, link
            opened[html.unescape(title.group(1))] = link
    assert sorted(opened) == sorted(NAMES)


def test_an_action_comes_back_to_the_same_batch(server):
    """Retry on ``a/b`` redirects to ``a/b``'s page, not to batch ``a``."""
    with httpx.Client(base_url=server.url) as http:
        http.get("/login", params={"token": TOKEN})
        answer = http.post("/actions/retry/a%2Fb", headers={"Origin": server.url})
        assert answer.status_code == 303
        where = answer.headers["location"]
        assert where.startswith("/batches/a%2Fb?")
        page = http.get(where)
    assert page.status_code == 200
    assert 'aria-current="page">a/b</span>' in page.text
