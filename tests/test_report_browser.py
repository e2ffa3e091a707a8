"""The report in a real headless browser (Debian's chromium, installed by .ci/run): it loads, with no console errors.

Skips when no chromium binary is on PATH. Chromium runs headless with its networking features off (without those
flags it keeps trying to reach the network).
"""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from tests.test_report import render

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]
# console messages chromium prints with --enable-logging=stderr --v=0: '...:INFO:CONSOLE:1] "Uncaught ...", source: ...'
CONSOLE = re.compile(r"CONSOLE[(:]\d+\)?\]|Uncaught", re.IGNORECASE)


def _chromium() -> str | None:
    return next((p for name in ("chromium", "chromium-browser", "google-chrome") if (p := shutil.which(name))), None)


@pytest.fixture
def chromium() -> str:
    binary = _chromium()
    if binary is None:
        pytest.skip("no chromium binary on PATH (apt-get install chromium; .ci/run does it)")
    return binary


def _run(binary: str, tmp_path, *args: str) -> subprocess.CompletedProcess:
    profile = tmp_path / "profile"
    cmd = [binary, *FLAGS, f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=60)


def test_report_loads_in_headless_chromium(chromium, tmp_path):
    html, results = render(tmp_path)
    page = (results / "report.html").resolve().as_uri()
    shot = tmp_path / "report.png"
    done = _run(chromium, tmp_path, "--window-size=1300,2400", f"--screenshot={shot}", page)
    assert done.returncode == 0, done.stderr[-2000:]
    assert shot.stat().st_size > 20_000  # a rendered page, not a blank one
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    console = [line for line in done.stderr.splitlines() if CONSOLE.search(line)]
    assert not console, console

    dom = _run(chromium, tmp_path, "--dump-dom", page)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert "Findings" in dom.stdout and 'id="headline-table"' in dom.stdout
    assert dom.stdout.count("data:image/png;base64,") == html.count("data:image/png;base64,") > 0
    assert not [line for line in dom.stderr.splitlines() if CONSOLE.search(line)]


# Appended to a copy of the report: the headline table's width against the page, written into the DOM.
MEASURE = """<script>
const t = document.getElementById("headline-table");
const out = document.createElement("pre"); out.id = "measured";
out.textContent = JSON.stringify({table: t.getBoundingClientRect().right, scroll: t.scrollWidth,
  client: t.clientWidth, page: document.documentElement.clientWidth, overflow: document.documentElement.scrollWidth});
document.body.appendChild(out);
</script>"""


def test_headline_table_fits_1300_px_without_horizontal_scrolling(chromium, tmp_path):
    import json

    html, results = render(tmp_path)
    page = results / "measured.html"
    page.write_text(html.replace("</body>", MEASURE + "</body>"))
    dom = _run(chromium, tmp_path, "--window-size=1300,2400", "--dump-dom", page.resolve().as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    measured = json.loads(re.search(r'<pre id="measured">(.*?)</pre>', dom.stdout).group(1).replace("&quot;", '"'))
    assert measured["table"] <= measured["page"], measured  # the table ends inside the page
    assert measured["overflow"] <= measured["page"], measured  # and nothing makes the page scroll sideways
    assert not [line for line in dom.stderr.splitlines() if CONSOLE.search(line)]


def test_console_errors_are_detected(chromium, tmp_path):
    """The check above would see a console error: a page that logs one is caught."""
    page = tmp_path / "bad.html"
    page.write_text('<html><body><script>console.error("boom"); undefinedFn();</script></body></html>')
    done = _run(chromium, tmp_path, "--dump-dom", page.as_uri())
    assert [line for line in done.stderr.splitlines() if CONSOLE.search(line)]
