"""The built-in web page, end to end in headless Chromium against a real server.

The browser is Debian's ``chromium`` driven by Playwright for Python (browser downloads do
not work on CI machines, so Playwright's own browsers are never installed). The server is
real uvicorn with the real sandbox and a scripted model, so what the page shows is exactly
what the agent did. Screenshots land in ``artifacts/`` (gitignored) for CI to keep.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest

from models.engine.scripted import ScriptedEngine
from server.api.app import create_app
from server.api.routes.ui import STATIC_DIR
from server.settings import Settings
from tests.live_server import LiveServer
from tests.scripted_agent import ANSWER_AT_ONCE

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page, Request

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
ARTIFACTS = Path(__file__).resolve().parents[3] / "artifacts"
API_KEY = "sk-web-ui-test"
AUTH = {"Authorization": f"Bearer {API_KEY}"}

PLOT_TURN = """I will plot the first five squares and print their sum.
<execute>
import matplotlib.pyplot as plt
squares = [n * n for n in range(1, 6)]
plt.plot(range(1, 6), squares, marker="o")
plt.title("squares")
plt.savefig("squares.png")
print("sum", sum(squares))
</execute>"""


@pytest.fixture
def engine() -> ScriptedEngine:
    # A small delay per word so code visibly streams in, as it does from a real model.
    return ScriptedEngine(token_delay_s=0.005)


@pytest.fixture
def server(engine: ScriptedEngine) -> Iterator[LiveServer]:
    settings = Settings(sandbox_pool_size=1, execution_timeout=20, max_sessions=4, api_key=[API_KEY], **ANSWER_AT_ONCE)
    with LiveServer(create_app(settings, engine)) as live:
        yield live


# -- the static files, without a browser ----------------------------------------------------
def test_page_and_modules_are_served_with_their_types(server: LiveServer) -> None:
    """Without a key too: the page is what asks the user for it."""
    page = httpx.get(server.url + "/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="/static/app.js">' in page.text
    script = httpx.get(server.url + "/static/app.js")
    assert script.headers["content-type"].startswith("text/javascript")
    assert httpx.get(server.url + "/static/style.css").headers["content-type"].startswith("text/css")


def test_static_route_serves_only_the_static_folder(server: LiveServer) -> None:
    """These paths are open without a key, so nothing outside the folder may leak through them."""
    for path in ("/static/%2e%2e/app.py", "/static/..%2fsettings.py", "/static/missing.js", "/static/"):
        response = httpx.get(server.url + path)
        assert response.status_code == 404, path
        assert "error" in response.json()


def test_page_needs_nothing_from_the_network() -> None:
    """Air-gapped users: no CDN, no external fonts, no absolute URLs anywhere in the page."""
    for path in STATIC_DIR.iterdir():
        text = re.sub(r'xmlns="[^"]*"', "", path.read_text())  # a namespace name, never fetched
        assert not re.search(r"(https?:)?//[a-z0-9.-]+\.[a-z]{2,}/", text, re.I), path.name
        assert "@import" not in text and "url(" not in text, path.name


# -- the page in a real browser ---------------------------------------------------------------
def open_page(**context_options: object) -> Iterator[Page]:
    """A page in headless Debian chromium (skips where Playwright or chromium is missing); the
    ``page`` fixtures here and in the approvals page test yield from it."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="pip install playwright")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": 1100, "height": 1000}, **context_options)
            yield context.new_page()
            context.close()
        finally:
            browser.close()


@pytest.fixture
def page() -> Iterator[Page]:
    yield from open_page(accept_downloads=True)


def send(page: Page, text: str) -> None:
    page.fill("#prompt", text)
    page.press("#prompt", "Enter")


def watch(page: Page) -> tuple[list[str], list[Request]]:
    """Collect the page's script errors and failed loads, and the API calls it makes."""
    problems: list[str] = []
    api_calls: list[Request] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error":
            problems.append(f"console: {message.text} {message.location}")

    def on_request(request: Request) -> None:
        if "/v1/" in request.url or request.url.endswith("/health"):
            api_calls.append(request)

    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))
    page.on("console", on_console)
    page.on("request", on_request)
    return problems, api_calls


def test_agent_conversation_in_the_browser(page: Page, server: LiveServer, engine: ScriptedEngine) -> None:
    from playwright.sync_api import expect

    problems, api_calls = watch(page)

    page.goto(server.url)
    status = page.locator("#status")
    expect(status).to_contain_text("model scripted")
    expect(status).to_contain_text("backend scripted")
    expect(status).to_contain_text("queue idle")

    # Without the key the agent refuses, and the page opens its settings to ask for it.
    send(page, "hello?")
    expect(page.locator(".run-status")).to_contain_text("missing API key")
    expect(page.locator("#settings")).to_be_visible()
    problems.clear()  # the browser logs the expected 401

    # The API key is entered once and then goes with every API call.
    page.fill("#api-key", API_KEY)
    page.press("#api-key", "Tab")
    page.fill("#max-turns", "4")
    page.click("#settings-toggle")
    page.click("#new-session")
    expect(page.locator(".user-message")).to_have_count(0)
    api_calls.clear()

    # A task: the code streams in, then its output and the plot appear, then the answer.
    engine.enqueue(PLOT_TURN, "<solution>The plot is saved as squares.png.</solution>")
    send(page, "Plot the first five squares")
    first = page.locator(".run").nth(0)
    step = first.locator(".step").first
    expect(step.locator("pre.code")).to_contain_text('plt.savefig("squares.png")')
    expect(step.locator("pre.code .tok-kw").first).to_have_text("import")
    expect(step.locator("pre.stdout")).to_have_text("sum 55\n")
    image = step.locator(".files img")
    expect(image).to_have_attribute("src", re.compile(r"^blob:"))
    page.wait_for_function("img => img.complete && img.naturalWidth > 100", arg=image.element_handle())
    expect(first.locator(".answer")).to_contain_text("squares.png")
    expect(first.locator(".run-status")).to_have_text("Done in 2 turns.")
    # The finished run downloads as a Jupyter notebook (fetched with the key), plot included.
    with page.expect_download() as download_info:
        first.locator("a.notebook").click()
    notebook = json.loads(Path(download_info.value.path()).read_text())
    assert download_info.value.suggested_filename.endswith(".ipynb")
    (cell,) = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    assert 'plt.savefig("squares.png")' in "".join(cell["source"])
    assert any("image/png" in out.get("data", {}) for out in cell["outputs"])
    session_id = page.evaluate("localStorage.getItem('codeact.sessionId')")
    assert session_id and session_id.startswith("sess_")

    # A follow-up continues the same session: the variable from the first turn is there.
    engine.enqueue("<execute>\nprint('twice', sum(squares) * 2)\n</execute>", "<solution>110</solution>")
    send(page, "Double that sum")
    second = page.locator(".run").nth(1)
    expect(second.locator("pre.stdout")).to_have_text("twice 110\n")
    expect(second.locator(".run-status")).to_contain_text("Done")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "web_ui.png"), full_page=True)

    # A reload redraws the conversation from the server's session.
    page.reload()
    expect(page.locator(".user-message")).to_have_count(2)
    expect(page.locator(".step pre.stdout")).to_have_count(2)
    expect(page.locator(".files img")).to_have_attribute("src", re.compile(r"^blob:"))
    expect(page.locator(".answer")).to_have_count(2)

    # Stop a long-running execution: the page says so, and the server let go of the session.
    page.click("#settings-toggle")
    page.fill("#execution-timeout", "300")
    page.click("#settings-toggle")
    engine.enqueue("This will take a while.\n<execute>\nwhile True:\n    pass\n</execute>")
    send(page, "Spin forever")
    third = page.locator(".run").nth(2)
    # Still running: the code on screen came from the streamed deltas, not a finished step.
    expect(third.locator(".step.generating pre.code")).to_contain_text("while True")
    expect(page.locator("#stop")).to_be_visible()
    time.sleep(1.0)  # the code is running in the sandbox now
    assert httpx.get(f"{server.url}/v1/agent/sessions/{session_id}", headers=AUTH).json()["busy"] is True
    stopped_at = time.monotonic()
    page.click("#stop")
    expect(third.locator(".run-status")).to_have_class(re.compile(r"\bstopped\b"), timeout=10_000)
    expect(third.locator(".badge")).to_have_text("stopped")
    assert time.monotonic() - stopped_at < 10
    assert httpx.get(f"{server.url}/v1/agent/sessions/{session_id}", headers=AUTH).json()["busy"] is False
    expect(page.locator("#send")).to_be_enabled()
    third.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "web_ui_stopped.png"), full_page=True)

    # The infinite loop was interrupted, not left running: the interpreter answers at once,
    # with its state kept. Errors and timeouts are marked as such.
    page.click("#settings-toggle")
    page.fill("#execution-timeout", "1")
    page.click("#settings-toggle")
    engine.enqueue(
        "<execute>\nprint('still here', squares[-1])\n</execute>",
        "<execute>\n1 / 0\n</execute>",
        "<execute>\nwhile True:\n    pass\n</execute>",
        "25</solution>",  # the fourth of 4 turns can only answer: <solution> is opened for it
    )
    send(page, "Are you still there?")
    fourth = page.locator(".run").nth(3)
    expect(fourth.locator("pre.stdout")).to_have_text("still here 25\n", timeout=10_000)
    expect(fourth.locator(".step").nth(1).locator(".badge.error")).to_have_text("error")
    expect(fourth.locator(".step").nth(1).locator("pre.error")).to_contain_text("ZeroDivisionError")
    expect(fourth.locator(".step").nth(2).locator(".badge.timeout")).to_have_text("timed out")
    expect(fourth.locator(".answer")).to_have_text("25")
    expect(fourth.locator(".run-status")).to_have_text(
        "Done in 4 turns. The answer was forced: the turn limit was reached."
    )
    fourth.scroll_into_view_if_needed()
    page.screenshot(path=str(ARTIFACTS / "web_ui_errors.png"))

    # Stop during generation: the server cancels the model's decoding as well.
    engine.token_delay_s = 0.05  # this turn would stream for about 40 s
    engine.enqueue("Let me think. " + "Still thinking. " * 400)
    send(page, "Think for a long time")
    fifth = page.locator(".run").nth(4)
    expect(fifth.locator(".step.generating .thought")).to_contain_text("Still thinking.")
    assert engine.queue_depth() == 1
    expect(page.locator("#status .busy")).to_have_text("queue busy (1)", timeout=6_000)  # polled /health
    page.click("#stop")
    expect(fifth.locator(".run-status")).to_have_class(re.compile(r"\bstopped\b"))
    deadline = time.monotonic() + 5
    while engine.queue_depth():
        assert time.monotonic() < deadline, "the generation went on after Stop"
        time.sleep(0.05)
    engine.token_delay_s = 0.005

    # Reloaded, the turn stopped during its execution shows as interrupted.
    page.reload()
    expect(page.locator(".user-message")).to_have_count(5)
    expect(page.locator(".step .badge", has_text="stopped")).to_have_count(1)

    # "New session" starts over and frees the old session's sandbox on the server.
    page.click("#new-session")
    expect(page.locator(".user-message")).to_have_count(0)
    assert page.evaluate("localStorage.getItem('codeact.sessionId')") is None
    deadline = time.monotonic() + 5
    while httpx.get(f"{server.url}/v1/agent/sessions/{session_id}", headers=AUTH).status_code != 404:
        assert time.monotonic() < deadline, "the old session was not deleted"
        time.sleep(0.05)

    assert api_calls, "the page made no API calls"
    missing = [r.url for r in api_calls if r.headers.get("authorization") != f"Bearer {API_KEY}"]
    assert not missing, f"calls without the API key: {missing}"
    assert not problems, problems


def test_a_forced_answer_is_shown_on_the_page(page: Page, server: LiveServer, engine: ScriptedEngine) -> None:
    """The loop policy turned a repeated action into the answer: the page says so."""
    from playwright.sync_api import expect

    problems, _ = watch(page)
    page.goto(server.url)
    page.evaluate(f"localStorage.setItem('codeact.apiKey', '{API_KEY}')")
    page.reload()
    engine.enqueue("<execute>print(6 * 7)</execute>", "<execute>print(6 * 7)</execute>", "42</solution>")
    send(page, "What is 6 * 7?")
    run = page.locator(".run").nth(0)
    expect(run.locator(".answer")).to_have_text("42")
    expect(run.locator(".badge.forced")).to_contain_text("repeated code")
    expect(run.locator(".run-status")).to_contain_text("answer was forced")
    assert not problems, problems


def test_a_reload_mid_run_follows_the_run_again(page: Page, server: LiveServer, engine: ScriptedEngine) -> None:
    """Runs are background runs: a reload while the code runs draws the run again from its
    events, follows it to its answer, and shows each step once."""
    from playwright.sync_api import expect

    problems, _ = watch(page)
    page.goto(server.url)
    page.evaluate(f"localStorage.setItem('codeact.apiKey', '{API_KEY}')")
    page.reload()
    engine.enqueue(
        "First a nap.\n<execute>\nimport time\ntime.sleep(3)\nprint('slept')\n</execute>",
        "<solution>I slept.</solution>",
    )
    send(page, "Take a nap")
    expect(page.locator(".run").nth(0).locator(".step pre.code")).to_contain_text("time.sleep(3)")
    page.reload()  # the code is running in the sandbox now; the run goes on without the page
    run = page.locator(".run").nth(0)
    expect(run.locator(".answer")).to_have_text("I slept.", timeout=15_000)
    expect(run.locator("pre.stdout")).to_have_text("slept\n")
    expect(run.locator(".run-status")).to_have_text("Done in 2 turns.")
    expect(page.locator(".run")).to_have_count(1)
    expect(page.locator(".user-message")).to_have_count(1)
    expect(page.locator(".step pre.code")).to_have_count(1)
    expect(page.locator("#send")).to_be_enabled()
    assert not problems, problems


def test_samples_and_their_agreement_are_shown_on_the_page(page: Page, monkeypatch: pytest.MonkeyPatch) -> None:
    """Three runs of the first task: run 0 streams as a plain run, every run's answer has its
    line, the agreement says who won, and the winner's session continues the conversation."""
    from playwright.sync_api import expect

    from server.agent.consensus import runner

    monkeypatch.setattr(runner, "task_seed", lambda messages: 0)  # sample i is seeded i

    turns = {None: ["<execute>print(6 * 7)</execute>", "<solution>41</solution>"], 1: ["<solution>42</solution>"]}
    turns[2] = ["<solution>42.0</solution>"]
    engine = ScriptedEngine(
        sampler=lambda r: turns[r.seed][r.prompt.count("<|im_start|>assistant\n") - 1], token_delay_s=0.005
    )
    settings = Settings(sandbox_pool_size=1, execution_timeout=20, max_sessions=4, api_key=[API_KEY], **ANSWER_AT_ONCE)
    problems, _ = watch(page)
    with LiveServer(create_app(settings, engine)) as server:
        page.goto(server.url)
        page.evaluate(f"localStorage.setItem('codeact.apiKey', '{API_KEY}')")
        page.evaluate("localStorage.setItem('codeact.setting.samples', '3')")
        page.evaluate("localStorage.setItem('codeact.setting.temperature', '0')")
        page.reload()
        send(page, "What is 6 * 7?")
        run = page.locator(".run").nth(0)
        expect(run.locator(".agreement")).to_have_text("3 samples: 2 of 3 agree on 42 (the answer of sample 1)")
        lines = run.locator(".samples .sample")
        expect(lines).to_have_text(
            [
                "Sample 0 (shown above): 41 (solution, 2 turns)",
                "Sample 1: 42 (solution, 1 turn)",
                "Sample 2: 42.0 (solution, 1 turn)",
            ]
        )
        expect(run.locator(".samples .winner")).to_have_text("Sample 1: 42 (solution, 1 turn)")
        expect(run.locator(".step .code")).to_contain_text("print(6 * 7)")  # run 0's steps, drawn live
        expect(run.locator(".answer").last).to_have_text("42")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "web_ui_samples.png"), full_page=True)
        winner = page.evaluate("localStorage.getItem('codeact.sessionId')")
        assert httpx.get(f"{server.url}/v1/agent/sessions/{winner}", headers=AUTH).json()["turns"] == 1
    assert not problems, problems
