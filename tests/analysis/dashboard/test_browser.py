"""The dashboard in Debian's Chromium (Playwright): a RUNNING study with two workers (driven through the store,
no training) whose completed count grows on the open study page without a reload; click through to a trial
and to the workers page; no script hidden in the study's, a parameter's, the metric's or a worker's name runs."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from hpsearch.analysis.dashboard import create_app, open_readonly_store
from hpsearch.store import Store

from .helpers import PAYLOAD, payload_study, run_one, two_workers

CHROMIUM = "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]  # fmt: skip


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def served(store: Store, db_url: str) -> Iterator[str]:
    import uvicorn

    readonly = open_readonly_store(db_url)
    port = _free_port()
    config = uvicorn.Config(create_app(readonly), host="127.0.0.1", port=port, log_level="warning", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)
    readonly.engine.dispose()


@pytest.mark.slow  # a live server driven in Chromium: among the suite's longest
def test_the_study_page_grows_live_and_links_through(store: Store, served: str, tmp_path: Path) -> None:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"{CHROMIUM} is missing (apt-get install chromium)")
    playwright = pytest.importorskip("playwright.sync_api")
    study = payload_study(store, trials=60)
    workers = two_workers(store)
    for worker in workers:
        run_one(store, study, worker)
    stop = threading.Event()

    def work() -> None:  # the two workers keep finishing trials while the page is open
        turn = 0
        while not stop.is_set() and run_one(store, study, workers[turn % 2]) is not None:
            turn += 1
            time.sleep(0.4)

    alerts: list[str] = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
        page.goto(f"{served}/studies/{quote(PAYLOAD, safe='')}")
        assert page.locator("h1").inner_text() == f"Study {PAYLOAD}"  # the name as text, not markup
        first = int(page.locator('[data-count="COMPLETED"]').inner_text())
        page.evaluate("window.__notReloaded = true")
        page.wait_for_selector("#f-history .main-svg")  # plotly drew the history
        thread = threading.Thread(target=work, daemon=True)
        thread.start()
        try:
            page.wait_for_function(
                f"Number(document.querySelector('[data-count=\"COMPLETED\"]').textContent) >= {first + 3}",
                timeout=30_000,
            )
        finally:
            stop.set()
            thread.join(10)
        assert page.evaluate("window.__notReloaded") is True  # updated in place
        page.screenshot(path=str(tmp_path / "study.png"), full_page=True)

        page.wait_for_selector("#trials-table tbody tr")
        assert PAYLOAD in page.locator("#trials-table tbody tr").first.inner_text()  # a parameter value, as text
        page.locator("#trials-table tbody tr a").first.click()
        page.wait_for_selector("#f-metrics .main-svg")
        assert page.locator("h1").inner_text() == f"Trial #0 of {PAYLOAD}"
        assert PAYLOAD in page.locator("#h-params").inner_text()
        page.screenshot(path=str(tmp_path / "trial.png"), full_page=True)

        page.locator("header a", has_text="Workers").click()
        page.wait_for_selector("#h-workers table")
        assert page.locator("#h-workers tbody tr").count() == 2
        assert f"{PAYLOAD}-0" in page.locator("#h-workers").inner_text()
        page.screenshot(path=str(tmp_path / "workers.png"), full_page=True)

        page.locator("header a", has_text="Studies").click()
        page.wait_for_selector("#h-studies table")
        page.screenshot(path=str(tmp_path / "studies.png"), full_page=True)
        browser.close()
    assert alerts == []  # no payload ran
    assert all((tmp_path / f"{name}.png").stat().st_size > 10_000 for name in ("study", "trial", "workers"))
