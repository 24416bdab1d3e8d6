"""A tenant member in a real browser: logs in through the login form, sees only their tenant's pools, and creates
an API token on "My API tokens" (shown once)."""

import pytest
from selenium.webdriver.common.by import By

from spiderweb.ipam import services
from tests.browser.conftest import PASSWORD
from tests.ipam import factories as f

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def member(django_user_model):
    """carol, a member of team-a only (not staff, no model permission); team-b owns pool-b."""
    team_a = services.tenant_create(name="team-a")
    team_b = services.tenant_create(name="team-b")
    f.pool("pool-a", "172.18.40.0/24", ["172.18.40.10-172.18.40.99"], owner=team_a)
    f.pool("pool-b", "172.18.41.0/24", ["172.18.41.10-172.18.41.99"], owner=team_b)
    user = django_user_model.objects.create_user("carol", password=PASSWORD)
    team_a.members.add(user)
    return user


def test_tenant_member_sees_only_own_pools_and_creates_a_token(browser, live_server, member, screenshot_dir):
    browser.get(f"{live_server.url}/admin/login/?next=/admin/ipam/ippool/")
    browser.find_element(By.NAME, "username").send_keys("carol")
    browser.find_element(By.NAME, "password").send_keys(PASSWORD)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    pools = browser.find_element(By.ID, "result_list").text
    assert "pool-a" in pools and "pool-b" not in pools
    browser.save_screenshot(str(screenshot_dir / "tenant_member_pool_list.png"))

    browser.find_element(By.ID, "sw-tokens-link").click()
    browser.find_element(By.CSS_SELECTOR, "#sw-token-create input[type=submit]").click()
    token = browser.find_element(By.ID, "sw-new-token").text
    assert len(token) >= 40
    assert all(token not in cookie["value"] for cookie in browser.get_cookies())
    assert token[:8] in browser.find_element(By.ID, "sw-token-list").text
