"""The argument checks of models: one argument order, TypeError for kinds, ValueError for values."""

import numpy as np
from error_tables import raises_test

from models._checks import check_int, check_int_pair, check_int_tuple, check_real


def test_accepted_values_come_back_as_python_numbers():
    assert check_int("f", "n", np.int64(3), 1) == 3 and type(check_int("f", "n", np.int64(3))) is int
    assert check_int_pair("f", "modes", 4) == (4, 4)
    assert check_int_pair("f", "modes", [2, np.int32(3)]) == (2, 3)
    assert check_int_tuple("f", "levels", [0, 2], 0, 2) == (0, 2)
    assert check_int_tuple("f", "levels", ()) == ()
    assert check_real("f", "p", 1, low=0, high=1, open_high=False) == 1.0


test_errors = raises_test(
    [
        (lambda: check_int("f", "n", 2.0), TypeError, "f: expected n as an int, got 2.0"),
        (lambda: check_int("f", "n", False), TypeError, "f: expected n as an int, got False"),
        (lambda: check_int("f", "n", 0, 1), ValueError, "f: expected n >= 1, got 0"),
        (lambda: check_int("f", "n", 5, maximum=4), ValueError, "f: expected n <= 4, got 5"),
        (lambda: check_int("f", "n", 5, 1, 4), ValueError, r"f: expected n in \[1, 4\], got 5"),
        (
            lambda: check_int_pair("f", "modes", (1, 2, 3)),
            TypeError,
            r"f: expected modes as an int or a pair of ints, got \(1, 2, 3\)",
        ),
        (
            lambda: check_int_pair("f", "modes", "ab"),
            TypeError,
            "f: expected modes as an int or a pair of ints, got 'ab'",
        ),
        (
            lambda: check_int_pair("f", "modes", (2, 1.5)),
            TypeError,
            r"f: expected modes as an int or a pair of ints, got \(2, 1.5\)",
        ),
        (lambda: check_int_pair("f", "modes", (0, 3)), ValueError, r"f: expected modes >= 1, got \(0, 3\)"),
        (lambda: check_int_tuple("f", "levels", 3), TypeError, "f: expected levels as a sequence of ints, got 3"),
        (lambda: check_int_tuple("f", "levels", [1, 5], 0, 2), ValueError, r"f: expected levels\[1\] in \[0, 2\], got 5"),
        (lambda: check_real("f", "p", "0.5"), TypeError, "f: expected p as a real number, got '0.5'"),
        (lambda: check_real("f", "p", float("nan")), ValueError, r"f: expected p in \(-inf, inf\), got nan"),
        (
            lambda: check_real("f", "p", 0.0, low=0, high=1),
            ValueError,
            r"f: expected p in \(0, 1\), got 0.0",
        ),
    ]
)
