"""A minimal RFC 6902 applier (add, replace, remove) so tests check that a patch really produces the mutation."""

import copy


def _unescape(part: str) -> str:
    return part.replace("~1", "/").replace("~0", "~")


def json_patch_apply(doc: dict, ops: list[dict]) -> dict:
    out = copy.deepcopy(doc)
    for op in ops:
        *parents, last = [_unescape(p) for p in op["path"].split("/")[1:]]
        target = out
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if op["op"] in ("add", "replace"):
            if op["op"] == "replace":
                assert last in target, f"replace of a missing member {op['path']}"
            target[last] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            del target[last]
        else:
            raise AssertionError(f"unexpected op {op}")
    return out
