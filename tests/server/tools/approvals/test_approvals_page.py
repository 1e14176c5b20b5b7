"""The web page's Approve and Deny buttons, in headless Chromium against a real server with a
real MCP server (``notes_mcp_server.py``), the real sandbox and the scripted model. The browser
is driven as in ``tests/server/api/test_web_ui.py`` (Debian's chromium through Playwright)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from models.engine.scripted import ScriptedEngine
from tests.live_server import LiveServer
from tests.server.api.test_web_ui import ARTIFACTS, open_page, send, watch
from tests.server.tools.approvals.conftest import WRITE_CODE, decisions

if TYPE_CHECKING:
    from playwright.sync_api import Page


@pytest.fixture
def page() -> Iterator[Page]:
    yield from open_page()


def test_the_page_shows_a_pending_call_and_its_buttons_decide_it(
    page: Page, server: LiveServer, engine: ScriptedEngine, notes: Path, audit: Path
) -> None:
    from playwright.sync_api import expect

    problems, _ = watch(page)
    page.goto(server.url)
    expect(page.locator("#status")).to_contain_text("model scripted")

    # Approve: the call runs and the same execution goes on.
    engine.enqueue(WRITE_CODE, "<solution>Noted.</solution>")
    send(page, "Note hello")
    first = page.locator(".run").nth(0)
    box = first.locator(".approval")
    expect(box.locator(".approval-title")).to_have_text("Approval needed: notes · write_note")
    expect(box.locator(".approval-arguments")).to_contain_text('"text": "hello"')
    assert not notes.exists()
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web_ui_approval.png"), full_page=True)
    box.locator("button.approve").click()
    expect(first.locator("pre.stdout")).to_have_text("wrote noted: hello 42 []\n")
    expect(first.locator(".run-status")).to_contain_text("Done")
    expect(box).to_have_class("approval approved")
    assert notes.read_text() == "hello\n"

    # Deny: the code gets a PermissionError, and the run goes on to its answer.
    engine.enqueue(WRITE_CODE, "<solution>Not allowed.</solution>")
    send(page, "Note hello again")
    second = page.locator(".run").nth(1)
    second.locator(".approval button.deny").click()
    expect(second.locator("pre.stdout")).to_have_text("denied: notes_write_note: the call was not approved: denied\n")
    expect(second.locator(".answer")).to_contain_text("Not allowed.")
    assert notes.read_text() == "hello\n"
    assert [(d["approve"], d["decided_by"]) for d in decisions(audit)[-2:]] == [(True, "api"), (False, "api")]
    assert not problems, problems
