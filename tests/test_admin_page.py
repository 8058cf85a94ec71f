"""The insights page (`/admin`) in headless Chromium (Debian's, through chromedriver) against the
bundled app: a scripted session of questions and feedback, then the owner types the key and
reads the figures; keyboard use, labels, contrast in both colour schemes, no key kept."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from docent.web import PAGE_CSP
from tests.conftest import ADMIN_KEY, USER_KEY, Docent, corpus_documents, running_docent
from tests.support.axe import serious_violations
from tests.test_browser import ARTIFACTS, browser, wait_for  # noqa: F401 (fixture)

pytestmark = pytest.mark.browser

ANSWERED = "How do I install Acme?"
UNANSWERED = "Can Acme run on a submarine? Write to jane@example.com"


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Docent]:
    """The bundled app with INSIGHTS=on, after three questions and two ratings."""
    with running_docent(tmp_path_factory.mktemp("admin"), insights="on") as docent:
        docent.ingest(corpus_documents())
        with docent.client(headers={"accept": "application/json"}) as client:
            ids = []
            for question in (ANSWERED, "how do I INSTALL acme", UNANSWERED):
                response = client.post("/chat", json={"question": question})
                assert response.status_code == 200, response.text
                ids.append(response.json()["request_id"])
            for request_id, rating, comment in (
                (ids[0], "up", None),
                (ids[1], "down", "Too short, no pip command"),
            ):
                rated = client.post(
                    "/feedback",
                    json={"request_id": request_id, "rating": rating, "comment": comment},
                )
                assert rated.status_code == 204, rated.text
        yield docent


def text(driver: Any, element_id: str) -> str:
    return str(driver.execute_script(f"return document.getElementById('{element_id}').innerText"))


def items(driver: Any, element_id: str) -> list[str]:
    return list(
        driver.execute_script(
            f"return [...document.querySelectorAll('#{element_id} li')].map(li => li.innerText)"
        )
    )


# Each visible text's contrast against the colour behind it (WCAG 2 relative luminance).
CONTRAST = """
function rgb(value) { return (value.match(/[\\d.]+/g) || []).map(Number); }
function luminance([r, g, b]) {
  const c = [r, g, b].map(v => {
    v /= 255;
    return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4;
  });
  return 0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2];
}
function background(el) {
  for (; el; el = el.parentElement) {
    const c = rgb(getComputedStyle(el).backgroundColor);
    if (c.length === 3 || (c.length === 4 && c[3] > 0)) return c.slice(0, 3);
  }
  return [255, 255, 255];
}
const failures = [];
let checked = 0;
for (const el of document.querySelectorAll('body *')) {
  const own = [...el.childNodes].some(n => n.nodeType === 3 && n.textContent.trim());
  if (!own || !el.getClientRects().length) continue;
  const style = getComputedStyle(el);
  if (style.visibility === 'hidden') continue;
  const fg = luminance(rgb(style.color)), bg = luminance(background(el));
  const ratio = (Math.max(fg, bg) + 0.05) / (Math.min(fg, bg) + 0.05);
  const size = parseFloat(style.fontSize), bold = Number(style.fontWeight) >= 700;
  const needed = size >= 24 || (bold && size >= 18.66) ? 3 : 4.5;
  checked += 1;
  if (ratio < needed) {
    failures.push([el.tagName, el.textContent.trim().slice(0, 40), ratio.toFixed(2)]);
  }
}
return [checked, failures];
"""


def test_the_admin_page_shows_the_sessions_insights(browser: Any, session: Docent) -> None:  # noqa: F811
    from selenium.webdriver.common.keys import Keys

    page = httpx.get(f"{session.url}/admin")
    assert page.status_code == 200 and page.headers["content-security-policy"] == PAGE_CSP
    assert page.headers["x-frame-options"] == "DENY"
    browser.get(session.url + "/admin")
    # Every control is labelled.
    unlabelled = browser.execute_script(
        "return [...document.querySelectorAll('input, select')]"
        ".filter(e => !e.labels || !e.labels.length).map(e => e.id)"
    )
    assert unlabelled == []
    # A wrong key, then a user key: refused, said so, the report stays hidden.
    field = browser.find_element("id", "key")
    field.send_keys("not-a-key", Keys.ENTER)
    wait_for(lambda: "refused" in text(browser, "status"), what="the refusal")
    field.send_keys(USER_KEY, Keys.ENTER)
    wait_for(lambda: "not an admin key" in text(browser, "status"), what="the 403")
    assert not browser.find_element("id", "report").is_displayed()

    # Keyboard only: the key typed, Tab to the period, Tab to the button, Enter.
    field.send_keys(ADMIN_KEY)
    field.send_keys(Keys.TAB)
    assert browser.switch_to.active_element.get_attribute("id") == "days"
    browser.switch_to.active_element.send_keys(Keys.TAB)
    button = browser.switch_to.active_element
    assert button.text == "Show insights"
    button.send_keys(Keys.ENTER)
    wait_for(lambda: browser.find_element("id", "report").is_displayed(), what="the report")
    # Focus moves to the report's heading; the key is gone from the field and from storage.
    assert browser.switch_to.active_element.get_attribute("id") == "report-title"
    assert browser.find_element("id", "key").get_attribute("value") == ""
    stored = browser.execute_script(
        "return [localStorage.length, sessionStorage.length, document.cookie, location.href]"
    )
    assert stored == [0, 0, "", session.url + "/admin"]

    assert text(browser, "total-questions") == "3"
    assert text(browser, "answered-share") == "67%"
    assert text(browser, "total-unanswered") == "1"
    assert text(browser, "total-up") == "1"
    assert text(browser, "total-down") == "1"
    assert items(browser, "top-questions")[0] == "how do i install acme (2 times)"
    assert items(browser, "gaps") == ["can acme run on a submarine write to [email] (1 time)"]
    (down,) = items(browser, "rated-down")
    assert down.startswith("how do I INSTALL acme") and "Too short, no pip command" in down
    most = browser.find_elements("css selector", "#most-cited a")
    assert most and most[0].get_attribute("href") == "https://docs.acme.test/install"
    today = browser.find_element("css selector", "#per-day tbody tr").text.split()
    assert today[1:] == ["3", "2", "1", "1"]
    assert "submarine" in text(browser, "gaps") and "jane" not in browser.page_source

    # Contrast (WCAG AA) in the light and the dark scheme.
    for scheme in ("light", "dark"):
        browser.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": scheme}]},
        )
        checked, failures = browser.execute_script(CONTRAST)
        assert checked > 30 and failures == [], (scheme, failures)
        assert serious_violations(browser) == [], scheme  # axe-core, as for the page and widget
        ARTIFACTS.mkdir(exist_ok=True)
        browser.save_screenshot(str(ARTIFACTS / f"admin-{scheme}.png"))
    browser.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})


def test_the_admin_page_erases_insights(browser: Any, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.keys import Keys

    with running_docent(tmp_path, insights="on") as docent:
        docent.ingest(corpus_documents())
        with docent.client(headers={"accept": "application/json"}) as client:
            assert client.post("/chat", json={"question": ANSWERED}).status_code == 200
        browser.get(docent.url + "/admin")
        browser.find_element("id", "key").send_keys(ADMIN_KEY, Keys.ENTER)
        wait_for(lambda: text(browser, "total-questions") == "1", what="one question")
        browser.find_element("id", "erase").send_keys(Keys.ENTER)
        wait_for(lambda: _alert(browser), what="the confirmation").accept()
        wait_for(lambda: "erased" in text(browser, "status") or
                 text(browser, "total-questions") == "0", what="the erase")  # fmt: skip
        wait_for(lambda: text(browser, "total-questions") == "0", what="zero questions")
        with docent.admin() as client:
            assert client.get("/insights").json()["totals"]["questions"] == 0


def _alert(driver: Any) -> Any:
    from selenium.common.exceptions import NoAlertPresentException

    try:
        return driver.switch_to.alert
    except NoAlertPresentException:
        return None
