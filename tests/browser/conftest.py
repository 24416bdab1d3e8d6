"""Headless Chromium (Debian's `chromium` and `chromedriver`) driven by selenium against pytest-django's live
server, on the real PostgreSQL test database.

Screenshots go to ``$SPIDERWEB_BROWSER_SCREENSHOTS`` or else ``<pytest basetemp>/screenshots`` (printed at the end
of the run). Without Chromium the tests skip, unless ``SPIDERWEB_REQUIRE_BROWSER=1`` (``make test``), where a
missing browser fails them.
"""

import os
import shutil
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
PASSWORD = "browser-test-password"  # noqa: S105 (a test account on a throw-away database)


@pytest.fixture(scope="session")
def screenshot_dir(tmp_path_factory) -> Path:
    directory = Path(os.environ.get("SPIDERWEB_BROWSER_SCREENSHOTS") or tmp_path_factory.getbasetemp() / "screenshots")
    directory.mkdir(parents=True, exist_ok=True)
    return directory


@pytest.fixture(scope="session")
def _chromium_available():
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not shutil.which(path)]
    if missing:
        message = f"{', '.join(missing)} missing: apt-get install chromium chromium-driver (make test-deps does)"
        if os.environ.get("SPIDERWEB_REQUIRE_BROWSER"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def browser(_chromium_available, screenshot_dir, request, tmp_path):
    """A headless Chromium; on teardown it saves `<test name>.png` whether the test passed or not."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--window-size=1400,1000"):
        options.add_argument(argument)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    driver._spiderweb_shots = screenshot_dir  # where a test saves an extra, mid-test screenshot
    driver._spiderweb_downloads = downloads
    try:
        yield driver
    finally:
        driver.save_screenshot(str(screenshot_dir / f"{request.node.name}.png"))
        driver.quit()


@pytest.fixture
def admin_user(django_user_model):
    return django_user_model.objects.create_superuser("admin", email="admin@example.com", password=PASSWORD)


@pytest.fixture
def logged_in(browser, live_server, admin_user):
    """The browser after logging in as the admin through the login form."""
    from selenium.webdriver.common.by import By

    browser.get(f"{live_server.url}/admin/login/?next=/admin/dashboard/")
    browser.find_element(By.NAME, "username").send_keys("admin")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    browser.find_element(By.ID, "sw-capacity-totals")  # waits (implicitly) for the dashboard
    return browser


def pytest_terminal_summary(terminalreporter, config):
    shots = sorted(Path(config._tmp_path_factory.getbasetemp() / "screenshots").glob("*.png")) if hasattr(
        config, "_tmp_path_factory") else []
    env_dir = os.environ.get("SPIDERWEB_BROWSER_SCREENSHOTS")
    if env_dir:
        shots = sorted(Path(env_dir).glob("*.png"))
    if shots:
        terminalreporter.write_line(f"browser screenshots: {shots[0].parent} ({len(shots)} files)")
