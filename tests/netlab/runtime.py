"""A container runtime's side of CNI, as libcni does it: run a conflist's plugins in order with chained results.

ADD runs the plugins in order, each with the previous plugin's result as `prevResult`; DEL runs them in reverse
with the cached ADD result; CHECK runs them in order with it. Plugins execute in the node's network namespace
(`nsenter --net`), exactly where a kubelet on that node would run them.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass, field


class CniFailure(Exception):
    """A plugin exited non-zero; carries the CNI error object it printed."""

    def __init__(self, plugin: str, returncode: int, error: dict, stderr: str):
        super().__init__(f"{plugin} failed ({returncode}): {error.get('msg', error)}")
        self.plugin = plugin
        self.returncode = returncode
        self.error = error
        self.stderr = stderr


@dataclass
class Runtime:
    cni_path: list[str]
    node_netns: str
    timeout: float = 120.0
    env: dict = field(default_factory=dict)
    # plugin type -> list of wall-clock seconds per call (benchmarks report where an ADD spends its time)
    timings: dict = field(default_factory=dict)

    def exec_plugin(self, plugin_type: str, command: str, conf: dict, *, container_id: str, netns: str,
                    ifname: str, args: str) -> dict | None:
        binary = self._find(plugin_type)
        env = {
            "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
            "CNI_COMMAND": command,
            "CNI_CONTAINERID": container_id,
            "CNI_NETNS": netns,
            "CNI_IFNAME": ifname,
            "CNI_ARGS": args,
            "CNI_PATH": ":".join(self.cni_path),
            **self.env,
        }
        started = time.perf_counter()
        # nsenter joins only the network namespace (as a runtime on that node would be); `ip netns exec` would
        # also copy the mount table into a new mount namespace, which grows with every pod netns.
        proc = subprocess.run(
            ["nsenter", f"--net=/var/run/netns/{self.node_netns}", binary],
            input=json.dumps(conf).encode(),
            env=env,
            capture_output=True,
            timeout=self.timeout,
        )
        self.timings.setdefault(f"{plugin_type} {command}", []).append(time.perf_counter() - started)
        out = proc.stdout.decode().strip()
        if proc.returncode != 0:
            try:
                error = json.loads(out) if out else {}
            except ValueError:
                error = {"msg": out}
            raise CniFailure(plugin_type, proc.returncode, error, proc.stderr.decode())
        return json.loads(out) if out else None

    def _find(self, plugin_type: str) -> str:
        for directory in self.cni_path:
            candidate = os.path.join(directory, plugin_type)
            if os.access(candidate, os.X_OK):
                return candidate
        raise FileNotFoundError(f"CNI plugin {plugin_type!r} not found in {self.cni_path}")

    @staticmethod
    def _plugin_conf(conflist: dict, plugin: dict, prev: dict | None) -> dict:
        conf = {**plugin, "name": conflist["name"], "cniVersion": conflist["cniVersion"]}
        if prev is not None:
            conf["prevResult"] = prev
        return conf

    def add(self, conflist: dict, *, container_id: str, netns: str, ifname: str, args: str) -> dict:
        """ADD every plugin in order; on failure tear the sandbox's network down with DEL, as CRI runtimes do."""
        result = None
        try:
            for plugin in conflist["plugins"]:
                conf = self._plugin_conf(conflist, plugin, result)
                result = self.exec_plugin(plugin["type"], "ADD", conf, container_id=container_id, netns=netns,
                                          ifname=ifname, args=args)
        except CniFailure:
            try:
                self.delete(conflist, container_id=container_id, netns=netns, ifname=ifname, args=args, cached=None)
            except CniFailure:
                pass
            raise
        return result

    def delete(self, conflist: dict, *, container_id: str, netns: str, ifname: str, args: str,
               cached: dict | None) -> None:
        for plugin in reversed(conflist["plugins"]):
            # prevResult on DEL arrived with 0.4.0
            prev = cached if conflist["cniVersion"] not in ("0.3.0", "0.3.1") and cached is not None else None
            conf = self._plugin_conf(conflist, plugin, prev)
            self.exec_plugin(plugin["type"], "DEL", conf, container_id=container_id, netns=netns, ifname=ifname,
                             args=args)

    def check(self, conflist: dict, *, container_id: str, netns: str, ifname: str, args: str, cached: dict) -> None:
        for plugin in conflist["plugins"]:
            conf = self._plugin_conf(conflist, plugin, cached)
            self.exec_plugin(plugin["type"], "CHECK", conf, container_id=container_id, netns=netns, ifname=ifname,
                             args=args)


def pod_args(namespace: str, name: str, uid: str, container_id: str) -> str:
    return (f"IgnoreUnknown=1;K8S_POD_NAMESPACE={namespace};K8S_POD_NAME={name};"
            f"K8S_POD_INFRA_CONTAINER_ID={container_id};K8S_POD_UID={uid}")
