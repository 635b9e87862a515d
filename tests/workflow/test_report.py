"""`snakemake --report` on the tiny workflow, opened in headless Chromium as a reader would: every
figure and the claims table are shown, with captions that cite the run's settings."""

import base64
import functools
import shutil

import pytest
from helpers.debian import BROWSER_PACKAGES, ensure_debian_packages
from helpers.runs import TINY_BASE

RUN_FIGURES = [
    f"figures/{run}/{figure}.png"
    for run in ("base", "seed=1", "rosenbrock")
    for figure in ("geometry", "schedule", "bound")
]
FIGURES = [
    *RUN_FIGURES,
    "figures/base/closed_loop.png",
    "figures/ablations/seed.png",
    "figures/contrasting.png",
]
CATEGORIES = ["Ablations", "Claims", "Contrasting examples", "Per run", "Schedules"]
# Chromium on a closed network, as root: no sandbox, no background connections.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1600,1000",
]


@pytest.fixture(scope="module")
def report(finished_workflow):
    finished_workflow.snakemake("--report", "results/report.html")
    return finished_workflow.root / "results/report.html"


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    ensure_debian_packages(BROWSER_PACKAGES)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = shutil.which("chromium")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path_factory.mktemp('chromium')}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
    yield driver
    driver.quit()


def _wait_for(browser, find):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(browser, 30).until(lambda _: find())


def _links(browser, css):
    from selenium.webdriver.common.by import By

    return browser.find_elements(By.CSS_SELECTOR, css)


def _menu_texts(browser) -> list[str]:
    return [link.text for link in _links(browser, "nav div.p-3 ul li a")]


def _open_category(browser, report, category, subcategory=None) -> None:
    """From a fresh page, click through the menu to a table of results."""
    from selenium.webdriver.common.by import By

    browser.get(report.as_uri())
    _wait_for(browser, lambda: category in _menu_texts(browser))
    browser.find_element(By.LINK_TEXT, category).click()
    if subcategory is not None:
        _wait_for(browser, lambda: subcategory in _menu_texts(browser))
        browser.find_element(By.LINK_TEXT, subcategory).click()
    _wait_for(browser, lambda: _links(browser, "nav table tbody tr"))


def _new_view(browser, shown_image: str | None) -> list:
    """What the page shows once it has changed: a frame (an HTML result) or a new image."""
    return _links(browser, "iframe") or [
        image
        for image in _links(browser, "img[src^='data:image/png']")
        if image.get_attribute("src") != shown_image
    ]


def _shown_results(browser) -> list[dict]:
    """Click each result's eye in the current table: what the page then shows, row by row."""
    from selenium.webdriver.common.by import By

    shown = []
    shown_image = None
    for index in range(len(_links(browser, "nav table tbody tr"))):
        row = _links(browser, "nav table tbody tr")[index]
        eye = row.find_element(By.CSS_SELECTOR, "a[iconname=eye]")
        if eye.get_attribute("href").startswith("data:"):  # not viewable in the page: a download
            shown.append({"download": eye.get_attribute("href")})
            continue
        eye.click()
        view = _wait_for(browser, functools.partial(_new_view, browser, shown_image))[0]
        if view.tag_name == "iframe":
            browser.switch_to.frame(view)
            shown.append({"html": browser.find_element(By.TAG_NAME, "body").text})
            browser.switch_to.default_content()
        else:
            shown_image = view.get_attribute("src")
            width = browser.execute_script("return arguments[0].naturalWidth", view)
            shown.append({"image": shown_image, "width": width})
    return shown


def _shown_in_category(browser, report, category, subcategory=None) -> list[dict]:
    """Every result of a category: where its results differ in one label of two values, the
    report shows one row with a toggle between them, so each toggle is clicked in turn."""
    from selenium.webdriver.common.by import By

    _open_category(browser, report, category, subcategory)
    toggles = [label.get_attribute("for") for label in _links(browser, "label[for^=toggle-]")]
    if not toggles:
        return _shown_results(browser)
    shown = []
    for toggle in toggles:
        _open_category(browser, report, category, subcategory)  # a page showing no result yet
        browser.find_element(By.CSS_SELECTOR, f"label[for='{toggle}']").click()
        shown += _shown_results(browser)
    return shown


def _decoded(data_uri: str) -> bytes:
    return base64.b64decode(data_uri.split("base64,", 1)[1])


def test_the_report_shows_every_figure_and_the_claims_table(finished_workflow, report, browser):
    results = finished_workflow.root / "results"
    browser.get(report.as_uri())
    menu = _wait_for(browser, lambda: _menu_texts(browser))
    assert set(CATEGORIES) <= set(menu), menu

    shown = []
    for run in ("base", "rosenbrock", "seed=1"):
        for category in ("Per run", "Schedules"):
            shown += _shown_in_category(browser, report, category, run)
    for category in ("Ablations", "Contrasting examples", "Claims"):
        shown += _shown_in_category(browser, report, category)

    images = {_decoded(view["image"]) for view in shown if "image" in view}
    for figure in FIGURES:
        assert (results / figure).read_bytes() in images, f"{figure} is not shown"
    assert all(view["width"] > 0 for view in shown if "image" in view)

    claims = [view["html"] for view in shown if "html" in view]
    assert len(claims) == 1
    assert "The paper's claims beside our runs" in claims[0]
    for run in ("base", "seed=1", "rosenbrock"):
        assert f"\n{run} " in claims[0]  # a row of the per-run table
    downloads = [_decoded(view["download"]) for view in shown if "download" in view]
    assert downloads == [(results / "claims.csv").read_bytes()]


def test_captions_cite_the_run_settings(report, browser):
    _open_category(browser, report, "Per run", "base")
    _links(browser, "nav table tbody tr a[iconname=information-circle]")[0].click()
    caption = _wait_for(browser, lambda: _links(browser, "nav li.prose"))[0].text
    assert f"{TINY_BASE['task']} with a {TINY_BASE['model']} (width {TINY_BASE['width']}" in caption
    assert f"batch size {TINY_BASE['batch_size']}, {TINY_BASE['epochs']} epochs" in caption
    assert "median over 2 sampled minibatches" in caption  # the config's measure.samples
