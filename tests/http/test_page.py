"""The page at `/` in headless Chromium (Debian's chromium and chromium-driver, driven by
Selenium): it lists the demo's jobs, a filter narrows the table, a job page draws its charts from
the job's real data (read back from the Chart.js instances), the compare view overlays jobs, and
a cancel button cancels a running job. A screenshot of each page goes to the tests' output
directory."""

import json
import shutil
import subprocess
import time

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from conftest import Btstore, Server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page")
    bt = Btstore(f"sqlite:{tmp / 'catalog.db'}", tmp / "results")
    demo = bt.ok("demo")
    token = bt.token("root", "admin")
    server = Server(bt)
    yield bt, server, token, demo
    assert server.stop() == 0


@pytest.fixture(scope="module")
def browser():
    if not (shutil.which(CHROMIUM) and shutil.which(CHROMEDRIVER)):
        pytest.fail("chromium and chromium-driver are required (scripts/setup.sh installs them)")
    options = Options()
    # Debian's browser and driver, given explicitly, so Selenium downloads nothing.
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,800",
                "--disable-dev-shm-usage"):
        options.add_argument(arg)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def wait(driver, condition, timeout=20):
    # The page re-renders what live progress updates, so an element found a moment ago may be
    # replaced before it is read: such a try is simply repeated.
    return WebDriverWait(driver, timeout, poll_frequency=0.1,
                         ignored_exceptions=(NoSuchElementException,
                                             StaleElementReferenceException)).until(condition)


def open_view(driver, base, hash_):
    driver.get(base + "/" + hash_)
    wait(driver, lambda d: d.execute_script("return document.body.dataset.ready") == (hash_ or "#/"))


def sign_in(driver, base, token):
    driver.get(base + "/")
    box = driver.find_element(By.ID, "token")
    box.clear()
    box.send_keys(token, Keys.ENTER)  # keyboard only
    wait(driver, lambda d: "root (admin)" in d.find_element(By.ID, "whoami").text)


def table_job_ids(driver):
    return [r.get_attribute("data-job") for r in driver.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")]


def api(server, token, path):
    return server.client(token).get(path).json()


def test_jobs_table_lists_the_demo_jobs_and_a_filter_narrows_it(site, browser, output_dir):
    bt, server, token, _ = site
    sign_in(browser, server.base, token)
    open_view(browser, server.base, "#/")
    wait(browser, lambda d: len(table_job_ids(d)) > 0)
    expected = [j["job_id"] for j in api(server, token, "/api/v1/jobs")["jobs"]]
    assert table_job_ids(browser) == expected
    browser.save_screenshot(str(output_dir / "jobs.png"))

    user = browser.find_element(By.ID, "f-user")
    user.send_keys("bob", Keys.ENTER)
    wait(browser, lambda d: d.execute_script("return document.body.dataset.ready") == "#/?user=bob")
    bobs = [j["job_id"] for j in api(server, token, "/api/v1/jobs?user=bob")["jobs"]]
    assert 0 < len(bobs) < len(expected)
    assert table_job_ids(browser) == bobs

    # Sorting by a metric, from the keyboard.
    header = browser.find_element(By.CSS_SELECTOR, "th[data-sort='mean_ic']")
    header.send_keys(Keys.ENTER)
    cells = [float(r.find_elements(By.CSS_SELECTOR, "td.num")[0].text)
             for r in browser.find_elements(By.CSS_SELECTOR, "#jobs tbody tr")]
    assert cells == sorted(cells, reverse=True)

    browser.set_window_size(400, 800)
    browser.save_screenshot(str(output_dir / "jobs-narrow.png"))
    browser.set_window_size(1280, 800)


def test_job_page_draws_its_charts_from_the_real_data(site, browser, output_dir):
    bt, server, token, demo = site
    job_id = api(server, token, "/api/v1/jobs?status=completed&limit=1")["jobs"][0]["job_id"]
    open_view(browser, server.base, f"#/job/{job_id}")
    wait(browser, lambda d: d.execute_script("return !!window.btCharts.coverage"))
    series = api(server, token, f"/api/v1/jobs/{job_id}/charts")
    charts = browser.execute_script("""
        const c = window.btCharts;
        return {labels: c.ic.data.labels, ic: c.ic.data.datasets[0].data,
                rank_ic: c.ic.data.datasets[1].data, cumulative: c.cumulative.data.datasets[0].data,
                coverage: c.coverage.data.datasets[0].data};""")
    assert charts["labels"] == series["dates"] and len(series["dates"]) > 100
    assert charts["ic"] == series["ic"]
    assert charts["rank_ic"] == series["rank_ic"]
    assert charts["cumulative"] == series["cumulative_ic"]
    assert charts["coverage"] == series["weights_names"]
    shown = browser.find_element(By.ID, "m-mean_ic").text
    assert shown == f"{api(server, token, f'/api/v1/jobs/{job_id}')['mean_ic']:.4f}"
    browser.save_screenshot(str(output_dir / "job.png"))


def test_compare_view_overlays_the_cumulative_ic_of_selected_jobs(site, browser, output_dir):
    bt, server, token, _ = site
    jobs = api(server, token, "/api/v1/jobs?status=completed&limit=3")["jobs"]
    ids = [j["job_id"] for j in jobs]
    open_view(browser, server.base, "#/")
    wait(browser, lambda d: len(table_job_ids(d)) > 0)
    for job_id in ids:
        browser.find_element(By.CSS_SELECTOR, f"input.pick[value='{job_id}']").click()
    browser.find_element(By.ID, "compare").click()
    wait(browser, lambda d: d.execute_script("return !!window.btCharts.compare"))
    labels = browser.execute_script("return window.btCharts.compare.data.datasets.map(d => d.label)")
    assert [label.split(" ")[0] for label in labels] == ids
    browser.save_screenshot(str(output_dir / "compare.png"))


def test_cancel_button_cancels_a_running_job(site, browser, output_dir):
    bt, server, token, _ = site
    job_id = bt.ok("submit", "--alpha", "slow", "--start", "2020-01-01", "--end", "2020-12-31",
                   "--config", '{"delay_ms_per_day": 300, "symbols": 10}', "--user", "root",
                   "--job-id", "page-slow")["job_id"]
    worker = subprocess.Popen(bt.argv("worker", "--lease-seconds", "2"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait(browser, lambda d: api(server, token, f"/api/v1/jobs/{job_id}")["status"] == "running",
             timeout=30)
        open_view(browser, server.base, f"#/job/{job_id}")
        wait(browser, lambda d: d.find_element(By.ID, "cancel"))
        browser.save_screenshot(str(output_dir / "job-running.png"))
        wait(browser, lambda d: d.find_element(By.ID, "cancel").click() is None)
        wait(browser, lambda d: api(server, token, f"/api/v1/jobs/{job_id}")["status"] == "cancelled",
             timeout=30)
        wait(browser, lambda d: d.find_element(By.ID, "job-status").text == "cancelled")
    finally:
        worker.terminate()
        worker.wait(timeout=30)
