"""The chat page and the embeddable widget in headless Chromium (Debian's, driven by Selenium
through chromedriver) against the bundled app on the embedded default."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import ADMIN_KEY, corpus_documents, running_docent, serve
from tests.support.servers import free_port
from tests.support.standins import StandIn
from tests.support.windows import clear_of_window_roll

pytestmark = pytest.mark.browser

ARTIFACTS = Path(__file__).parent / "artifacts"
DOCS_SITE_PORT = free_port()  # the other origin that embeds the widget


def ensure_chromium() -> tuple[str, str]:
    """Debian's chromium and chromedriver, installed with apt when missing."""
    if not (shutil.which("chromium") and shutil.which("chromedriver")):
        subprocess.run(["apt-get", "update", "-qq"], check=True)
        subprocess.run(
            ["apt-get", "install", "-y", "-qq", "chromium", "chromium-driver"], check=True
        )
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "chromium could not be installed"
    return chromium, driver


def start_chromium(profile: Path, performance_log: bool = False) -> Any:
    """Headless Debian Chromium through chromedriver; `performance_log` records the network
    events (requests with their bodies) for `driver.get_log("performance")`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    chromium, driver_path = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in (
        "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--disable-dev-shm-usage", "--window-size=1200,900", f"--user-data-dir={profile}",
    ):  # fmt: skip
        options.add_argument(flag)
    if performance_log:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=driver_path), options=options)
    driver.set_script_timeout(30)
    return driver


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    driver = start_chromium(tmp_path_factory.mktemp("chromium"))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """The bundled app with the corpus, answers paced so streaming is visible; limit 3/hour."""
    with running_docent(
        tmp_path_factory.mktemp("browser"),
        extractive_pace_ms=40,
        rate_limit_anon="3/3600s",
        cors_allow_origins=(f"http://127.0.0.1:{DOCS_SITE_PORT}",),
    ) as docent:
        docent.ingest(
            [
                {**d, "url": f"https://docs.example.com/{d['id'].removesuffix('.md')}"}
                for d in corpus_documents()
            ]
        )
        yield docent


# The widget adds no global: tests reach its (open) shadow root through its host element.
ROOT_JS = "document.querySelector('[data-docent-widget]').shadowRoot"


def shadow(driver: Any) -> Any:
    return driver.execute_script(
        "const host = document.querySelector('[data-docent-widget]');return host && host.shadowRoot"
    )


def wait_for(predicate: Any, timeout: float = 15, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


ASK_AND_RECORD = """
const [question, done] = [arguments[0], arguments[arguments.length - 1]];
const root = __ROOT__;
const seen = [];
const observer = new MutationObserver(() => {
  const answers = root.querySelectorAll('.a');
  const last = answers[answers.length - 1];
  if (last) seen.push([last.getAttribute('data-state'), last.textContent.length]);
});
observer.observe(root, {subtree: true, childList: true, characterData: true, attributes: true});
const input = root.querySelector('#docent-q');
input.value = question;
root.querySelector('form.ask').requestSubmit();
const started = Date.now();
(function poll() {
  const answers = root.querySelectorAll('.a');
  const last = answers[answers.length - 1];
  const state = last && last.getAttribute('data-state');
  if ((state === 'done' || state === 'error') || Date.now() - started > 20000) {
    observer.disconnect();
    done(seen);
  } else setTimeout(poll, 20);
})();
""".replace("__ROOT__", ROOT_JS)


def test_the_page_streams_an_answer_with_source_links_and_a_follow_up(
    browser: Any, site: Any
) -> None:
    clear_of_window_roll(3600, margin_s=120)  # its four questions count in one window
    browser.get(site.url + "/")
    wait_for(lambda: shadow(browser), what="the widget")
    seen = browser.execute_async_script(ASK_AND_RECORD, "How do I configure rate limits?")
    streaming = [length for state, length in seen if state == "streaming"]
    final = browser.execute_script(
        f"const a = {ROOT_JS}.querySelectorAll('.a');return a[a.length - 1].textContent"
    )
    # Progressive: many intermediate lengths, each shorter than the final answer.
    assert len(set(streaming)) >= 5, seen[:20]
    assert min(streaming) < len(final) / 2
    root = shadow(browser)
    links = root.find_elements("css selector", ".sources a")
    assert links
    assert all(a.get_attribute("href").startswith("https://docs.example.com/") for a in links)
    cite = root.find_elements("css selector", ".a a[data-cite]")
    assert cite and cite[0].get_attribute("href").startswith("https://docs.example.com/")
    ARTIFACTS.mkdir(exist_ok=True)
    browser.save_screenshot(str(ARTIFACTS / "page-answer.png"))

    # A follow-up: the page sends the earlier turn as history.
    seen = browser.execute_async_script(ASK_AND_RECORD, "And for API keys?")
    assert seen and seen[-1][0] == "done"
    assert len(root.find_elements("css selector", ".turn")) == 2

    # The limit is 3 an hour for anonymous visitors: the third question gets through, the
    # fourth shows the wait.
    browser.execute_async_script(ASK_AND_RECORD, "What is Docent?")
    browser.execute_async_script(ASK_AND_RECORD, "One more?")
    notice = wait_for(
        lambda: root.find_elements("css selector", ".notice.limit"), what="the 429 notice"
    )
    assert "Try again in" in notice[0].text
    browser.save_screenshot(str(ARTIFACTS / "page-rate-limited.png"))


def test_the_widget_on_another_site(browser: Any, site: Any, tmp_path: Path) -> None:
    """A docs site on another origin embeds the widget with one script tag (CORS allowed)."""
    page = tmp_path / "index.html"
    page.write_text(
        "<!doctype html><html><head><title>Docs</title></head><body><h1>My docs</h1>"
        f'<script src="{site.url}/widget.js" data-api="{site.url}" data-key="user-test-key" '
        'data-title="Ask my docs" defer></script></body></html>'
    )
    from starlette.applications import Starlette
    from starlette.staticfiles import StaticFiles

    docs_site = Starlette()
    docs_site.mount("/", StaticFiles(directory=tmp_path, html=True))
    with serve(docs_site, port=DOCS_SITE_PORT) as origin:
        browser.get(origin + "/")
        root = wait_for(lambda: shadow(browser), what="the widget")
        launcher = root.find_element("css selector", ".launcher")
        assert launcher.text == "Ask my docs"
        launcher.click()
        assert root.find_element("css selector", ".panel").is_displayed()
        seen = browser.execute_async_script(ASK_AND_RECORD, "When are invoices emailed?")
        assert seen[-1][0] == "done", seen[-5:]
        assert root.find_elements("css selector", ".sources a")
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / "widget.png"))


def test_cors_only_for_the_configured_origins(site: Any) -> None:
    def preflight(origin: str) -> httpx.Response:
        return httpx.options(
            f"{site.url}/chat",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type,x-api-key",
            },
        )

    origin = f"http://127.0.0.1:{DOCS_SITE_PORT}"
    allowed = preflight(origin)
    assert allowed.headers.get("access-control-allow-origin") == origin
    refused = preflight("https://evil.example")
    assert "access-control-allow-origin" not in refused.headers


def test_metrics_after_a_scripted_session(site: Any) -> None:
    with site.client(headers={"X-API-Key": "user-test-key"}) as client:
        client.post("/chat", json={"question": "How do I configure rate limits?"})
    with site.client() as client:
        assert client.get("/metrics").status_code == 401
        body = client.get("/metrics", headers={"Authorization": f"Bearer {ADMIN_KEY}"}).text
    lines = [line for line in body.splitlines() if not line.startswith("#")]

    def value(prefix: str) -> float:
        return sum(float(line.rsplit(" ", 1)[1]) for line in lines if line.startswith(prefix))

    assert value('docent_requests_total{route="/chat",status="200"}') >= 1
    assert value('docent_rate_limited_total{route="chat"}') >= 1  # the page's fourth question
    assert value("docent_stream_seconds_count") >= 1
    assert value("docent_time_to_first_token_seconds_count") >= 1
    assert value('docent_tokens_total{kind="completion",model="extractive"}') > 0
    assert value("docent_open_streams") == 0
    assert "docent_estimated_cost_usd_total" in body


@pytest.mark.parametrize(
    ("body_limit", "histories"), [(256 * 1024, [0, 2, 4]), (4096, [0, 2, 0, 4, 0])]
)
def test_a_long_answer_does_not_lock_the_conversation(
    browser: Any,
    tmp_path: Path,
    standin: tuple[str, StandIn],
    body_limit: int,
    histories: list[int],
) -> None:
    """An answer over 8,000 characters goes into the page's history; later questions still
    get answers (they got a 422 on `history.content` when the widget sent it back whole). On a
    server with a small body limit, a 413 on the history is asked again without it."""
    url, state = standin
    state.answer = "Limits apply per key and per address [S1]. " * 220  # 9,460 characters
    with running_docent(
        tmp_path,
        openai_base_url=url,
        openai_api_key="test",
        embedding_provider="none",
        max_chat_body_bytes=body_limit,
    ) as docent:
        docent.ingest(corpus_documents())
        browser.get(docent.url + "/")
        root = wait_for(lambda: shadow(browser), what="the widget")
        browser.execute_script(
            "window.sentBodies = []; const send = window.fetch;"
            "window.fetch = function (url, init) {"
            "  if (init && init.body) window.sentBodies.push(init.body);"
            "  return send.apply(this, arguments); };"
        )
        finals = []
        for question in ("How do rate limits work?", "And for keys?", "And for admins?"):
            seen = browser.execute_async_script(ASK_AND_RECORD, question)
            finals.append(seen[-1][0] if seen else None)
        lengths = browser.execute_script(
            f"return [...{ROOT_JS}.querySelectorAll('.a')].map(a => a.textContent.length)"
        )
        failures = root.find_elements("css selector", ".notice.fail")
        chat_requests = len(state.chat_requests)
        bodies = [json.loads(body) for body in browser.execute_script("return window.sentBodies")]

    assert finals == ["done", "done", "done"]
    assert min(lengths) > 8000
    assert failures == []
    assert chat_requests >= 3  # every question reached the model
    # What the widget sent: every turn within what the API accepts (8000), answers cut shorter.
    turns = [turn for body in bodies for turn in body["history"]]
    assert [len(body["history"]) for body in bodies] == histories
    assert all(len(t["content"]) <= 4000 for t in turns if t["role"] == "assistant")
