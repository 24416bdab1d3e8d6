"""Request body parsing for the public and internal APIs: JSON with a bounded nesting depth.

Python's JSON decoder recurses once per nesting level, so a body of a few thousand `[` raised RecursionError (an
HTML 500) before any view ran. No Spiderpool object nests deeper than a handful of levels; deeper bodies are a 400.
"""

from rest_framework.exceptions import ParseError
from rest_framework.parsers import JSONParser

MAX_JSON_DEPTH = 64


def json_depth_exceeds(value, limit: int) -> bool:
    """True when `value` nests lists/objects more than `limit` levels deep (iterative: no recursion of its own).

    >>> json_depth_exceeds({"a": [1, [2]]}, 2), json_depth_exceeds({"a": [1, [2]]}, 3)
    (True, False)
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


class BoundedJSONParser(JSONParser):
    """DRF's JSON parser, refusing (400) bodies nested deeper than MAX_JSON_DEPTH levels."""

    def parse(self, stream, media_type=None, parser_context=None):
        try:
            data = super().parse(stream, media_type, parser_context)
        except RecursionError:
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels") from None
        if json_depth_exceeds(data, MAX_JSON_DEPTH):
            raise ParseError(f"JSON parse error - nested deeper than {MAX_JSON_DEPTH} levels")
        return data
