"""The built leaderboard in a real headless Chromium (Debian's `chromium` package), driven over the
DevTools protocol on a pipe (`--remote-debugging-pipe`: no extra Python package, no open port).

Checks that the page loads from file:// with JS running, tables and plots render, clicking a column
header (a real mouse event at the header's position) sorts the table, a protocol is one click away,
and user text never executes. Keeps a full-page screenshot in tmp and in `test-artifacts/`.
"""

from __future__ import annotations

import base64
import json
import math
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from t2ibench.leaderboard.site import build_site
from t2ibench.store import ResultRow, ResultsStore

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("T2IBENCH_CHROMIUM") or next(
    (shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="chromium is not installed (apt-get install -y chromium, or set T2IBENCH_CHROMIUM)")

XSS_RUN = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>"
TIMEOUT_S = 60.0


class Chromium:
    """A headless Chromium and one page, spoken to in CDP JSON messages separated by NUL bytes."""

    def __init__(self, profile: Path):
        import fcntl

        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def wire_fds() -> None:  # in the child: its fd 3 reads our commands, fd 4 carries its replies
            a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
            b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
            os.dup2(a, 3)
            os.dup2(b, 4)
            os.set_inheritable(3, True)
            os.set_inheritable(4, True)

        self.proc = subprocess.Popen(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", "--remote-debugging-pipe", f"--user-data-dir={profile}", "about:blank"],
            preexec_fn=wire_fds, close_fds=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buf, self._id, self.events = b"", 0, []
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.session = self.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Page.enable", "Runtime.enable"):
            self.page(domain)

    def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._id += 1
        msg = {"id": self._id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            while b"\0" not in self._buf:
                ready, _, _ = select.select([self._from_chrome], [], [], max(0.0, deadline - time.monotonic()))
                if not ready:
                    raise TimeoutError(f"chromium did not answer {method}")
                chunk = os.read(self._from_chrome, 1 << 20)
                if not chunk:
                    raise RuntimeError("chromium closed the pipe")
                self._buf += chunk
            raw, self._buf = self._buf.split(b"\0", 1)
            reply = json.loads(raw)
            if reply.get("id") == self._id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply["result"]
            self.events.append(reply)

    def page(self, method: str, params: dict | None = None) -> dict:
        return self.send(method, params, self.session)

    def js(self, expression: str):  # noqa: ANN201
        res = self.page("Runtime.evaluate", {"expression": expression, "returnByValue": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait_for(self, expression: str) -> None:
        deadline = time.monotonic() + TIMEOUT_S
        while not self.js(expression):
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never satisfied: {expression}")
            time.sleep(0.05)

    def click(self, selector: str) -> None:
        """A trusted mouse click at the centre of the element, as a user's would be."""
        rect = self.js(f"(() => {{ const e = document.querySelector({json.dumps(selector)}); "
                       "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect(); "
                       "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        x, y = rect
        for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
            self.page("Input.dispatchMouseEvent", {"type": kind, "x": x, "y": y, "button": "left", "clickCount": 1})

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (RuntimeError, TimeoutError, OSError):
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def _rows(store: ResultsStore) -> None:
    man = {"prompts": {"name": "tifa-v1", "sha256": "aa"}, "sampler": "ddim", "steps": 50, "cfg": 7.5}
    rows = []
    runs = [("alpha-s", 2e6), ("bravo-m", 8e6), ("charlie-l", 30e6), (XSS_RUN, 4e6), ("delta-xs", 1e6)]
    for run, params in runs:
        for step in (200, 400, 600, 800):
            v = 0.35 + 0.05 * math.log10(params / 1e6) + 0.08 * (1 - math.exp(-step / 300))
            rows.append(ResultRow(
                run=run, metric="tifa", version="tifa-1.0", value=v, n_items=64, variant="micro", family="unet",
                step=step, train_flops=params * 6 * 64 * step, params=int(params), gmacs=params / 2e6,
                categories={"color": v - 0.05, "counting": v - 0.15, "shape": v + 0.05, "spatial": v - 0.2},
                manifest_hash="proto-tifa-1", manifest=man, ckpt_hash=f"{abs(hash((run, step))):016x}",
                interval={"ci95": [v - 0.012, v + 0.011], "method": "bca", "n_resamples": 2000, "seed": 0}))
    store.add(rows)


def _column(b: Chromium, table: str, col: int) -> list[str]:
    return b.js(f"Array.from(document.querySelectorAll('#{table} tbody tr')).map(r => r.cells[{col}].textContent)")


def test_site_in_headless_chromium(tmp_path):
    store = ResultsStore(tmp_path / "db.sqlite")
    _rows(store)
    report = build_site(store, tmp_path / "site")
    browser = Chromium(tmp_path / "profile")
    try:
        browser.page("Emulation.setDeviceMetricsOverride",
                     {"width": 1280, "height": 1000, "deviceScaleFactor": 1, "mobile": False})
        browser.page("Page.navigate", {"url": report.index.resolve().as_uri()})
        browser.wait_for("document.readyState === 'complete' && document.documentElement.dataset.js === 'ready'")

        # tables and plots render
        assert browser.js("document.querySelectorAll('table.sortable').length") == 1
        n_imgs = browser.js("document.querySelectorAll('figure img').length")
        assert n_imgs == len(report.plots) >= 6
        browser.js("document.querySelectorAll('figure img').forEach(i => i.loading = 'eager')")
        browser.wait_for("Array.from(document.querySelectorAll('figure img')).every(i => i.complete)")
        assert browser.js("Array.from(document.querySelectorAll('figure img')).filter(i => i.naturalWidth > 100)"
                          ".length") == n_imgs

        # user text is shown as text and never runs
        assert browser.js("window.__pwned === undefined")
        assert XSS_RUN in _column(browser, "tbl-0", 1)

        # ranked by value (best first) when built
        values = [float(v.split()[0]) for v in _column(browser, "tbl-0", 8)]
        assert values == sorted(values, reverse=True)
        assert all(re.fullmatch(r"[\d.]+ \[[\d.]+, [\d.]+\]", v) for v in _column(browser, "tbl-0", 8))

        # clicking the Run header sorts by name, clicking again reverses
        runs = _column(browser, "tbl-0", 1)
        browser.click('#tbl-0 th[data-key="run"]')
        assert _column(browser, "tbl-0", 1) == sorted(runs, key=str.lower)
        assert browser.js("document.querySelector('#tbl-0 th[data-key=\"run\"]').getAttribute('aria-sort')") \
            == "ascending"
        browser.click('#tbl-0 th[data-key="run"]')
        assert _column(browser, "tbl-0", 1) == sorted(runs, key=str.lower, reverse=True)

        # numeric sort on params: first click largest first, second click smallest first
        browser.click('#tbl-0 th[data-key="params"]')
        params = [float(v) for v in _column(browser, "tbl-0", 6)]
        assert params == sorted(params, reverse=True) and params[0] > params[-1]
        browser.click('#tbl-0 th[data-key="params"]')
        assert [float(v) for v in _column(browser, "tbl-0", 6)] == sorted(params)

        # the protocol behind a number is one click away
        assert browser.js("document.querySelector('#tbl-0 td.proto details').open") is False
        browser.click("#tbl-0 td.proto summary")
        assert browser.js("document.querySelector('#tbl-0 td.proto details').open") is True
        assert '"sampler": "ddim"' in browser.js("document.querySelector('#tbl-0 td.proto pre').textContent")
        browser.click("#tbl-0 td.proto summary")  # close it again for the screenshot

        interactive_png = _interactive_charts(browser)
        assert browser.js("window.__pwned === undefined")  # the run name reached Plotly as text too
        assert not [e for e in browser.events if e.get("method") == "Runtime.exceptionThrown"]

        browser.js("window.scrollTo(0, 0)")
        shot = browser.page("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True})
        png = base64.b64decode(shot["data"])
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    finally:
        browser.close()
    (tmp_path / "leaderboard.png").write_bytes(png)
    artifacts = REPO / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    (artifacts / "leaderboard.png").write_bytes(png)
    (artifacts / "leaderboard-interactive.png").write_bytes(interactive_png)


def _point_on_screen(b: Chromium, chart: str, trace: int, point: int) -> list[float]:
    """Viewport position of a data point, from the chart's own axes (Plotly's d2p)."""
    return b.js(f"""(() => {{ const gd = document.getElementById({json.dumps(chart)});
        gd.scrollIntoView({{block: 'center'}});
        const fl = gd._fullLayout, t = gd._fullData[{trace}], r = gd.getBoundingClientRect();
        return [r.left + fl.xaxis._offset + fl.xaxis.d2p(t.x[{point}]),
                r.top + fl.yaxis._offset + fl.yaxis.d2p(t.y[{point}])]; }})()""")


def _interactive_charts(b: Chromium) -> bytes:
    """The bundled Plotly charts: a real mouse hover shows run, step, value and the 95% interval;
    a real click on a legend entry hides that run (and its predicted continuation); zoom is on."""
    b.wait_for("document.documentElement.dataset.charts === 'ready'")
    assert b.js("typeof Plotly") == "object"  # the bundled file, loaded from file:// (no network in the test)
    chart = "g0-step"
    names = b.js(f"document.getElementById('{chart}')._fullData.map(t => t.name)")
    trace = names.index("charlie-l")
    x, y = _point_on_screen(b, chart, trace, 2)
    b.page("Input.dispatchMouseEvent", {"type": "mouseMoved", "x": x, "y": y})
    b.wait_for(f"document.querySelector('#{chart} .hoverlayer .hovertext') !== null")
    tip = b.js(f"document.querySelector('#{chart} .hoverlayer .hovertext').textContent")
    row = b.js(f"(() => {{ const t = document.getElementById('{chart}')._fullData[{trace}]; "
               "return [t.x[2], t.y[2], t.customdata[2][0]]; })()")
    assert "charlie-l" in tip and f"step {row[0]}" in tip and f"value {row[1]:.4f}" in tip
    assert f"95% interval {row[2]}" in tip and re.search(r"\[0\.\d{4}, 0\.\d{4}\]", tip)
    shot = b.page("Page.captureScreenshot", {"format": "png"})  # the viewport, tooltip showing

    # legend click: the run (and its dashed prediction, same legend group) is hidden
    b.js(f"document.getElementById('{chart}').scrollIntoView({{block: 'center'}})")
    legend_idx = [n for n in names if "(predicted)" not in n].index("charlie-l")
    lx, ly = b.js(f"(() => {{ const e = document.querySelectorAll('#{chart} .legend .traces')[{legend_idx}]"
                  ".querySelector('.legendtoggle'); const r = e.getBoundingClientRect(); "
                  "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
    for kind in ("mouseMoved", "mousePressed", "mouseReleased"):
        b.page("Input.dispatchMouseEvent", {"type": kind, "x": lx, "y": ly, "button": "left", "clickCount": 1})
    b.wait_for(f"document.getElementById('{chart}')._fullData[{trace}].visible === 'legendonly'")
    hidden = b.js(f"document.getElementById('{chart}')._fullData.filter(t => t.visible === 'legendonly')"
                  ".map(t => t.name)")
    assert set(hidden) == {"charlie-l", "charlie-l (predicted)"}
    others = b.js(f"document.getElementById('{chart}')._fullData.filter(t => !t.name.startsWith('charlie'))"
                  ".every(t => t.visible === true)")
    assert others
    assert b.js("document.getElementById('g0-flops')._fullLayout.xaxis.type") == "log"
    assert b.js("document.getElementById('g0-flops')._fullLayout.dragmode") == "zoom"
    return base64.b64decode(shot["data"])
