"""``spiderweb`` against a live portal: every subcommand in table and JSON form, the exit codes scripts rely on, and
a clear message for each bad input (bad address, unknown pool, no token, portal down...)."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid

import pytest

from spiderweb import __version__
from spiderweb.cli.client import (
    EXIT_AUTH,
    EXIT_CONFLICT,
    EXIT_FINDINGS,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    EXIT_USAGE,
)
from spiderweb.ipam import allocation, services
from spiderweb.ipam.allocation import AllocateRequest
from spiderweb.ipam.models import Allocation
from tests import live
from tests.ipam import factories as f
from tests.lab.controlplane import free_port

pytestmark = pytest.mark.django_db(transaction=True)


def annotated(name, pool, **kw):
    return f.facts(name, annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": [pool]})}, **kw)


def allocate(name, pool, **kw):
    facts = annotated(name, pool, **kw)
    allocation.ippool_allocate(request=AllocateRequest(facts=facts, if_name="eth0"))
    return facts


@pytest.fixture
def pools(tenant_a, tenant_b):
    """tenant-a: subnet s-a with pool p-a (10 addresses) and pool p-six; tenant-b: pool p-b."""
    services.subnet_create(tenant=tenant_a, name="s-a",
                           spec={"subnet": "10.70.0.0/24", "ips": ["10.70.0.1-10.70.0.99"]})
    f.pool("p-a", "10.70.0.0/24", ["10.70.0.10-10.70.0.19"], owner=tenant_a, gateway="10.70.0.1")
    f.pool("p-six", "fd00:70::/64", ["fd00:70::10-fd00:70::13"], owner=tenant_a)
    f.pool("p-b", "10.71.0.0/24", ["10.71.0.10-10.71.0.11"], owner=tenant_b)


# ------------------------------------------------------------------------------------------------------- show


def test_show_lists_pools_with_utilization_as_a_table_and_as_json(portal, run, staff, pools):
    allocate("web-0", "p-a")
    result = run(portal, staff, "show")
    assert result.code == EXIT_OK, result.err
    lines = result.out.splitlines()
    assert lines[0].split() == ["NAME", "TENANT", "IPV", "SUBNET", "TOTAL", "ALLOCATED", "USED", "DISABLED",
                                "SUBNET-OWNER"]
    assert lines[1].split() == ["p-a", "tenant-a", "4", "10.70.0.0/24", "10", "1", "10.0%", "-", "s-a"]
    assert [line.split()[0] for line in lines[1:]] == ["p-a", "p-b", "p-six"]
    as_json = run(portal, staff, "show", "pools", "p-a", "-o", "json")
    assert as_json.code == EXIT_OK
    assert [(p["name"], p["allocatedIPCount"], p["totalIPCount"]) for p in as_json.json()] == [("p-a", 1, 10)]


def test_show_pools_of_one_tenant_and_what_a_member_may_see(portal, run, staff, member, pools):
    assert [p["name"] for p in run(portal, staff, "-o", "json", "show", "pools", "--tenant", "tenant-b").json()] == \
        ["p-b"]
    # A member of tenant-a does not see tenant-b's pool: it is "unknown" to them
    assert [p["name"] for p in run(portal, member, "show", "pools", "-o", "json").json()] == ["p-a", "p-six"]
    hidden = run(portal, member, "show", "pools", "p-b")
    assert (hidden.code, hidden.err) == (EXIT_NOT_FOUND, "spiderweb: no pool named p-b\n")


def test_show_an_unknown_pool_or_subnet_is_exit_3(portal, run, staff, pools):
    result = run(portal, staff, "show", "pools", "p-a", "nope")
    assert (result.code, result.out, result.err) == (EXIT_NOT_FOUND, "", "spiderweb: no pool named nope\n")
    result = run(portal, staff, "show", "subnets", "nope", "--tenant", "tenant-a")
    assert (result.code, result.err) == (EXIT_NOT_FOUND, "spiderweb: no subnet named nope in tenant tenant-a\n")


def test_show_subnets(portal, run, staff, pools):
    result = run(portal, staff, "show", "subnets")
    assert result.code == EXIT_OK
    assert result.out.splitlines()[1].split() == ["s-a", "tenant-a", "4", "10.70.0.0/24", "99", "1"]
    assert run(portal, staff, "show", "subnets", "-o", "json").json()[0]["poolCount"] == 1


def test_show_ip_names_the_holder_or_says_it_is_free(portal, run, staff, pools):
    facts = allocate("web-0", "p-a", namespace="shop", node="node-7")
    held = run(portal, staff, "show", "ip", "10.70.0.10")
    assert held.code == EXIT_OK
    row = held.out.splitlines()[1].split()
    assert row[:6] == ["10.70.0.10", "p-a", "shop/web-0", facts.uid, "eth0", "node-7"]
    assert run(portal, staff, "show", "ip", "10.70.0.10", "-o", "json").json()["allocations"][0]["podUID"] == facts.uid
    # After a release the address is free (exit 3) and its last holder is named
    allocation.ippool_release(namespace="shop", name="web-0", pod_uid=facts.uid, reason="cni-del")
    free = run(portal, staff, "show", "ip", "10.70.0.10")
    assert free.code == EXIT_NOT_FOUND
    assert free.out.splitlines()[0] == "10.70.0.10 is not allocated"
    assert f"shop/web-0 ({facts.uid}) until" in free.out and "cni-del" in free.out
    assert run(portal, staff, "show", "ip", "10.70.0.10", "-o", "json").json()["allocations"] == []


def test_show_ip_takes_any_spelling_of_an_ipv6_address(portal, run, staff, pools):
    facts = f.facts("v6", annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv6": ["p-six"]})})
    allocation.ippool_allocate(request=AllocateRequest(facts=facts, if_name="eth0"))
    result = run(portal, staff, "show", "ip", "FD00:70:0:0:0:0:0:10")
    assert result.code == EXIT_OK, result.err
    assert "fd00:70::10" in result.out


@pytest.mark.parametrize("argv", [["show", "ip", "10.70.0.300"], ["show", "ip", "pod-a"],
                                  ["release", "10.70.0"], ["show", "pod", "no-namespace"],
                                  ["show", "ip"], ["show", "ip", "1.1.1.1", "2.2.2.2"]])
def test_bad_input_is_exit_2_with_the_reason(portal, run, staff, argv):
    result = run(portal, staff, *argv)
    assert result.code == EXIT_USAGE
    assert result.err.startswith("spiderweb: ") and result.out == ""
    assert ("is not an IP address" in result.err or "is not NAMESPACE/NAME" in result.err
            or "takes exactly one argument" in result.err)


def test_show_pod_lists_every_nic(portal, run, staff, pools):
    facts = allocate("db-0", "p-a", namespace="shop")
    allocation.ippool_allocate(request=AllocateRequest(
        facts=f.facts("db-0", namespace="shop", uid=facts.uid,
                      annotations={"ipam.spidernet.io/ippool": json.dumps({"ipv4": ["p-a"]})}), if_name="net1"))
    result = run(portal, staff, "show", "pod", "shop/db-0")
    assert result.code == EXIT_OK
    assert [line.split()[:2] for line in result.out.splitlines()[1:3]] == [["eth0", "10.70.0.10"],
                                                                          ["net1", "10.70.0.11"]]
    assert f"pod shop/db-0 uid {facts.uid} on node node-1" in result.out
    assert run(portal, staff, "show", "pod", "shop/db-0", "-o", "json").json()["uid"] == facts.uid
    missing = run(portal, staff, "show", "pod", "shop/nope")
    assert (missing.code, missing.err) == (EXIT_NOT_FOUND, "spiderweb: no addresses recorded for pod shop/nope\n")


def test_show_tenant_sums_its_pools_by_family(portal, run, staff, member, pools):
    allocate("a", "p-a")
    allocate("b", "p-a")
    result = run(portal, member, "show", "tenant", "tenant-a")
    assert result.code == EXIT_OK
    rows = [line.split() for line in result.out.splitlines()]
    assert rows[1] == ["IPv4", "1", "10", "2", "20.0%"]
    assert rows[2] == ["IPv6", "1", "4", "0", "0.0%"]
    assert rows[3] == ["tenant", "tenant-a:", "2", "pool(s),", "1", "subnet(s)"]
    usage = run(portal, member, "show", "tenant", "tenant-a", "-o", "json").json()["usage"]
    assert usage["ipv4"] == {"pools": 1, "totalIPCount": 10, "allocatedIPCount": 2}
    # Another tenant is unknown to a member; any unknown tenant is exit 3
    other = run(portal, member, "show", "tenant", "tenant-b")
    assert (other.code, other.err) == (EXIT_NOT_FOUND, "spiderweb: no tenant named tenant-b (or you are not a "
                                                       "member of it)\n")


# ---------------------------------------------------------------------------------------------------- release


def test_release_needs_the_holders_uid_or_force(portal, run, staff, pools):
    facts = allocate("web-0", "p-a")
    refused = run(portal, staff, "release", "10.70.0.10")
    assert refused.code == EXIT_USAGE
    assert f"pass --pod-uid {facts.uid}" in refused.err and "or --force" in refused.err
    assert Allocation.objects.filter(address="10.70.0.10").exists()


def test_release_with_another_pods_uid_is_refused_by_the_portal(portal, run, staff, pools):
    facts = allocate("web-0", "p-a")
    other = str(uuid.uuid4())
    result = run(portal, staff, "release", "10.70.0.10", "--pod-uid", other)
    assert result.code == EXIT_CONFLICT
    assert f"10.70.0.10 is held by pod UID {facts.uid}, not {other}; nothing released" in result.err
    assert Allocation.objects.filter(address="10.70.0.10", pod_uid=facts.uid).exists()


def test_release_with_the_holders_uid_frees_the_address(portal, run, staff, pools):
    facts = allocate("web-0", "p-a")
    result = run(portal, staff, "release", "10.70.0.10", "--pod-uid", facts.uid)
    assert (result.code, result.err) == (EXIT_OK, "")
    assert result.out == f"released 10.70.0.10 held by default/web-0 ({facts.uid}) in pool p-a\n"
    assert not Allocation.objects.filter(address="10.70.0.10").exists()
    again = run(portal, staff, "release", "10.70.0.10", "--force")
    assert (again.code, again.err) == (EXIT_NOT_FOUND, "spiderweb: 10.70.0.10 is not allocated; nothing to release\n")


def test_release_force_as_json(portal, run, staff, pools):
    facts = allocate("web-0", "p-a")
    result = run(portal, staff, "release", "10.70.0.10", "--force", "-o", "json")
    assert result.code == EXIT_OK
    assert result.json() == {"released": ["10.70.0.10"], "pod": "default/web-0", "podUID": facts.uid, "pool": "p-a"}


def test_release_is_staff_only(portal, run, member, pools):
    facts = allocate("web-0", "p-a")
    result = run(portal, member, "release", "10.70.0.10", "--pod-uid", facts.uid)
    assert result.code == EXIT_AUTH
    assert "not allowed" in result.err and "staff" in result.err
    assert Allocation.objects.filter(address="10.70.0.10").exists()


def test_release_rejects_a_malformed_uid_before_asking(portal, run, staff, pools):
    result = run(portal, staff, "release", "10.70.0.10", "--pod-uid", "web-0")
    assert (result.code, result.err) == (EXIT_USAGE, "spiderweb: --pod-uid 'web-0' is not a pod UID\n")


# ---------------------------------------------------------------------------------------------------- explain


def test_explain_says_which_pool_would_serve_and_allocates_nothing(portal, run, staff, pools):
    result = run(portal, staff, "explain", "shop/web-0", "--node", "node-1",
                 "--annotation", 'ipam.spidernet.io/ippool={"ipv4": ["p-a"]}')
    assert result.code == EXIT_OK, result.err
    assert result.out.splitlines()[0] == "eth0 IPv4:"
    assert result.out.splitlines()[-1] == "OK: the pod would get 10.70.0.10/24"
    assert not Allocation.objects.exists()
    as_json = run(portal, staff, "explain", "shop/web-0", "--default-ipv4-pool", "p-a", "-o", "json").json()
    assert as_json["ok"] is True and as_json["nics"][0]["accepted"] == ["p-a"]


def test_explain_a_pod_that_would_get_nothing_is_exit_1_with_the_reasons(portal, run, staff, pools):
    f.pool("web-only", "10.72.0.0/24", ["10.72.0.10"], pod_affinity={"matchLabels": {"app": "web"}})
    result = run(portal, staff, "explain", "shop/db-0", "--label", "app=db",
                 "--annotation", 'ipam.spidernet.io/ippool={"ipv4": ["web-only"]}')
    assert result.code == EXIT_FINDINGS
    assert "  rejected web-only: pod labels do not match podAffinity" in result.out.splitlines()
    assert result.out.splitlines()[-1].startswith("NO ADDRESS (no_pool_available): ")


def test_explain_bad_input(portal, run, staff, tmp_path, pools):
    broken = run(portal, staff, "explain", "shop/web-0", "--annotation", 'ipam.spidernet.io/ippool={"ipv4": [')
    assert broken.code == EXIT_USAGE and "is not valid JSON" in broken.err
    assert run(portal, staff, "explain", "shop/web-0", "--label", "novalue").err == \
        "spiderweb: --label 'novalue' is not KEY=VALUE\n"
    assert run(portal, staff, "explain").code == EXIT_USAGE
    assert "No such file" in run(portal, staff, "explain", "--facts", str(tmp_path / "missing.json")).err
    facts = tmp_path / "facts.json"
    facts.write_text(json.dumps(annotated("web-0", "p-a").to_dict()))
    assert run(portal, staff, "explain", "--facts", str(facts)).code == EXIT_OK


# ------------------------------------------------------------------------------------------------ check and gc


def test_check_and_gc_without_kubernetes_are_unavailable_with_the_reason(portal, run, staff):
    check = run(portal, staff, "check")
    assert check.code == EXIT_UNAVAILABLE
    assert "Kubernetes is not configured for the portal" in check.err
    gc = run(portal, staff, "gc")
    assert gc.code == EXIT_UNAVAILABLE
    assert "the IP GC is disabled" in gc.err


def test_check_and_gc_are_staff_only(portal, run, member):
    for argv in (["check"], ["check", "--release-leaks"], ["gc"]):
        result = run(portal, member, *argv)
        assert result.code == EXIT_AUTH, argv
        assert "this needs a staff user's token" in result.err


@pytest.mark.lab
def test_check_reports_a_leak_and_release_leaks_releases_it(lab_portal, run, staff):
    # Given an address held by a pod that does not exist in Kubernetes
    f.pool("leaky", "10.73.0.0/24", ["10.73.0.10-10.73.0.20"])
    ghost = allocate("ghost", "leaky", namespace="cli-nowhere")
    # When the operator checks
    table = run(lab_portal, staff, "check")
    report = run(lab_portal, staff, "check", "-o", "json").json()
    # Then the leak is reported (exit 1) in both forms, and nothing is released
    assert table.code == EXIT_FINDINGS
    assert "Leaked addresses (no live pod needs them): 1" in table.out
    assert f"  10.73.0.10 held by cli-nowhere/ghost ({ghost.uid}): " in table.out
    assert table.out.splitlines()[-1] == f"{report['problems']} problem(s) found"
    assert len(report["leaked"]) == 1 and report["released"] == []
    assert Allocation.objects.filter(address="10.73.0.10").exists()
    # When the leaks are released
    released = run(lab_portal, staff, "check", "--release-leaks", "-o", "json")
    # Then exactly that address goes, and the exit status counts only what is left
    assert released.json()["released"] == ["10.73.0.10"]
    assert released.code == (EXIT_FINDINGS if released.json()["problems"] - 1 else EXIT_OK)
    assert not Allocation.objects.filter(address="10.73.0.10").exists()


# ---------------------------------------------------------------------------------------------- access errors


def test_no_token_is_exit_4_and_says_where_tokens_come_from(portal, run, monkeypatch):
    monkeypatch.delenv("SPIDERWEB_TOKEN", raising=False)
    monkeypatch.delenv("SPIDERWEB_TOKEN_FILE", raising=False)
    result = run(portal, None, "show")
    assert result.code == EXIT_AUTH
    assert result.err.startswith("spiderweb: no API token: pass --token, or set SPIDERWEB_TOKEN")


def test_a_refused_token_is_exit_4(portal, run):
    result = run(portal, None, "show", token="not-a-token")
    assert (result.code, result.err) == (EXIT_AUTH, "spiderweb: the portal refused the token: Invalid token.\n")


def test_token_from_the_environment_and_from_a_file(portal, run, staff, pools, monkeypatch, tmp_path):
    from knox.models import AuthToken

    key = AuthToken.objects.create(user=staff)[1]
    monkeypatch.setenv("SPIDERWEB_TOKEN", key)
    assert run(portal, None, "show").code == EXIT_OK
    monkeypatch.delenv("SPIDERWEB_TOKEN")
    (tmp_path / "token").write_text(key + "\n")
    assert run(portal, None, "show", "--token-file", str(tmp_path / "token")).code == EXIT_OK
    missing = run(portal, None, "show", "--token-file", str(tmp_path / "nope"))
    assert missing.code == EXIT_AUTH and "cannot read the token file" in missing.err


def test_portal_down_is_exit_6(run, staff):
    down = live.Process(url=f"http://127.0.0.1:{free_port()}", process=None, log=None)
    result = run(down, staff, "show")
    assert result.code == EXIT_UNAVAILABLE
    assert result.err.startswith(f"spiderweb: cannot reach the portal at {down.url}: ")


def test_a_url_that_is_not_http_is_exit_2(run, staff):
    result = run(live.Process(url="ftp://portal", process=None, log=None), staff, "show")
    assert (result.code, result.err) == (EXIT_USAGE, "spiderweb: portal URL 'ftp://portal' is not an http(s) URL "
                                                     "(use --portal or SPIDERWEB_PORTAL_URL)\n")


def test_the_script_as_a_process_and_its_version(portal, staff, pools):
    from knox.models import AuthToken

    key = AuthToken.objects.create(user=staff)[1]
    env = {"SPIDERWEB_PORTAL_URL": portal.url, "SPIDERWEB_TOKEN": key, "PATH": "/usr/bin:/bin"}
    shown = subprocess.run([sys.executable, "-m", "spiderweb.cli", "show", "pools", "nope"], env=env,
                           capture_output=True, text=True, timeout=60, cwd=live.REPO)
    assert (shown.returncode, shown.stderr) == (EXIT_NOT_FOUND, "spiderweb: no pool named nope\n")
    version = subprocess.run([sys.executable, "-m", "spiderweb.cli", "version"], capture_output=True, text=True,
                             timeout=60, cwd=live.REPO)
    assert (version.returncode, version.stdout) == (0, f"spiderweb {__version__}\n")
    usage = subprocess.run([sys.executable, "-m", "spiderweb.cli", "frobnicate"], capture_output=True, text=True,
                           timeout=60, cwd=live.REPO)
    assert usage.returncode == EXIT_USAGE and "invalid choice: 'frobnicate'" in usage.stderr
