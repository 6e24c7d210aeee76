"""The dashboard in a real browser: Playwright driving Debian's Chromium on a 4-job sweep.

Never `playwright install` (it downloads a browser): .ci/run installs Debian's chromium.
Set GRADEXP_SCREENSHOTS=<dir> to keep the screenshots somewhere stable.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import tbkit

from gradexp.study.board import PINNED, pages

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
MISSING = "no /usr/bin/chromium: apt-get install chromium"
pytestmark = [pytest.mark.slow, pytest.mark.skipif(not CHROMIUM.exists(), reason=MISSING)]
sync_playwright = pytest.importorskip(
    "playwright.sync_api", reason="playwright is not installed: pip install -e '.[browser]'"
).sync_playwright

# Cards under `view` with, for each, its tag, whether its chart canvas exists, and the run names
# in its data table. Cards off screen are not rendered, so the viewport is tall.
CARDS = """view => [...document.querySelectorAll(view + ' scalar-card')].map(card => ({
    tag: card.querySelector('tb-truncated-path.tag')?.getAttribute('title'),
    canvas: !!card.querySelector('canvas'),
    runs: [...card.querySelectorAll('tb-data-table-content-row')].map(r => r.innerText)}))"""
ALL_DRAWN = """([view, runs]) => {
    const cards = [...document.querySelectorAll(view + ' scalar-card')];
    return cards.length > 0 && cards.every(card => card.querySelector('canvas') &&
        card.querySelectorAll('tb-data-table-content-row').length === runs);
}"""
FILTERED, PINNED_VIEW = "metrics-filtered-view-component", "metrics-pinned-view-component"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            # A fresh profile: no pins or settings from earlier runs.
            str(tmp_path_factory.mktemp("chromium-profile")),
            executable_path=str(CHROMIUM),
            headless=True,
            args=ARGS,
            viewport={"width": 1600, "height": 2400},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser):
    page = browser.new_page()
    yield page
    page.close()


def shoot(page, tmp_path: Path, name: str) -> None:
    # The lines are painted by an OffscreenCanvas worker after the DOM is complete, with no
    # DOM signal for it: wait a moment so the screenshot shows curves, not empty axes.
    page.wait_for_timeout(2500)
    page.screenshot(path=tmp_path / name)
    if keep := os.environ.get("GRADEXP_SCREENSHOTS"):
        Path(keep).mkdir(parents=True, exist_ok=True)
        shutil.copy(tmp_path / name, Path(keep) / name)


def test_time_series_shows_every_run_and_tag_with_its_data(board, sweep, page, tmp_path):
    jobs = [d.name for d in tbkit.jobs(sweep)]
    tags = set().union(*(tbkit.expected_scalars(d) for d in tbkit.jobs(sweep)))
    page.goto(pages(board.url)["Time Series"])
    # The link board prints opens on the key charts, pinned, each with all 4 runs drawn.
    page.wait_for_function(ALL_DRAWN, arg=[PINNED_VIEW, len(jobs)], timeout=60_000)
    pinned = page.evaluate(CARDS, PINNED_VIEW)
    assert [c["tag"] for c in pinned] == list(PINNED)
    for card in pinned:
        assert [next(j for j in jobs if j in r) for r in card["runs"]] == jobs, card["tag"]
    runs_pane = page.inner_text("runs-selector")
    assert all(j in runs_pane for j in jobs)
    shoot(page, tmp_path, "board-timeseries.png")

    page.fill("metrics-tag-filter input", ".*")
    page.keyboard.press("Escape")
    seen = []
    while True:  # the filtered view shows a page of cards at a time
        page.wait_for_function(ALL_DRAWN, arg=[FILTERED, len(jobs)], timeout=60_000)
        cards = page.evaluate(CARDS, FILTERED)
        for card in cards:
            assert sorted(next(j for j in jobs if j in r) for r in card["runs"]) == jobs
        seen += [c["tag"] for c in cards]
        following = page.locator(f"{FILTERED} button:has-text('Next')").first
        if len(seen) >= len(tags) or not following.is_enabled():
            break
        following.click()
    assert sorted(seen) == sorted(tags)


def test_custom_scalars_show_the_related_curves_together(board, page, tmp_path):
    page.goto(pages(board.url)["Custom Scalars"])
    page.wait_for_selector("text=train and eval loss (x = step)", timeout=60_000)
    for title in ("loss", "gradients", "optimizer", "gradient norm ‖∇J‖, global and per layer",
                  "train loss: interval mean within its min/max", "learning rate η"):  # fmt: skip
        assert page.get_by_text(title, exact=True).count() >= 1, title  # pierces shadow DOM
    shoot(page, tmp_path, "board-custom-scalars.png")
