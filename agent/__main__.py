"""``python -m agent``: the node agent daemon (one per node; a DaemonSet in Kubernetes).

Start-up follows spec §12.3: read the environment, install the CNI executables, tune host sysctls when asked, wait
for the Kubernetes API (kubernetes mode), then serve until SIGTERM/SIGINT and stop cleanly (in-flight requests are
allowed to finish, the socket file is removed). ``--version`` prints the version and exits. Exit codes: 0 after a
clean stop, 2 for a bad configuration, 1 for a failed start-up.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from agent import config as agent_config

log = logging.getLogger("agent")


def main() -> int:
    if sys.argv[1:] == ["--version"]:
        from spiderweb import __version__

        sys.stdout.write(f"spiderweb-agent {__version__}\n")
        return 0
    try:
        config = agent_config.load()
    except agent_config.ConfigError as exc:
        sys.stderr.write(f"{exc}\n")
        return 2
    logging.basicConfig(level=config.log_level.upper(), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    try:
        agent = _start(config)
    except Exception as exc:  # noqa: BLE001 - start-up failures end the process with a readable reason
        log.error("agent start-up failed: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        return 1
    stop.wait()
    log.info("signal received, stopping")
    agent.stop()
    return 0


def _start(config: agent_config.AgentConfig):
    from agent.daemon import Agent, wait_for_kubernetes

    if config.cni_bin_dir:
        from agent.cni_install import install_cni_executables

        install_cni_executables(config.cni_bin_dir)
    if config.tune_sysctls:
        from agent.netlink.sysctl import apply_host_sysctls

        written = apply_host_sysctls(ipv4=config.enable_ipv4, ipv6=config.enable_ipv6,
                                     netns_path=config.host_netns_path)
        log.info("host sysctls set: %s", ", ".join(f"{k}={v}" for k, v in written.items()) or "none")
    if not config.standalone:
        wait_for_kubernetes(config)
    agent = Agent(config, host_netns_path=config.host_netns_path)
    agent.start()
    return agent


if __name__ == "__main__":
    sys.exit(main())
