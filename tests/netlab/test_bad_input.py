"""Malformed stdin and environment through the real agent: always a CNI error, exit 1, nothing allocated."""

from __future__ import annotations

import json
import os
import subprocess
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

pytestmark = [pytest.mark.netns, pytest.mark.slow]

ENV_KEYS = ["CNI_COMMAND", "CNI_CONTAINERID", "CNI_NETNS", "CNI_IFNAME", "CNI_ARGS", "CNI_PATH"]
text = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40)


def _valid_conf(socket_path: str) -> dict:
    return {"cniVersion": "1.0.0", "name": "fuzz", "type": "macvlan",
            "ipam": {"type": "spiderpool", "ipam_unix_socket_path": socket_path, "default_ipv4_ippool": ["pool-a"]}}


def _mutations(socket_path: str):
    conf = _valid_conf(socket_path)
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | text,
                               lambda inner: st.lists(inner, max_size=3) | st.dictionaries(text, inner, max_size=3),
                               max_leaves=6)
    broken_stdin = st.one_of(
        st.binary(max_size=80),
        json_values.map(lambda v: json.dumps(v).encode()),
        st.sampled_from(sorted(conf) + ["ipam.default_ipv4_ippool", "ipam.type"]).flatmap(
            lambda key: json_values.map(lambda value: json.dumps(_replace(conf, key, value)).encode())
        ),
    )
    broken_env = st.dictionaries(st.sampled_from(ENV_KEYS), text, min_size=1, max_size=3)
    return st.one_of(
        st.tuples(broken_stdin, st.just({})),
        st.tuples(st.just(json.dumps(conf).encode()), broken_env),
    )


def _replace(conf: dict, dotted: str, value) -> dict:
    out = json.loads(json.dumps(conf))
    if "." in dotted:
        outer, inner = dotted.split(".")
        out[outer][inner] = value
    else:
        out[dotted] = value
    return out


def test_malformed_input_gives_a_cni_error_and_allocates_nothing(world, cni_bin):
    from spiderweb.ipam.models import Allocation

    agent = world["agents"]["node-a"]
    plugin = os.path.join(cni_bin[0], "spiderpool")
    netns = world["topology"].pod_netns("fuzzpod")
    base_env = {
        "PATH": os.environ["PATH"],
        "CNI_COMMAND": "ADD",
        "CNI_CONTAINERID": "fuzz",
        "CNI_NETNS": f"/var/run/netns/{netns}",
        "CNI_IFNAME": "eth0",
        "CNI_ARGS": f"K8S_POD_NAMESPACE=default;K8S_POD_NAME=fuzz;K8S_POD_UID={uuid.uuid4()}",
        "CNI_PATH": ":".join(cni_bin),
    }

    @settings(max_examples=int(os.environ.get("SPIDERWEB_NETLAB_FUZZ_EXAMPLES", "40")), deadline=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(_mutations(agent.socket))
    def run(case):
        stdin, env_changes = case
        env = {**base_env, **env_changes}
        before = Allocation.objects.count()
        done = subprocess.run([plugin], input=stdin, env=env, capture_output=True, timeout=60)
        out = done.stdout.decode(errors="replace").strip()
        assert "Traceback" not in out and "Traceback" not in done.stderr.decode(errors="replace")
        if done.returncode == 0:
            # a mutation can stay valid (an ignored key, or a valid value); then it must be a real result
            assert json.loads(out).get("ips") or env.get("CNI_COMMAND") in ("DEL", "CHECK", "VERSION", "STATUS")
            return
        assert done.returncode == 1
        error = json.loads(out)
        assert isinstance(error.get("code"), int) and error.get("msg")
        assert Allocation.objects.count() == before

    run()
    world["topology"].remove_netns(netns)
