"""axe-core (npm, from the widget's lock file) run in a Selenium-driven page: the accessibility
check of the chat page, the widget and the admin page.

`serious_violations(driver)` injects axe.min.js (through WebDriver, so a page's CSP does not
block it), runs it over the whole document, open shadow roots included, and returns the
violations of impact serious or critical as short dicts (rule id, impact, help, failing nodes).
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
BAD = ("serious", "critical")


@functools.cache
def axe_source() -> str:
    """axe.min.js from the widget's npm dependencies (installed into the cache on first use)."""
    node_modules = subprocess.run(
        [str(ROOT / "scripts" / "build_widget.sh"), "--deps"],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    ).stdout.strip()
    return (Path(node_modules) / "axe-core" / "axe.min.js").read_text()


RUN = """
const done = arguments[arguments.length - 1];
axe.run(document, {resultTypes: ['violations']})
  .then(r => done(r.violations.map(v => ({
     id: v.id, impact: v.impact, help: v.help,
     nodes: v.nodes.map(n => ({target: n.target, summary: n.failureSummary}))}))))
  .catch(e => done([{id: 'axe-error', impact: 'critical', help: String(e), nodes: []}]));
"""


def violations(driver: Any) -> list[dict[str, Any]]:
    """Every axe violation in the current page (all impacts)."""
    if not driver.execute_script("return typeof window.axe !== 'undefined'"):
        driver.execute_script(axe_source())
    return list(driver.execute_async_script(RUN))


def serious_violations(driver: Any) -> list[dict[str, Any]]:
    """The violations of impact serious or critical: what a page must not have."""
    return [v for v in violations(driver) if v["impact"] in BAD]
