"""The portal in a real browser: log in, search an address, open a subnet and a pool, open the dashboard."""

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys

from spiderweb.ipam import services
from tests.admin.conftest import annotated
from tests.ipam import factories as f
from tests.portal.bulk import bulk_allocate

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def network():
    """A subnet with two pools and a gap between them; pool-a holds 150 addresses, web-0 one more."""
    tenant = services.tenant_create(name="team-a")
    subnet = services.subnet_create(tenant=tenant, name="net-a",
                                    spec={"subnet": "172.18.40.0/24", "ips": ["172.18.40.10-172.18.40.250"]})
    pool = f.pool("pool-a", "172.18.40.0/24", ["172.18.40.10-172.18.40.199"], owner=tenant)
    bulk_allocate(pool, 150, namespace="batch")
    f.allocate(annotated("pool-a", "web-0"))  # 172.18.40.160
    f.pool("pool-b", "172.18.40.0/24", ["172.18.40.220-172.18.40.229"], owner=tenant)
    return {"subnet": subnet, "pool": pool}


def test_login_lands_on_the_dashboard(network, logged_in):
    browser = logged_in
    assert browser.current_url.endswith("/admin/dashboard/")
    nearest = browser.find_element(By.ID, "sw-nearest-exhaustion").text
    assert nearest.index("pool-a") < nearest.index("pool-b")
    assert "79.5%" in nearest  # 151 of 190


def test_search_an_address_from_the_header_and_open_its_pool(network, logged_in):
    browser = logged_in
    box = browser.find_element(By.ID, "sw-search")
    box.send_keys("172.18.40.160", Keys.ENTER)
    allocations = browser.find_element(By.ID, "sw-hits-allocations").text
    assert "172.18.40.160" in allocations and "default/web-0" in allocations
    assert "net-a" in browser.find_element(By.ID, "sw-hits-subnets").text
    browser.find_element(By.LINK_TEXT, "pool-a").click()
    browser.find_element(By.ID, "sw-next-free")  # waits for the pool page
    assert browser.current_url.endswith(f"/admin/ipam/ippool/{network['pool'].pk}/change/")


def test_open_the_subnet_and_see_its_pools_and_free_space(network, logged_in):
    browser = logged_in
    browser.get(f"{browser.current_url.split('/admin/')[0]}/admin/ipam/subnet/{network['subnet'].pk}/change/")
    layout = browser.find_element(By.ID, "sw-subnet-layout").text
    assert layout.index("pool-a") < layout.index("172.18.40.200-172.18.40.219") < layout.index("pool-b")
    assert "20 addresses not in any pool" in layout


def test_open_the_pool_and_page_through_its_allocations(network, logged_in):
    browser = logged_in
    base = browser.current_url.split("/admin/")[0]
    browser.get(f"{base}/admin/ipam/ippool/{network['pool'].pk}/change/")
    assert browser.find_element(By.ID, "sw-next-free").text.startswith("172.18.40.161, 172.18.40.162")
    assert browser.find_element(By.ID, "sw-free-ranges").text == "172.18.40.161-172.18.40.199"
    browser.find_element(By.ID, "sw-pool-allocations").click()
    assert "151 allocations" in browser.find_element(By.CSS_SELECTOR, "p.paginator").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")
    assert len(rows) == 100
    browser.find_element(By.LINK_TEXT, "2").click()
    assert len(browser.find_elements(By.CSS_SELECTOR, "#result_list tbody tr")) == 51


def test_edit_routes_in_the_structured_editor_and_see_a_refusal(network, logged_in):
    browser = logged_in
    base = browser.current_url.split("/admin/")[0]
    pool = network["pool"]
    browser.get(f"{base}/admin/ipam/ippool/{pool.pk}/change/")
    routes = browser.find_element(By.NAME, "routes")
    routes.clear()
    routes.send_keys("0.0.0.0/0 via 172.18.40.1")
    browser.find_element(By.NAME, "_continue").click()
    error = browser.find_element(By.CSS_SELECTOR, ".field-routes .errorlist").text
    assert "is the default route; set the pool gateway instead" in error
    browser.save_screenshot(str(browser._spiderweb_shots / "test_edit_routes_refused.png"))
    routes = browser.find_element(By.NAME, "routes")
    routes.clear()
    routes.send_keys("10.7.0.0/16 via 172.18.40.1")
    browser.find_element(By.NAME, "_continue").click()
    assert "was changed successfully" in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text
    assert browser.find_element(By.NAME, "routes").get_attribute("value") == "10.7.0.0/16 via 172.18.40.1"
    pool.refresh_from_db()
    assert pool.routes == [{"dst": "10.7.0.0/16", "gw": "172.18.40.1"}]


def test_export_a_pool_and_import_it_again(network, logged_in):
    import time

    from selenium.webdriver.support.ui import Select

    from spiderweb.ipam.models import IPPool

    browser = logged_in
    base = browser.current_url.split("/admin/")[0]
    # export the pools as CSV from the pool list's Export page
    browser.get(f"{base}/admin/ipam/ippool/export/")
    Select(browser.find_element(By.ID, "id_format")).select_by_visible_text("csv")
    browser.find_element(By.CSS_SELECTOR, "#content form input[type=submit]").click()
    downloads = browser._spiderweb_downloads
    for _ in range(100):  # the download finishes in the browser's own time
        files = list(downloads.glob("*.csv"))
        if files:
            break
        time.sleep(0.1)
    assert files, "no CSV was downloaded"
    exported = files[0].read_text()
    assert "pool-b" in exported and "172.18.40.220-172.18.40.229" in exported
    # pool-b is deleted, then the file is imported: preview, confirm
    services.ippool_delete(pool=IPPool.objects.get(name="pool-b"))
    browser.get(f"{base}/admin/ipam/ippool/import/")
    browser.find_element(By.ID, "id_import_file").send_keys(str(files[0]))
    Select(browser.find_element(By.ID, "id_format")).select_by_visible_text("csv")
    browser.find_element(By.CSS_SELECTOR, "#content form input[type=submit]").click()
    browser.find_element(By.NAME, "confirm")  # the preview
    browser.save_screenshot(str(browser._spiderweb_shots / "test_import_preview.png"))
    browser.find_element(By.NAME, "confirm").click()
    assert "Import finished" in browser.find_element(By.CSS_SELECTOR, "ul.messagelist").text
    assert IPPool.objects.get(name="pool-b").ips == ["172.18.40.220-172.18.40.229"]


def test_the_pool_list_shows_every_column_at_1400_pixels(network, logged_in):
    browser = logged_in
    base = browser.current_url.split("/admin/")[0]
    browser.get(f"{base}/admin/ipam/ippool/")
    usage = browser.find_elements(By.CSS_SELECTOR, "#result_list .sw-usage")
    assert [element.text for element in usage] == ["79.5%", "0.0%"]
    assert "79.5% 151 of 190" in browser.find_element(By.ID, "result_list").text
    # the results box does not scroll sideways: every column is in view
    width, visible = browser.execute_script(
        "const box = document.querySelector('#changelist .results'); return [box.scrollWidth, box.clientWidth];")
    assert width <= visible, (width, visible)


def test_run_explain_from_the_header_link(network, logged_in):
    browser = logged_in
    browser.find_element(By.ID, "sw-explain-link").click()
    browser.find_element(By.NAME, "name").send_keys("web-7")
    browser.find_element(By.NAME, "pod_annotations").send_keys('ipam.spidernet.io/ippool={"ipv4": ["pool-b"]}')
    browser.find_element(By.CSS_SELECTOR, "#sw-explain-form input[type=submit]").click()
    outcome = browser.find_element(By.ID, "sw-explain-outcome").text
    assert outcome == "The pod would get: 172.18.40.220/24 from pool-b"
