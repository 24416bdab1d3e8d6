"""Property tests: RangeSet and next_free agree with a naive model built from Python sets of ints.

Ranges are drawn inside a small window so the naive sets stay small. The window sits anywhere in the IPv4 space,
or inside a random /64 of the IPv6 space, and is sometimes pinned to the very bottom or top of either family,
where off-by-one errors at 0 and 2**128 - 1 would show.
"""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from spiderweb.engine.errors import Exhausted
from spiderweb.engine.ranges import RangeSet, int_to_ip, next_free

WINDOW = 96
MAX = {4: 2**32 - 1, 6: 2**128 - 1}


@st.composite
def window_bases(draw, version):
    """The lowest address of a WINDOW-wide slice of the address space."""
    top = MAX[version] - WINDOW + 1
    if version == 4:
        anywhere = st.integers(0, top)
    else:
        prefix = draw(st.integers(0, 2**64 - 1)) << 64
        anywhere = st.just(prefix + draw(st.integers(0, 2**64 - WINDOW)))
    return draw(st.one_of(st.just(0), st.just(top), anywhere))


def pair_lists(base):
    """Up to 8 possibly overlapping, unsorted (start, end) pairs inside [base, base + WINDOW)."""
    offsets = st.tuples(st.integers(0, WINDOW - 1), st.integers(0, WINDOW - 1)).map(sorted)
    return st.lists(offsets.map(lambda pair: (base + pair[0], base + pair[1])), max_size=8)


@st.composite
def scenarios(draw):
    """A family, a window and three pair lists in that window (total, other, blocked)."""
    version = draw(st.sampled_from([4, 6]))
    base = draw(window_bases(version))
    a, b, c = (draw(pair_lists(base)) for _ in range(3))
    return version, base, a, b, c


def naive(pairs):
    return {n for start, end in pairs for n in range(start, end + 1)}


def members(rs):
    return {n for start, end in rs for n in range(start, end + 1)}


def is_canonical(rs):
    pairs = list(rs)
    return all(start <= end for start, end in pairs) and all(
        pairs[i][1] + 1 < pairs[i + 1][0] for i in range(len(pairs) - 1)
    )


def to_items(pairs, version):
    """Spiderpool strings for pairs, written both as 'a' and 'a-b' forms."""
    items = []
    for start, end in pairs:
        first = int_to_ip(start, version)
        items.append(first if start == end else f"{first}-{int_to_ip(end, version)}")
    return items


@given(scenarios())
def test_parse_merges_into_canonical_ranges_with_the_same_members(scenario):
    version, _, pairs, _, _ = scenario
    # Given arbitrary overlapping items, when parsed, then members are kept and the form is canonical
    rs = RangeSet.parse(to_items(pairs, version), version)
    assert members(rs) == naive(pairs)
    assert is_canonical(rs)
    assert rs.version == version
    assert rs == RangeSet.from_pairs(pairs, version)
    assert RangeSet.parse(rs.to_strings(), version) == rs


@given(scenarios())
def test_union_matches_set_union(scenario):
    version, _, a, b, _ = scenario
    result = RangeSet.from_pairs(a, version).union(RangeSet.from_pairs(b, version))
    assert members(result) == naive(a) | naive(b)
    assert is_canonical(result)


@given(scenarios())
def test_subtract_matches_set_difference(scenario):
    version, _, a, b, _ = scenario
    result = RangeSet.from_pairs(a, version).subtract(RangeSet.from_pairs(b, version))
    assert members(result) == naive(a) - naive(b)
    assert is_canonical(result)


@given(scenarios())
def test_intersect_overlaps_and_issubset_match_set_operations(scenario):
    version, _, a, b, _ = scenario
    left, right = RangeSet.from_pairs(a, version), RangeSet.from_pairs(b, version)
    assert members(left.intersect(right)) == naive(a) & naive(b)
    assert is_canonical(left.intersect(right))
    assert left.overlaps(right) == bool(naive(a) & naive(b))
    assert left.issubset(right) == (naive(a) <= naive(b))


@given(scenarios())
def test_count_first_last_contains_and_iteration_match_the_model(scenario):
    version, base, a, _, _ = scenario
    rs, model = RangeSet.from_pairs(a, version), naive(a)
    assert rs.count() == len(model)
    assert rs.first() == (min(model) if model else None)
    assert rs.last() == (max(model) if model else None)
    assert list(rs.iter_addresses()) == sorted(model)
    for n in range(base, base + WINDOW):
        assert (n in rs) == (n in model)
        assert (int_to_ip(n, version) in rs) == (n in model)


@given(scenarios(), st.integers(-2, WINDOW + 1))
def test_first_at_or_after_matches_the_lowest_member_at_or_above(scenario, offset):
    version, base, a, _, _ = scenario
    n = base + offset
    rs, model = RangeSet.from_pairs(a, version), naive(a)
    expected = min((m for m in model if m >= n), default=None)
    assert rs.first_at_or_after(n) == expected
    if 0 <= n <= MAX[version]:
        assert list(rs.iter_addresses(n)) == sorted(m for m in model if m >= n)


@given(scenarios(), st.one_of(st.none(), st.integers(-2, WINDOW + 1)))
def test_next_free_matches_the_lowest_unblocked_member(scenario, offset):
    version, base, total_pairs, _, blocked_pairs = scenario
    start = None if offset is None else base + offset
    total, blocked = RangeSet.from_pairs(total_pairs, version), RangeSet.from_pairs(blocked_pairs, version)
    free = naive(total_pairs) - naive(blocked_pairs)
    expected = min((m for m in free if start is None or m >= start), default=None)
    assert next_free(total, blocked, start) == expected


@given(scenarios(), st.integers(0, WINDOW + 2))
def test_take_returns_the_lowest_n_free_members_or_exhausted(scenario, n):
    version, _, total_pairs, skip_pairs, _ = scenario
    total, skip = RangeSet.from_pairs(total_pairs, version), RangeSet.from_pairs(skip_pairs, version)
    free = sorted(naive(total_pairs) - naive(skip_pairs))
    if n > len(free):
        with pytest.raises(Exhausted):
            total.take(n, skip=skip)
    else:
        taken = total.take(n, skip=skip)
        assert members(taken) == set(free[:n])
        assert is_canonical(taken)


@given(scenarios())
def test_equal_members_mean_equal_sets_and_hashes(scenario):
    version, _, a, _, _ = scenario
    forwards = RangeSet.from_pairs(a, version)
    backwards = RangeSet.from_pairs(list(reversed(a)), version)
    singles = RangeSet.from_pairs([(n, n) for n in naive(a)], version)
    assert forwards == backwards == singles
    assert hash(forwards) == hash(backwards) == hash(singles)


@given(st.lists(st.integers(min_value=0, max_value=2**32 - 1), max_size=200))
def test_from_keys_equals_the_set_of_single_addresses(numbers):
    from spiderweb.engine.ranges import address_key

    keys = [address_key(n, 4) for n in numbers]
    assert RangeSet.from_keys(keys, 4) == RangeSet.from_pairs([(n, n) for n in numbers], 4)
