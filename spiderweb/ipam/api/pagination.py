"""Pagination of every list endpoint: `?limit=&offset=`, with a page-size cap.

Without a cap `?limit=100000000000000000000` reached the database as an out-of-range LIMIT (a 409 on SQLite, a 500
on PostgreSQL) and a large but valid limit read a whole table into one response.
"""

from rest_framework.pagination import LimitOffsetPagination

MAX_PAGE_SIZE = 1000


class CappedLimitOffsetPagination(LimitOffsetPagination):
    """LimitOffsetPagination with `limit` capped at MAX_PAGE_SIZE and `offset` at the row count (an empty page)."""

    max_limit = MAX_PAGE_SIZE

    def get_offset(self, request):
        offset = super().get_offset(request)
        count = getattr(self, "count", None)
        return offset if count is None else min(offset, count)
