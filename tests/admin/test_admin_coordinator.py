"""The SpiderCoordinator's mirror in the admin: edited with the webhook's rules, through the services, with a change
log; the status (the coordinator controller's) is read-only."""

import pytest
from django.urls import reverse

from spiderweb.changelog.models import ObjectChange
from spiderweb.ipam.models import Coordinator
from tests.admin.test_admin_forms import form_errors

pytestmark = pytest.mark.django_db


def change_form(coordinator, **fields) -> dict:
    data = {"labels": "{}", "mode": coordinator.mode, "pod_cidr_type": coordinator.pod_cidr_type,
            "hijack_cidr": "\n".join(coordinator.hijack_cidr), "policy_routes": "[]", "pod_mac_prefix": "",
            "tune_pod_routes": "on", "pod_default_route_nic": "", "host_rule_table": "500", "pod_rp_filter": "0",
            "tx_queue_len": "0", "veth_link_address": "", "veth_mtu": "1500"}
    return data | fields


def test_a_broken_rule_shows_on_its_field_and_nothing_changes(admin_web, world):
    coordinator = Coordinator.objects.get(name="default")
    url = reverse("admin:ipam_coordinator_change", args=[coordinator.pk])
    errors = form_errors(admin_web.post(url, change_form(coordinator, pod_mac_prefix="01:00",
                                                         hijack_cidr="169.254.0.0/16\nnot-a-cidr")))
    assert errors["pod_mac_prefix"] == ["the first byte must be even (a unicast MAC), got 01:00"]
    assert errors["hijack_cidr"] == ["hijackCIDR[1]: 'not-a-cidr' is not an IP address or CIDR"]
    assert Coordinator.objects.get(pk=coordinator.pk).generation == 1


def test_an_edit_is_saved_through_the_service_normalised_and_logged_and_the_status_stays(admin_web, world):
    coordinator = Coordinator.objects.get(name="default")
    url = reverse("admin:ipam_coordinator_change", args=[coordinator.pk])
    response = admin_web.post(url, change_form(coordinator, hijack_cidr="169.254.25.10", veth_mtu="9000",
                                               phase="NotReady"))
    assert response.status_code == 302
    saved = Coordinator.objects.get(pk=coordinator.pk)
    assert (saved.hijack_cidr, saved.veth_mtu, saved.generation) == (["169.254.25.10/32"], 9000, 2)
    assert saved.phase == "Synced", "the status is the controller's, not the form's"
    change = ObjectChange.objects.filter(object_type="ipam.coordinator", object_id=saved.pk).latest("time")
    assert change.user_name == "root" and change.postchange_data["veth_mtu"] == 9000
