"""The widget's rendering, safety, conversation, feedback, accessibility and build, in Debian
Chromium (Selenium, with Chrome's performance log for what the browser sent) against the bundled
app, whose model is the OpenAI-compatible stand-in streaming the answers set here."""

from __future__ import annotations

import gzip
import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import corpus_documents, running_docent, serve
from tests.support.axe import serious_violations
from tests.support.servers import free_port
from tests.support.standins import StandIn
from tests.test_browser import ARTIFACTS, ROOT_JS, shadow, start_chromium, wait_for

ROOT = Path(__file__).resolve().parents[1]
BUNDLE = ROOT / "functions" / "web" / "static" / "widget.js"
DOCS_PORT = free_port()
DOCS = f"http://127.0.0.1:{DOCS_PORT}"  # the docs site: the sources' host, and an embedding page

MARKDOWN = f"""## Rate limits

Docent limits each client **per key** and per address [S1]. The [guide]({DOCS}/guide) has more.

- Anonymous visitors: `10/60s`
- API keys: `100/60s`

| tier | limit |
| --- | --- |
| anonymous | 10/60s |
| key | 100/60s |

```bash
export RATE_LIMIT_ANON=20/60s
```

That is all [S1].
"""

HOSTILE = f"""# Setup <script>window.pwned = 'heading'</script>

<script>window.pwned = 'script'</script>
<img src="x" onerror="window.pwned = 'img'">
<svg onload="window.pwned = 'svg'"></svg>
<iframe srcdoc="<script>parent.pwned = 'iframe'</script>"></iframe>
<a href="javascript:window.pwned = 'a'">raw link</a>
<details open ontoggle="window.pwned = 'details'">details</details>
<form action="https://evil.example/"><button>go</button></form>
<style>*{{display:none}}</style>

Click [here](javascript:window.pwned='md') or [there](JaVaScRiPt:window.pwned='case')
or [data](data:text/html;base64,PHNjcmlwdD5wYXJlbnQucHduZWQ9MTwvc2NyaXB0Pg==)
or [angle](<javascript:window.pwned='angle'>) or <javascript:window.pwned='auto'>
or [ref][r] or [entity](&#106;avascript:window.pwned='entity')
or [evil](https://evil.example/login) or [creds](http://127.0.0.1:{DOCS_PORT}@evil.example/)
or [relative](/admin) or [proto](//evil.example/x).

![pixel]({DOCS}/pixel.png?md) <img src="{DOCS}/pixel.png?raw">

[r]: javascript:window.pwned='ref'

The real guide is [here]({DOCS}/guide) [S1].
"""


class DocsSite:
    """The other origin: static pages that embed the widget, and a pixel that counts its loads."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.pixel_hits = 0
        self.feedback_status = 204  # what this site's /api/feedback answers (a fault injector)

    def page(
        self, name: str, api: str, attributes: str = "", script: bool = True, src: str = ""
    ) -> str:
        tag = f'<script src="{src or api}/widget.js" data-api="{api}" {attributes} defer></script>'
        (self.folder / name).write_text(
            "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Docs</title>"
            "<meta name='viewport' content='width=device-width, initial-scale=1'>"
            "</head><body><main><h1>My docs</h1><p>Some documentation.</p></main>"
            f"{tag if script else ''}</body></html>"
        )
        return f"{DOCS}/{name}"

    def app(self) -> Any:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import Response
        from starlette.routing import Mount, Route
        from starlette.staticfiles import StaticFiles

        async def pixel(request: Request) -> Response:
            self.pixel_hits += 1
            return Response(b"GIF89a", media_type="image/gif")

        async def feedback(request: Request) -> Response:
            return Response(status_code=self.feedback_status, headers={"Retry-After": "30"})

        return Starlette(
            routes=[
                Route("/pixel.png", pixel),
                Route("/api/feedback", feedback, methods=["POST"]),
                Mount("/", StaticFiles(directory=self.folder, html=True)),
            ]
        )


@pytest.fixture(scope="module")
def docs(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocsSite]:
    site = DocsSite(tmp_path_factory.mktemp("docs"))
    with serve(site.app(), port=DOCS_PORT):
        yield site


@pytest.fixture(scope="module")
def site(
    tmp_path_factory: pytest.TempPathFactory, _standin_server: tuple[str, StandIn], docs: DocsSite
) -> Iterator[Any]:
    """The bundled app answering with the stand-in model; its sources live on the docs site."""
    url, _ = _standin_server
    with running_docent(
        tmp_path_factory.mktemp("widget"),
        openai_base_url=url,
        openai_api_key="test",
        embedding_provider="none",
        cors_allow_origins=(DOCS,),
        insights="on",
    ) as docent:
        documents = [
            {**d, "url": f"{DOCS}/{d['id'].removesuffix('.md')}"} for d in corpus_documents()
        ]
        hostile = {
            "id": "hostile.md",
            "title": "<img src=x onerror=\"window.pwned='title'\"> Setup",
            "text": HOSTILE,
            "format": "markdown",
            "url": f"{DOCS}/hostile",
        }
        docent.ingest([*documents, hostile])
        yield docent


@pytest.fixture(scope="module")
def chrome(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    driver = start_chromium(tmp_path_factory.mktemp("chromium"), performance_log=True)
    driver.execute_cdp_cmd("Network.enable", {})
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def browser(chrome: Any) -> Iterator[Any]:
    """The module's Chromium, back to light mode, a desktop viewport and an unblocked network."""
    chrome.get_log("performance")  # drop what earlier tests left
    yield chrome
    chrome.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})
    chrome.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    chrome.execute_cdp_cmd("Network.setBlockedURLs", {"urls": []})


@pytest.fixture
def model(standin: tuple[str, StandIn]) -> StandIn:
    return standin[1]


def network(driver: Any) -> list[dict[str, Any]]:
    """The DevTools network events logged since the last call."""
    events = [json.loads(entry["message"])["message"] for entry in driver.get_log("performance")]
    return [e for e in events if e["method"].startswith("Network.")]


def sent(events: list[dict[str, Any]], path: str) -> list[dict[str, Any]]:
    """The requests to `path` (any origin), each {url, method, body (parsed JSON or None)}."""
    out = []
    for event in events:
        if event["method"] != "Network.requestWillBeSent":
            continue
        request = event["params"]["request"]
        if request["url"].split("?")[0].endswith(path) and request["method"] != "OPTIONS":
            data = request.get("postData")
            body = json.loads(data) if data else None
            out.append({"url": request["url"], "method": request["method"], "body": body})
    return out


def ask(driver: Any, question: str, timeout: float = 20) -> str:
    """Type a question into the open widget and wait for its answer to settle; its state."""
    driver.execute_script(
        f"const root = {ROOT_JS}; root.querySelector('#docent-q').value = arguments[0];"
        "root.querySelector('form.ask').requestSubmit();",
        question,
    )
    return str(
        wait_for(
            lambda: driver.execute_script(
                f"const a = [...{ROOT_JS}.querySelectorAll('.a')].pop();"
                "const s = a && a.getAttribute('data-state');"
                "return ['done', 'error', 'stopped'].includes(s) && s"
            ),
            timeout,
            "the answer",
        )
    )


def stored_turns(driver: Any, api: str) -> list[dict[str, Any]]:
    raw = driver.execute_script(
        "return sessionStorage.getItem(arguments[0])", f"docent-widget:{api}"
    )
    return list(json.loads(raw or "[]"))


def open_page(driver: Any, url: str) -> Any:
    driver.get(url)
    driver.execute_script("sessionStorage.clear()")
    driver.get(url)
    return wait_for(lambda: shadow(driver), what="the widget")


# What the answer showed at every DOM change while it streamed: its text, whether the first
# block (the heading) is still the node it was once a second block followed it.
RECORD = """
const root = __ROOT__;
window.seen = [];
const observer = new MutationObserver(() => {
  const a = [...root.querySelectorAll('.a')].pop();
  if (!a) return;
  if (a.children.length >= 2 && !window.firstBlock) window.firstBlock = a.children[0];
  window.seen.push({state: a.getAttribute('data-state'), text: a.textContent,
                    kept: !window.firstBlock || a.children[0] === window.firstBlock});
});
observer.observe(root, {subtree: true, childList: true, characterData: true, attributes: true});
""".replace("__ROOT__", ROOT_JS)


@pytest.mark.browser
def test_a_streamed_markdown_answer_renders_with_a_copy_button(
    browser: Any, site: Any, model: StandIn
) -> None:
    model.answer = MARKDOWN
    model.token_interval_s = 0.03
    root = open_page(browser, site.url + "/")
    browser.execute_script(RECORD)
    assert ask(browser, "How do I configure rate limits?") == "done"

    answer = root.find_elements("css selector", ".a")[-1]
    tags = browser.execute_script(
        "return [...arguments[0].querySelectorAll('*')].map(e => e.tagName.toLowerCase())", answer
    )
    assert {"h2", "strong", "ul", "li", "code", "table", "th", "td", "pre"} <= set(tags)
    assert answer.find_element("css selector", "h2").text == "Rate limits"
    cells = [td.text for td in answer.find_elements("css selector", "td")]
    assert cells == ["anonymous", "10/60s", "key", "100/60s"]
    guide = answer.find_element("css selector", "a:not(.cite)")
    assert guide.get_attribute("href") == f"{DOCS}/guide"
    assert guide.get_attribute("rel") == "noopener noreferrer nofollow"
    cites = answer.find_elements("css selector", "a.cite[data-cite=S1]")
    assert len(cites) == 2 and cites[0].get_attribute("href").startswith(DOCS)

    # Progressive and stable: many intermediate renderings, none showing raw markdown (a table
    # as pipes, `**`, backticks, `[S1`), and the heading never rebuilt once the next block began.
    seen = browser.execute_script("return window.seen")
    streaming = [s for s in seen if s["state"] == "streaming"]
    assert len({s["text"] for s in streaming}) >= 10
    for shown in streaming:
        assert not any(mark in shown["text"] for mark in ("|", "**", "`", "[S", "](", "##")), shown
    assert all(s["kept"] for s in seen)
    assert browser.execute_script(
        "return [...arguments[0].children][0] === window.firstBlock", answer
    )

    # The copy button copies the code block's text to the clipboard.
    browser.execute_cdp_cmd(
        "Browser.grantPermissions",
        {"origin": site.url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]},
    )
    button = answer.find_element("css selector", ".code button.copy")
    button.click()
    wait_for(lambda: button.get_attribute("data-copied") == "true", what="the copy")
    assert button.text == "Copied"
    clipboard = browser.execute_async_script(
        "const done = arguments[0];"
        "navigator.clipboard.readText().then(done, e => done('error: ' + e))"
    )
    assert clipboard == "export RATE_LIMIT_ANON=20/60s\n"


@pytest.mark.browser
def test_a_hostile_document_runs_no_script_loads_no_image_and_links_nowhere_else(
    browser: Any, site: Any, docs: DocsSite, model: StandIn
) -> None:
    """The document is ingested and the model echoes it (as an injected model would), on a host
    page without CSP: the widget's sanitising is all that stands between it and the page."""
    model.answer = HOSTILE
    url = docs.page("hostile.html", site.url, 'data-key="user-test-key"')
    root = open_page(browser, url)
    root.find_element("css selector", ".launcher").click()
    hits_before = docs.pixel_hits
    assert ask(browser, "How do I set up the hostile page?") == "done"
    time.sleep(1)  # time for an image's onerror or an iframe's script, were there any

    received = stored_turns(browser, site.url)[-1]["text"]
    # The hostile constructs did reach the browser (the server's filters keep raw HTML text):
    for construct in ("<script>", "onerror=", "javascript:", "<iframe", "<svg", "ontoggle"):
        assert construct in received, construct

    assert browser.execute_script("return window.pwned") is None
    tags = set(
        browser.execute_script(
            "return [...arguments[0].querySelectorAll('.turn *')].map(e => e.tagName)", root
        )
    )
    assert not tags & {"SCRIPT", "IMG", "SVG", "IFRAME", "STYLE", "DETAILS", "OBJECT", "EMBED"}
    assert root.find_elements("css selector", ".a form, .a button:not(.copy), .a input") == []
    handlers = browser.execute_script(
        "return [...arguments[0].querySelectorAll('*')].flatMap(e => [...e.attributes]"
        ".filter(a => a.name.startsWith('on') || /script:|data:/i.test(a.value))"
        ".map(a => e.tagName + ' ' + a.name + '=' + a.value))",
        root,
    )
    assert handlers == []
    hrefs = browser.execute_script(
        "return [...arguments[0].querySelectorAll('[href]')].map(a => a.href)", root
    )
    assert hrefs and all(h.startswith(f"{DOCS}/") for h in hrefs), hrefs
    assert f"{DOCS}/guide" in hrefs  # the one honest link stays

    requests = [e["params"] for e in network(browser) if e["method"] == "Network.requestWillBeSent"]
    assert [r["request"]["url"] for r in requests if r.get("type") == "Image"] == []
    assert not [r for r in requests if "evil.example" in r["request"]["url"]]
    assert docs.pixel_hits == hits_before

    # The control: the same text put into the page unsanitised does run (the flag can be set).
    browser.execute_script(
        "const box = document.createElement('div'); box.innerHTML = arguments[0];"
        "document.body.append(box);",
        received,
    )
    assert wait_for(lambda: browser.execute_script("return window.pwned"), 5, "the control")


@pytest.mark.browser
def test_follow_ups_send_history_and_the_conversation_survives_navigation(
    browser: Any, site: Any, model: StandIn
) -> None:
    model.answer = "Limits are **per key** [S1]."
    open_page(browser, site.url + "/")
    assert ask(browser, "How do rate limits work?") == "done"
    assert ask(browser, "And for keys?") == "done"
    bodies = [r["body"] for r in sent(network(browser), "/chat")]
    assert [len(b["history"]) for b in bodies] == [0, 2]
    assert bodies[1]["history"][0] == {"role": "user", "content": "How do rate limits work?"}
    assert bodies[1]["history"][1]["role"] == "assistant"
    assert "per key" in bodies[1]["history"][1]["content"]

    # Another page load on the same site: the conversation is back, rendered, and continues.
    browser.get(site.url + "/")
    root = wait_for(lambda: shadow(browser), what="the widget")
    wait_for(lambda: len(root.find_elements("css selector", ".turn")) == 2, what="the turns")
    assert root.find_elements("css selector", ".a strong")[0].text == "per key"
    assert ask(browser, "And for admins?") == "done"
    assert [len(r["body"]["history"]) for r in sent(network(browser), "/chat")] == [4]


@pytest.mark.browser
def test_stop_aborts_the_stream_within_a_second_and_new_conversation_clears_it(
    browser: Any, site: Any, model: StandIn
) -> None:
    model.answer = "Rate limits apply per key and per address [S1]. " * 40
    model.token_interval_s = 0.05  # about 18 s of answer
    root = open_page(browser, site.url + "/")
    assert ask(browser, "How do rate limits work?", timeout=40) == "done"

    browser.execute_script(
        f"const root = {ROOT_JS}; root.querySelector('#docent-q').value = 'And keys?';"
        "root.querySelector('form.ask').requestSubmit();"
    )
    answers = root.find_elements("css selector", ".a")
    assert len(answers) == 2
    wait_for(lambda: len(answers[1].text) > 40, what="the stream")
    stop = root.find_element("css selector", "button.stop")
    assert stop.is_displayed()
    stop.click()
    clicked = time.monotonic()
    wait_for(lambda: answers[1].get_attribute("data-state") == "stopped", 1.0, "the stop")
    wait_for(lambda: model.disconnected, 1.0, "the model's stream to be closed")
    stopped_at = time.monotonic() - clicked
    shown = answers[1].text
    time.sleep(0.5)
    assert answers[1].text == shown  # nothing more arrives
    assert not root.find_element("css selector", "button.stop").is_displayed()
    assert "Stopped." in root.find_elements("css selector", ".turn")[1].text
    assert stopped_at < 1.0

    # New conversation: the log and the stored conversation are cleared; no history is sent.
    model.token_interval_s = 0
    network(browser)
    root.find_element("css selector", "button.new").click()
    assert root.find_elements("css selector", ".turn") == []
    assert stored_turns(browser, site.url) == []
    assert ask(browser, "What is Docent?") == "done"
    assert [r["body"]["history"] for r in sent(network(browser), "/chat")] == [[]]


@pytest.mark.browser
def test_feedback_sends_the_answers_request_id(browser: Any, site: Any, model: StandIn) -> None:
    model.answer = "Limits are per key [S1]."
    root = open_page(browser, site.url + "/")
    assert ask(browser, "How do rate limits work?") == "done"
    events = network(browser)
    chat_ids = [
        {k.lower(): v for k, v in e["params"]["response"]["headers"].items()}.get("x-request-id")
        for e in events
        if e["method"] == "Network.responseReceived"
        and e["params"]["response"]["url"].endswith("/chat")
    ]
    request_id = stored_turns(browser, site.url)[-1]["requestId"]
    assert request_id and chat_ids == [request_id]

    box = root.find_element("css selector", ".feedback")
    box.find_element("css selector", ".rate.down").click()
    wait_for(lambda: box.get_attribute("data-status"), what="the feedback response")
    assert box.find_element("css selector", ".rate.down").get_attribute("aria-pressed") == "true"
    posts = sent(network(browser), "/feedback")
    assert [p["body"] for p in posts] == [{"request_id": request_id, "rating": "down"}]
    assert box.get_attribute("data-status") == "204"
    comment = box.find_element("css selector", "form.comment textarea")
    comment.send_keys("It missed the per-address limit.")
    box.find_element("css selector", "form.comment button").click()
    wait_for(lambda: "Thanks" in box.text, what="the thanks")
    assert sent(network(browser), "/feedback")[0]["body"] == {
        "request_id": request_id,
        "rating": "down",
        "comment": "It missed the per-address limit.",
    }
    # The owner sees it: the answer rated down, with the visitor's comment (INSIGHTS=on here).
    with site.admin() as admin:
        insights = admin.get("/insights").json()
    assert {
        "request_id": request_id,
        "question": "How do rate limits work?",
        "comment": "It missed the per-address limit.",
    }.items() <= next(d for d in insights["rated_down"] if d["request_id"] == request_id).items()

    # The network fails: a small notice, and the widget goes on answering.
    browser.execute_cdp_cmd("Network.setBlockedURLs", {"urls": ["*/feedback"]})
    box.find_element("css selector", ".rate.up").click()
    wait_for(lambda: box.get_attribute("data-status") == "0", what="the failed feedback")
    assert "could not be sent" in box.text
    assert ask(browser, "And for keys?") == "done"
    assert not root.find_elements("css selector", ".notice.fail")


def shows_status(box: Any, status: int) -> Any:
    return lambda: box.get_attribute("data-status") == str(status)


@pytest.mark.browser
def test_feedback_refusals_show_a_notice_and_the_widget_goes_on(
    browser: Any, site: Any, docs: DocsSite
) -> None:
    """An API that refuses feedback (injected: the docs site's /api answers 404, 429, 500)."""
    api = f"{DOCS}/api"
    url = docs.page("faults.html", api, src=site.url)
    browser.get(url)
    turn = {"q": "How do limits work?", "text": "Per key [S1].", "state": "done", "requestId": "r1"}
    browser.execute_script(
        "sessionStorage.setItem(arguments[0], arguments[1])",
        f"docent-widget:{api}",
        json.dumps([turn, {**turn, "requestId": "r2"}]),
    )
    browser.get(url)  # the stored conversation comes back with its feedback buttons
    root = wait_for(lambda: shadow(browser), what="the widget")
    root.find_element("css selector", ".launcher").click()
    boxes = root.find_elements("css selector", ".feedback")
    assert len(boxes) == 2
    notes = {}
    for status, box, rating in (
        (429, boxes[0], "up"),
        (404, boxes[1], "down"),
        (500, boxes[0], "down"),
    ):
        docs.feedback_status = status
        box.find_element("css selector", f".rate.{rating}").click()
        wait_for(shows_status(box, status), what=f"the {status}")
        notes[status] = box.find_element("css selector", ".fb-note").text
    assert "Too many ratings" in notes[429]
    assert "can no longer be rated" in notes[404]
    assert "could not be sent" in notes[500]
    assert root.find_elements("css selector", "form.comment:not([hidden])") == []
    # Still usable: a new conversation, a question typed.
    root.find_element("css selector", "button.new").click()
    assert root.find_elements("css selector", ".turn") == []
    root.find_element("css selector", "#docent-q").send_keys("Next?")


@pytest.mark.browser
def test_the_floating_widget_by_keyboard_only(browser: Any, site: Any, docs: DocsSite) -> None:
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    root = open_page(browser, docs.page("keys.html", site.url))
    focused = f"const r = {ROOT_JS}; const e = r.activeElement; return e && (e.id || e.className)"
    ActionChains(browser).send_keys(Keys.TAB).perform()
    assert browser.execute_script(focused) == "launcher"
    ActionChains(browser).send_keys(Keys.ENTER).perform()
    assert root.find_element("css selector", ".panel").is_displayed()
    assert browser.execute_script(focused) == "docent-q"  # focus moves into the panel
    ActionChains(browser).send_keys("What is Docent?", Keys.ENTER).perform()
    wait_for(lambda: root.find_elements("css selector", ".a[data-state=done]"), what="the answer")
    log = root.find_element("css selector", ".log")
    assert log.get_attribute("aria-live") == "polite"
    ActionChains(browser).send_keys(Keys.ESCAPE).perform()
    assert not root.find_element("css selector", ".panel").is_displayed()
    assert browser.execute_script(focused) == "launcher"  # and back to the launcher


@pytest.mark.browser
def test_embedding_options_and_no_globals(browser: Any, site: Any, docs: DocsSite) -> None:
    bare = "const n = Object.getOwnPropertyNames(window); return n"
    mounted = "return !!document.querySelector('[data-docent-widget]')?.shadowRoot"
    browser.get(docs.page("bare.html", site.url, script=False))
    assert browser.execute_script(mounted) is False  # the same WebDriver calls on both pages
    before = set(browser.execute_script(bare))
    options = (
        'data-position="bottom-left" data-theme="light" data-accent="#0b6e4f" '
        'data-font="Georgia, serif" data-radius="4px" data-placeholder="Search the manual" '
        'data-greeting="Hello from the manual" data-title="Manual"'
    )
    browser.get(docs.page("options.html", site.url, options))
    wait_for(lambda: browser.execute_script(mounted), what="the widget")
    assert set(browser.execute_script(bare)) - before == set()
    root = shadow(browser)

    launcher = root.find_element("css selector", ".launcher")
    assert launcher.text == "Manual"
    assert launcher.rect["x"] < 40  # bottom-left
    assert launcher.value_of_css_property("background-color") == "rgba(11, 110, 79, 1)"
    launcher.click()
    panel = root.find_element("css selector", ".panel")
    assert panel.value_of_css_property("border-top-left-radius") == "4px"
    assert "Georgia" in panel.value_of_css_property("font-family")
    assert root.find_element("css selector", "#docent-q").get_attribute("placeholder") == (
        "Search the manual"
    )
    assert root.find_element("css selector", ".greeting").text == "Hello from the manual"

    # Dark by the visitor's preference (theme "auto"), or forced by data-theme="dark".
    light = panel.value_of_css_property("background-color")
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
    )
    assert panel.value_of_css_property("background-color") == light  # data-theme="light" wins
    root = open_page(browser, docs.page("auto.html", site.url))
    root.find_element("css selector", ".launcher").click()
    panel = root.find_element("css selector", ".panel")
    assert panel.value_of_css_property("background-color") == "rgba(28, 29, 34, 1)"


@pytest.mark.browser
@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_axe_finds_no_serious_violation_and_screenshots(
    browser: Any, site: Any, docs: DocsSite, model: StandIn, scheme: str
) -> None:
    model.answer = MARKDOWN
    ARTIFACTS.mkdir(exist_ok=True)
    browser.execute_cdp_cmd(
        "Emulation.setEmulatedMedia",
        {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
    )
    mobile = {"width": 390, "height": 844, "deviceScaleFactor": 1, "mobile": True}

    # The page, with an answer (headings, list, table, code, sources, feedback buttons).
    open_page(browser, site.url + "/")
    assert ask(browser, "How do I configure rate limits?") == "done"
    assert serious_violations(browser) == []
    browser.save_screenshot(str(ARTIFACTS / f"page-{scheme}.png"))
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", mobile)
    browser.save_screenshot(str(ARTIFACTS / f"page-mobile-{scheme}.png"))
    browser.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})

    # The floating widget, open, on another site.
    root = open_page(browser, docs.page("axe.html", site.url, 'data-title="Ask my docs"'))
    assert serious_violations(browser) == []  # closed
    root.find_element("css selector", ".launcher").click()
    assert ask(browser, "How do I configure rate limits?") == "done"
    assert serious_violations(browser) == []
    browser.save_screenshot(str(ARTIFACTS / f"widget-{scheme}.png"))
    browser.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", mobile)
    assert serious_violations(browser) == []
    browser.save_screenshot(str(ARTIFACTS / f"widget-mobile-{scheme}.png"))


def test_the_committed_bundle_is_the_build_of_the_lock_file(tmp_path: Path) -> None:
    """widget.js is rebuilt from widget/ and its lock file (npm ci, esbuild) byte for byte."""
    out = tmp_path / "widget.js"
    subprocess.run(
        [str(ROOT / "scripts" / "build_widget.sh"), "--out", str(out)], check=True, timeout=600
    )
    assert out.read_bytes() == BUNDLE.read_bytes(), "widget.js differs: run scripts/build_widget.sh"


def test_the_bundle_is_under_60_kb_gzipped() -> None:
    size = len(gzip.compress(BUNDLE.read_bytes(), compresslevel=9))
    assert size < 60 * 1024, size
