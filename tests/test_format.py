"""Tests of dualgap/_format.py: the aligned text table reads back into its cells."""

import re

from hypothesis import given
from hypothesis import strategies as st

from dualgap._format import format_table

# cells without spaces, so two or more spaces always separate columns
_cell = st.text(alphabet="abcxyz0123456789.-", min_size=1, max_size=8)


@given(st.integers(1, 4).flatmap(
    lambda k: st.lists(st.tuples(*[_cell] * k), min_size=1, max_size=5)))
def test_the_table_reads_back_into_its_cells_in_aligned_columns(rows):
    lines = format_table(rows).split("\n")
    assert len(lines) == len(rows) + 1
    header, rule, *body = lines
    parsed = [re.split(r" {2,}", line) for line in [header, *body]]
    assert [tuple(r) for r in parsed] == [tuple(r) for r in rows]
    # every column starts at the same offset on every line, under its run of dashes
    starts = [m.start() for m in re.finditer(r"-+", rule)]
    widths = [len(m.group()) for m in re.finditer(r"-+", rule)]
    assert widths == [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for line, row in zip([header, *body], rows, strict=True):
        assert [line.index(c, s) for c, s in zip(row, starts, strict=True)] == starts
        assert line == line.rstrip()


def test_a_two_by_two_table_by_hand():
    assert format_table([("name", "v"), ("a", "1.25")]) == "name  v\n----  ----\na     1.25"
