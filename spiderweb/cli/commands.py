"""``spiderweb``: the operator's CLI, in the shape of ``calicoctl ipam`` and Spiderpool's ``spiderpoolctl`` (whose
commands are stubs upstream, spec §14 and Appendix A15; these work). It talks to the portal's REST API with a
token and never touches the database.

    spiderweb show [pools|subnets] [NAME ...] [--tenant T]
    spiderweb show ip ADDRESS          spiderweb show pod NAMESPACE/NAME      spiderweb show tenant NAME
    spiderweb release ADDRESS (--pod-uid UID | --force)
    spiderweb check [--release-leaks]
    spiderweb explain NAMESPACE/NAME [--node N] [--interface eth0] [--label k=v] [--annotation k=v] ...
    spiderweb gc
    spiderweb version

Global options (before or after the command): ``--portal URL`` (``SPIDERWEB_PORTAL_URL``, default
http://127.0.0.1:8000), ``--token`` (``SPIDERWEB_TOKEN``; ``--token-file`` / ``SPIDERWEB_TOKEN_FILE``),
``--ca-file`` for https, ``--timeout`` seconds, ``-o table|json``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import sys
import uuid
from collections.abc import Sequence

from spiderweb import __version__
from spiderweb.cli.client import (
    EXIT_AUTH,
    EXIT_FINDINGS,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_USAGE,
    CliError,
    PortalClient,
)

DEFAULT_PORTAL = "http://127.0.0.1:8000"
EXIT_CODES = """exit codes:
  0  done (show found it, release released, check found nothing, explain: the pod would get its addresses)
  1  check found problems, or explain: the pod would get no address
  2  bad arguments or input (also when the portal answers 400)
  3  not found: no such pool, subnet, tenant or pod, or the address is not allocated
  4  no token, the token is refused, or the command needs a staff user
  5  the portal refused the change (409), e.g. the address is now held by another pod UID
  6  the portal is unreachable, timed out or failed (5xx)"""


# ----------------------------------------------------------------------------------------------------- output


class Output:
    """Writes a command's result as a table (default) or JSON (``-o json``: one document, machine-readable)."""

    def __init__(self, fmt: str, stream=None) -> None:
        self.fmt = fmt
        self.stream = stream or sys.stdout

    def emit(self, data, table: list[tuple[list[str], list[list]]] | None = None, lines: Sequence[str] = ()) -> None:
        if self.fmt == "json":
            self.stream.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
            return
        for headers, rows in table or []:
            self.stream.write(render_table(headers, rows))
        for line in lines:
            self.stream.write(f"{line}\n")


def render_table(headers: list[str], rows: list[list]) -> str:
    """Columns padded to their widest cell; ``-`` for empty cells.

    >>> print(render_table(["NAME", "N"], [["a", 1], ["bb", None]]), end="")
    NAME  N
    a     1
    bb    -
    """
    cells = [[("-" if v is None or v == "" else str(v)) for v in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    out = ["  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip()]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(out) + "\n"


# ------------------------------------------------------------------------------------------------ input checks


def address_arg(text: str) -> str:
    """An IP address in canonical form, or a usage error naming the bad input.

    >>> address_arg("2001:db8:0::0001")
    '2001:db8::1'
    """
    try:
        return str(ipaddress.ip_address(text.strip()))
    except ValueError:
        raise CliError(f"{text!r} is not an IP address", EXIT_USAGE) from None


def pod_arg(text: str) -> tuple[str, str]:
    """``NAMESPACE/NAME`` split in two, or a usage error."""
    namespace, _, name = text.partition("/")
    if not namespace or not name or "/" in name:
        raise CliError(f"{text!r} is not NAMESPACE/NAME", EXIT_USAGE)
    return namespace, name


def pairs_arg(values: list[str] | None, what: str) -> dict[str, str]:
    """``k=v`` options into a dict, or a usage error naming the option."""
    out = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--{what} {item!r} is not KEY=VALUE", EXIT_USAGE)
        out[key] = value
    return out


def _pct(allocated: int, total: int) -> str:
    return f"{100.0 * allocated / total:.1f}%" if total else "-"


# --------------------------------------------------------------------------------------------------- commands


def cmd_show(client: PortalClient, out: Output, args) -> int:
    what = args.what or "pools"
    if what in ("pools", "subnets"):
        return _show_ranges(client, out, what, args.names, args.tenant)
    if not args.names or len(args.names) != 1:
        raise CliError(f"show {what} takes exactly one argument", EXIT_USAGE)
    target = args.names[0]
    if what == "ip":
        return _show_ip(client, out, address_arg(target))
    if what == "pod":
        return _show_pod(client, out, *pod_arg(target))
    return _show_tenant(client, out, target)


def _show_ranges(client, out, what, names, tenant) -> int:
    items = sorted(client.list(what, tenant=tenant), key=lambda item: item["name"])
    if names:
        missing = sorted(set(names) - {i["name"] for i in items})
        if missing:
            raise CliError(f"no {what[:-1]} named {', '.join(missing)}" + (f" in tenant {tenant}" if tenant else ""),
                           EXIT_NOT_FOUND)
        items = [i for i in items if i["name"] in names]
    if what == "pools":
        rows = [[p["name"], p["tenant"], p["ipVersion"], p["subnet"], p["totalIPCount"], p["allocatedIPCount"],
                 _pct(p["allocatedIPCount"], p["totalIPCount"]), "yes" if p["disable"] else "",
                 p.get("ownerSubnet")] for p in items]
        headers = ["NAME", "TENANT", "IPV", "SUBNET", "TOTAL", "ALLOCATED", "USED", "DISABLED", "SUBNET-OWNER"]
    else:
        rows = [[s["name"], s["tenant"], s["ipVersion"], s["subnet"], s["totalIPCount"], s["poolCount"]]
                for s in items]
        headers = ["NAME", "TENANT", "IPV", "SUBNET", "TOTAL", "POOLS"]
    out.emit(items, [(headers, rows)])
    return EXIT_OK


def _show_ip(client, out, address) -> int:
    held = client.list("allocations", address=address)
    history = client.get("address-history", address=address, limit=5).get("results", [])
    data = {"address": address, "allocations": held, "history": history}
    if not held:
        last = [f"  {h['podNamespace']}/{h['podName']} ({h['podUID']}) until {h['releasedAt']}: {h['releaseReason']}"
                for h in history]
        out.emit(data, lines=[f"{address} is not allocated"] + (["previous holders:"] + last if last else []))
        return EXIT_NOT_FOUND
    rows = [[a["address"], a["pool"], a["endpoint"], a["podUID"], a["interface"], a["node"], a["boundAt"]]
            for a in held]
    out.emit(data, [(["ADDRESS", "POOL", "POD", "POD-UID", "NIC", "NODE", "SINCE"], rows)])
    return EXIT_OK


def _show_pod(client, out, namespace, name) -> int:
    endpoints = client.list("endpoints", namespace=namespace, name=name)
    if not endpoints:
        raise CliError(f"no addresses recorded for pod {namespace}/{name}", EXIT_NOT_FOUND)
    endpoint = endpoints[0]
    rows = [[a["interface"], a["address"], a["cidr"], a["pool"], a["gateway"], a["vlan"]]
            for a in endpoint["allocations"]]
    owner = f"{endpoint['ownerControllerType']}/{endpoint['ownerControllerName']}"
    out.emit(endpoint, [(["NIC", "ADDRESS", "CIDR", "POOL", "GATEWAY", "VLAN"], rows)],
             lines=[f"pod {namespace}/{name} uid {endpoint['uid']} on node {endpoint['node']}, owner {owner}"])
    return EXIT_OK


def _show_tenant(client, out, name) -> int:
    if not client.list("tenants", name=name):
        raise CliError(f"no tenant named {name} (or you are not a member of it)", EXIT_NOT_FOUND)
    pools = client.list("pools", tenant=name)
    subnets = client.list("subnets", tenant=name)
    usage = {}
    for version in (4, 6):
        family = [p for p in pools if p["ipVersion"] == version]
        total = sum(p["totalIPCount"] for p in family)
        allocated = sum(p["allocatedIPCount"] for p in family)
        usage[f"ipv{version}"] = {"pools": len(family), "totalIPCount": total, "allocatedIPCount": allocated}
    data = {"tenant": name, "subnets": len(subnets), "usage": usage, "pools": pools}
    rows = [[f"IPv{v[3]}", u["pools"], u["totalIPCount"], u["allocatedIPCount"],
             _pct(u["allocatedIPCount"], u["totalIPCount"])] for v, u in usage.items()]
    out.emit(data, [(["FAMILY", "POOLS", "TOTAL", "ALLOCATED", "USED"], rows)],
             lines=[f"tenant {name}: {len(pools)} pool(s), {len(subnets)} subnet(s)"])
    return EXIT_OK


def cmd_release(client: PortalClient, out: Output, args) -> int:
    address = address_arg(args.address)
    if args.pod_uid is not None:
        try:
            uuid.UUID(args.pod_uid)
        except ValueError:
            raise CliError(f"--pod-uid {args.pod_uid!r} is not a pod UID", EXIT_USAGE) from None
    held = client.list("allocations", address=address)
    if not held:
        raise CliError(f"{address} is not allocated; nothing to release", EXIT_NOT_FOUND)
    if len(held) > 1:
        holders = ", ".join(f"{a['endpoint']} in {a['pool']} (id {a['id']})" for a in held)
        raise CliError(f"{address} is recorded {len(held)} times ({holders}); run `spiderweb check`", EXIT_USAGE)
    allocation = held[0]
    holder = f"{allocation['endpoint']} ({allocation['podUID']})"
    if args.pod_uid is None and not args.force:
        raise CliError(f"{address} is held by {holder}: pass --pod-uid {allocation['podUID']} to release it only while "
                       f"that pod holds it, or --force", EXIT_USAGE)
    # --force still names the holder it looked at, so a pod that took the address meanwhile keeps it.
    expected = args.pod_uid if args.pod_uid is not None else allocation["podUID"]
    result = client.post(f"allocations/{allocation['id']}/release/", {"podUID": expected})
    released = result.get("released", [])
    if not released:
        raise CliError(f"{address} was released by someone else meanwhile", EXIT_NOT_FOUND)
    data = {"released": released, "pod": allocation["endpoint"], "podUID": allocation["podUID"],
            "pool": allocation["pool"]}
    out.emit(data, lines=[f"released {', '.join(released)} held by {holder} in pool {allocation['pool']}"])
    return EXIT_OK


CHECK_TITLES = {
    "leaked": "Leaked addresses (no live pod needs them)",
    "pods_without_addresses": "Pods without their addresses",
    "duplicates": "Duplicate addresses",
    "outside_pool": "Allocations outside their pool (or on excludeIPs)",
    "on_reserved": "Allocations on reserved addresses",
    "crd_disagreements": "CRD and database disagree",
    "released": "Released now (--release-leaks)",
}


def cmd_check(client: PortalClient, out: Output, args) -> int:
    report = client.post("gc/check/", {"releaseLeaks": True}) if args.release_leaks else client.get("gc/check/")
    lines = []
    for name, title in CHECK_TITLES.items():
        findings = report.get(name, [])
        if name == "released" and not findings:
            continue
        lines.append(f"{title}: {len(findings)}")
        lines += [f"  {line}" for line in findings]
    problems = report.get("problems", 0)
    lines.append("OK: no problems found" if not problems else f"{problems} problem(s) found")
    out.emit(report, lines=lines)
    remaining = problems - (len(report.get("leaked", [])) if args.release_leaks else 0)
    return EXIT_FINDINGS if remaining else EXIT_OK


def cmd_explain(client: PortalClient, out: Output, args) -> int:
    if args.facts:
        try:
            with open(args.facts, encoding="utf-8") as handle:
                facts = json.load(handle)
        except (OSError, ValueError) as exc:
            raise CliError(f"--facts {args.facts}: {exc}", EXIT_USAGE) from None
    else:
        if not args.pod:
            raise CliError("explain needs NAMESPACE/NAME or --facts FILE", EXIT_USAGE)
        namespace, name = pod_arg(args.pod)
        kind, _, owner = (args.owner or f"Pod/{name}").partition("/")
        if not kind or not owner:
            raise CliError(f"--owner {args.owner!r} is not KIND/NAME", EXIT_USAGE)
        uid = args.uid or str(uuid.uuid5(uuid.NAMESPACE_URL, f"spiderweb-explain/{namespace}/{name}"))
        facts = {
            "namespace": namespace, "name": name, "uid": uid, "node": args.node,
            "labels": pairs_arg(args.label, "label"), "annotations": pairs_arg(args.annotation, "annotation"),
            "namespace_labels": pairs_arg(args.namespace_label, "namespace-label"),
            "namespace_annotations": pairs_arg(args.namespace_annotation, "namespace-annotation"),
            "node_labels": pairs_arg(args.node_label, "node-label"),
            "owner": {"kind": kind, "name": owner, "uid": uid if kind == "Pod" else "", "api_version": "v1"
                      if kind == "Pod" else "apps/v1"},
        }
    body = {"facts": facts, "ifName": args.interface,
            "cni": {"default_ipv4_ippool": args.default_ipv4_pool or [],
                    "default_ipv6_ippool": args.default_ipv6_pool or []}}
    result = client.post("explain/", body)
    lines = []
    for nic in result.get("nics", []):
        lines.append(f"{nic.get('interface')} IPv{nic.get('version')}:")
        for pool in nic.get("accepted", []):
            lines.append(f"  candidate {pool}")
        for entry in nic.get("tried", []):
            lines.append(f"  tried {entry['pool']}: {entry['reason']}")
        for entry in nic.get("rejected", []):
            lines.append(f"  rejected {entry['pool']}: {entry['reason']}")
    if result.get("ok"):
        ips = ", ".join(ip.get("address", "") for ip in (result.get("response") or {}).get("ips", []))
        lines.append(f"OK: the pod would get {ips}")
    else:
        error = result.get("error") or {}
        lines.append(f"NO ADDRESS ({error.get('code')}): {error.get('message')}")
    out.emit(result, lines=lines)
    return EXIT_OK if result.get("ok") else EXIT_FINDINGS


def cmd_gc(client: PortalClient, out: Output, args) -> int:
    result = client.post("gc/scan/")
    out.emit(result, lines=["full GC scan queued; its results are in the workers' log and metrics "
                            "(spiderweb_gc_scans_total, spiderweb_gc_released_ips_total)"])
    return EXIT_OK


# ------------------------------------------------------------------------------------------------------ parser


def _global_options(parser: argparse.ArgumentParser, *, defaults: bool) -> None:
    """The same options on the top-level parser and on every command, so they may come before or after it."""
    default = (lambda value: value) if defaults else (lambda value: argparse.SUPPRESS)
    parser.add_argument("--portal", default=default(None), help="portal URL (SPIDERWEB_PORTAL_URL; default "
                        f"{DEFAULT_PORTAL})")
    parser.add_argument("--token", default=default(None), help="API token (SPIDERWEB_TOKEN)")
    parser.add_argument("--token-file", default=default(None), help="file holding the token (SPIDERWEB_TOKEN_FILE)")
    parser.add_argument("--ca-file", default=default(None), help="CA bundle for an https portal (SPIDERWEB_CA_FILE)")
    parser.add_argument("--timeout", type=float, default=default(30.0), help="seconds per request (default 30)")
    parser.add_argument("-o", "--output", choices=("table", "json"), default=default("table"))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="spiderweb", description="Operate Spiderweb IPAM through the portal's "
                                     "REST API (calicoctl ipam / spiderpoolctl style).", epilog=EXIT_CODES,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    _global_options(parser, defaults=True)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text, epilog=EXIT_CODES,
                                  formatter_class=argparse.RawDescriptionHelpFormatter)
        _global_options(sub, defaults=False)
        return sub

    show = command("show", "show pools (default), subnets, who holds an address, a pod's addresses, a tenant's usage")
    show.add_argument("what", nargs="?", choices=("pools", "subnets", "ip", "pod", "tenant"))
    show.add_argument("names", nargs="*", metavar="NAME", help="pool/subnet names, an ADDRESS, NAMESPACE/NAME or a "
                      "tenant")
    show.add_argument("--tenant", help="only this tenant's pools or subnets")
    show.set_defaults(handler=cmd_show)

    release = command("release", "release an allocated address (guarded by the pod UID that holds it)")
    release.add_argument("address", metavar="ADDRESS")
    release.add_argument("--pod-uid", help="release only while this pod UID holds the address")
    release.add_argument("-f", "--force", action="store_true", help="release whoever holds it now (still refused "
                         "if another pod takes it between the lookup and the release)")
    release.set_defaults(handler=cmd_release)

    check = command("check", "consistency report: leaks, duplicates, pods without addresses, CRD drift (staff)")
    check.add_argument("--release-leaks", action="store_true", help="also release every provable leak")
    check.set_defaults(handler=cmd_check)

    explain = command("explain", "dry run: which pool would serve a pod's NIC and why the others were rejected")
    explain.add_argument("pod", nargs="?", metavar="NAMESPACE/NAME")
    explain.add_argument("--facts", help="a JSON file with the pod facts (PodFacts.to_dict()) instead of the options")
    explain.add_argument("--node", default="", help="node the pod runs on")
    explain.add_argument("--uid", help="pod UID (default: a stable made-up one)")
    explain.add_argument("--interface", "--if", default="eth0", help="NIC (default eth0)")
    explain.add_argument("--owner", help="top controller KIND/NAME (default: the pod itself)")
    for option in ("label", "annotation", "namespace-label", "namespace-annotation", "node-label"):
        explain.add_argument(f"--{option}", action="append", metavar="KEY=VALUE")
    explain.add_argument("--default-ipv4-pool", action="append", metavar="POOL", help="CNI default_ipv4_ippool")
    explain.add_argument("--default-ipv6-pool", action="append", metavar="POOL", help="CNI default_ipv6_ippool")
    explain.set_defaults(handler=cmd_explain)

    gc = command("gc", "queue a full IP GC scan now (staff)")
    gc.set_defaults(handler=cmd_gc)

    version = command("version", "print the CLI's version")
    version.set_defaults(handler=None)
    return parser


def _token(args) -> str:
    if args.token:
        return args.token
    path = args.token_file or os.environ.get("SPIDERWEB_TOKEN_FILE")
    if path:
        try:
            with open(path, encoding="utf-8") as handle:
                return handle.read().strip()
        except OSError as exc:
            raise CliError(f"cannot read the token file {path}: {exc.strerror}", EXIT_AUTH) from None
    return os.environ.get("SPIDERWEB_TOKEN", "").strip()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Output(args.output)
    try:
        if args.handler is None:
            out.emit({"version": __version__}, lines=[f"spiderweb {__version__}"])
            return EXIT_OK
        if args.timeout <= 0:
            raise CliError("--timeout must be a positive number of seconds", EXIT_USAGE)
        client = PortalClient(url=args.portal or os.environ.get("SPIDERWEB_PORTAL_URL") or DEFAULT_PORTAL,
                              token=_token(args), timeout=args.timeout,
                              ca_file=args.ca_file or os.environ.get("SPIDERWEB_CA_FILE") or None)
        return args.handler(client, out, args)
    except CliError as exc:
        sys.stderr.write(f"spiderweb: {exc}\n")
        return exc.code
    except KeyboardInterrupt:
        return 130
