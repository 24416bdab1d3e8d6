"""Convert CNI results between spec versions.

Results before 1.0.0 (0.3.x, 0.4.0) carry ``"version": "4"|"6"`` on every ``ips`` entry; 1.0.0 and later drop
it. Everything else used here (``interfaces``, the ``interface`` index, ``routes``, ``dns``) has the same shape
in all four versions, so conversion is: validate, add or drop ``version``, stamp ``cniVersion``. Unknown keys are
kept, because a chained plugin must pass on what it does not understand.
"""

from __future__ import annotations

from cni import addresses
from cni.versions import is_legacy_result_version

if False:  # annotations only (postponed): collections.abc would add ~1 ms to every call's start-up
    from collections.abc import Mapping


class ResultFormatError(ValueError):
    """A result (from the agent or a prevResult) does not have the CNI result shape."""


def convert_result(result: Mapping[str, object], cni_version: str) -> dict:
    """Return a copy of ``result`` in the shape of ``cni_version``.

    >>> convert_result({"ips": [{"address": "10.6.0.9/16", "gateway": "10.6.0.1"}]}, "0.4.0")["ips"]
    [{'address': '10.6.0.9/16', 'gateway': '10.6.0.1', 'version': '4'}]
    >>> convert_result({"ips": [{"version": "6", "address": "fd00::9/64"}]}, "1.0.0")["ips"]
    [{'address': 'fd00::9/64'}]
    """
    if not isinstance(result, dict):
        raise ResultFormatError("a CNI result must be a JSON object")
    converted = _copy(dict(result))
    converted["cniVersion"] = cni_version
    legacy = is_legacy_result_version(cni_version)
    interfaces = converted.get("interfaces")
    if interfaces is not None and not (isinstance(interfaces, list) and all(isinstance(i, dict) for i in interfaces)):
        raise ResultFormatError("result 'interfaces' must be an array of objects")
    ips = converted.get("ips")
    if ips is not None:
        if not isinstance(ips, list):
            raise ResultFormatError("result 'ips' must be an array")
        converted["ips"] = [_convert_ip(entry, index, legacy) for index, entry in enumerate(ips)]
    routes = converted.get("routes")
    if routes is not None:
        if not isinstance(routes, list):
            raise ResultFormatError("result 'routes' must be an array")
        for index, route in enumerate(routes):
            _check_route(route, index)
    dns = converted.get("dns")
    if dns is not None and not isinstance(dns, dict):
        raise ResultFormatError("result 'dns' must be an object")
    return converted


def empty_result(cni_version: str) -> dict:
    """The result of a plugin that configures nothing (ifacer, or coordinator in ``disable`` mode)."""
    return {"cniVersion": cni_version}


def _convert_ip(entry: object, index: int, legacy: bool) -> dict:
    if not isinstance(entry, dict):
        raise ResultFormatError(f"result ips[{index}] must be an object")
    address = entry.get("address")
    if not isinstance(address, str) or "/" not in address:
        raise ResultFormatError(f"result ips[{index}].address must be an address in CIDR form")
    try:
        family = addresses.cidr_version(address)
    except ValueError as exc:
        raise ResultFormatError(f"result ips[{index}].address {address!r} is not an address in CIDR form") from exc
    gateway = entry.get("gateway")
    if gateway not in (None, "") and (not isinstance(gateway, str) or _ip_version(gateway) != family):
        raise ResultFormatError(f"result ips[{index}].gateway must be an address of the same family")
    interface = entry.get("interface")
    if interface is not None and (isinstance(interface, bool) or not isinstance(interface, int) or interface < 0):
        raise ResultFormatError(f"result ips[{index}].interface must be a non-negative index")
    converted = {key: value for key, value in entry.items() if key != "version"}
    if legacy:
        converted["version"] = str(family)
    return converted


def _check_route(route: object, index: int) -> None:
    if not isinstance(route, dict):
        raise ResultFormatError(f"result routes[{index}] must be an object")
    dst = route.get("dst")
    if not isinstance(dst, str):
        raise ResultFormatError(f"result routes[{index}].dst must be a CIDR")
    try:
        addresses.cidr_version(dst)
    except ValueError as exc:
        raise ResultFormatError(f"result routes[{index}].dst {dst!r} is not a CIDR") from exc


def _ip_version(text: str) -> int:
    try:
        return addresses.ip_version(text)
    except ValueError:
        return 0


def _copy(value: object) -> object:
    """A deep copy of decoded JSON (``copy.deepcopy`` without importing ``copy``: only dicts and lists nest)."""
    if isinstance(value, dict):
        return {key: _copy(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_copy(item) for item in value]
    return value
