"""One runner for the tables of argument errors that the tests keep: ``(call, exception, regex)``.

Usage, in a test module::

    from error_tables import raises_test

    ERRORS = [
        (lambda: kid(a, b, subsets=0), ValueError, "kid: expected subsets >= 1, got 0"),
        ...
    ]
    test_argument_errors = raises_test(ERRORS)

Each row becomes one test case, named after the function in its message (the text before
the first colon) and its row number, that calls ``call()`` and expects ``exception`` with a
message matching ``regex`` (:func:`pytest.raises` ``match``: a ``re.search``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import pytest

__all__ = ["raises_test"]

Row = tuple[Callable[[], object], type[BaseException], str]


def _case_id(i: int, row: Row) -> str:
    where = re.sub(r"\W+", "_", row[2].split(":")[0]).strip("_")
    return f"{where or 'error'}-{i}"


def raises_test(table: Sequence[Row]) -> Callable:
    """A parametrized test function that checks every row of ``table``."""
    table = list(table)

    @pytest.mark.parametrize(
        ("call", "exc", "match"), table, ids=[_case_id(i, row) for i, row in enumerate(table)]
    )
    def test(call, exc, match):
        with pytest.raises(exc, match=match):
            call()

    return test
