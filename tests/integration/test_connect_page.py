"""The connect page end to end in a real headless browser (Debian's Chromium and chromedriver,
driven by Selenium): sign in, connect a Shopify account through the sandbox shop's own OAuth
endpoints, land back on the accounts page and see the account healthy. The screenshot of that
page is written to ``$PARTNERSYNC_TEST_ARTIFACTS`` (CI keeps it) or the test's tmp dir."""

from __future__ import annotations

import base64
import os
import secrets
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from partnersync.auth.vault import Vault
from partnersync.sandbox.shopify import ShopifySandbox
from tests.conftest import make_service
from tests.integration.served import served

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
APP_ID, APP_SECRET = "sandbox-client-id", "sandbox-client-secret"
ADMIN, PASSWORD = "brand-admin", "correct horse battery staple"


def _browser_or_skip() -> None:
    if Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists():
        return
    if os.environ.get("PARTNERSYNC_REQUIRE_BROWSER"):
        pytest.fail("Chromium and chromedriver must be installed (apt: chromium chromium-driver)")
    pytest.skip("no Chromium here: apt-get install chromium chromium-driver (CI does)")


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    _browser_or_skip()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1400,900",
        f"--user-data-dir={tmp_path / 'chromium-profile'}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture
def project(tmp_path: Path) -> tuple[Path, str]:
    keys = "k1:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()
    root = tmp_path / "project"
    make_service(root, Vault.parse(keys)).close()
    (root / "partnersync.toml").write_text(
        f'[hub]\ndatabase = "sqlite:///{root / "hub.db"}"\n\n'
        f'[apps.shopify]\nclient_id = "{APP_ID}"\nclient_secret_env = "APP_SECRET"\n'
        'scopes = "read_products,read_inventory,read_orders"\n'
    )
    added = subprocess.run(
        [
            sys.executable,
            "-m",
            "partnersync",
            "-p",
            str(root),
            "admin",
            "add",
            ADMIN,
            "--password-env",
            "ADMIN_PASSWORD",
        ],
        env={**os.environ, "PARTNERSYNC_KEYS": keys, "ADMIN_PASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert added.returncode == 0, added.stderr
    return root, keys


def _artifacts(tmp_path: Path) -> Path:
    directory = Path(os.environ.get("PARTNERSYNC_TEST_ARTIFACTS") or tmp_path)
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def test_a_brand_signs_in_connects_a_shop_through_oauth_and_sees_it_healthy(
    browser: object, project: tuple[Path, str], tmp_path: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support import expected_conditions as expect
    from selenium.webdriver.support.wait import WebDriverWait

    assert isinstance(browser, WebDriver)

    def at(url: str) -> None:
        """Wait until the browser has landed on ``url``."""
        WebDriverWait(browser, 15).until(expect.url_to_be(url), browser.page_source)

    def shows(text: str) -> None:
        """Wait until the page shows ``text``."""
        WebDriverWait(browser, 15).until(
            expect.text_to_be_present_in_element((By.TAG_NAME, "main"), text)
        )

    root, keys = project
    with (
        ShopifySandbox(token="static-token-not-used", restore_rate=1_000_000.0) as shop,
        served(
            root, keys, tmp_path / "serve.log", "--allow-loopback", env={"APP_SECRET": APP_SECRET}
        ) as base,
    ):
        browser.get(base + "/")
        at(base + "/login")  # nothing without signing in

        def sign_in(password: str) -> None:
            browser.find_element(By.NAME, "username").send_keys(ADMIN)
            browser.find_element(By.NAME, "password").send_keys(password)
            browser.find_element(By.CSS_SELECTOR, "form button[type=submit]").click()

        sign_in("not the password")
        shows("Wrong user name or password")
        sign_in(PASSWORD)
        at(base + "/")
        shows("No accounts yet")

        browser.find_element(By.LINK_TEXT, "Connect an account").click()
        browser.find_element(By.LINK_TEXT, "Shopify").click()
        oauth_form = browser.find_element(By.CSS_SELECTOR, "form:has(input[value=oauth])")
        oauth_form.find_element(By.NAME, "name").send_keys("acme")
        oauth_form.find_element(By.NAME, "url").send_keys(shop.url)
        oauth_form.find_element(By.CSS_SELECTOR, "button[type=submit]").click()
        shows("read_products,read_inventory,read_orders")
        browser.find_element(By.ID, "continue").click()  # to the shop, which sends us back

        at(base + "/?connected=acme")
        row = browser.find_element(By.ID, "account-acme")
        assert row.get_attribute("data-health") == "healthy", row.text
        assert "healthy" in row.text
        assert "refreshed automatically" in row.text
        assert "read_products" in row.text
        assert shop.oauth.exchanges == 1
        screenshot = _artifacts(tmp_path) / "connect-page-accounts.png"
        assert browser.save_screenshot(str(screenshot))
        print(f"screenshot of the connected account: {screenshot}")
        page = browser.page_source

        # What the page must never show: the tokens and the app's secret.
        service = make_service(root, Vault.parse(keys))
        stored = service.store.accounts.secrets("acme")
        service.close()
        for secret in (stored["access_token"], stored["refresh_token"], APP_SECRET):
            assert secret not in page

        # Signing out ends the session: the page is gone and so is the cookie's power.
        browser.find_element(By.CSS_SELECTOR, "header form button").click()
        at(base + "/login")
        browser.get(base + "/")
        at(base + "/login")
    assert screenshot.stat().st_size > 10_000
    if not os.environ.get("PARTNERSYNC_TEST_ARTIFACTS"):
        shutil.copy(screenshot, tmp_path / "kept.png")
