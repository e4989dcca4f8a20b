"""The shared checks of user settings (sims.errors): one line naming the setting."""
import math

import numpy as np
import pytest

from sims.errors import InputError, check_choice, check_int, check_number


def test_check_int_takes_integers_only():
    assert check_int("steps", 3) == 3 and check_int("steps", np.int64(3)) == 3
    assert type(check_int("n", np.int32(4))) is int
    assert check_int("first_box", 0, minimum=0) == 0
    for bad in (0, -1, 2.5, 3.0, True, "3", None):
        with pytest.raises(InputError, match="^steps: must be an integer >= 1"):
            check_int("steps", bad)


def test_check_number_respects_open_and_closed_ends():
    assert check_number("ema", 0.0, 0.0, 1.0, open_high=True) == 0.0
    for bad in (1.0, math.nan, math.inf, True, "0.5"):
        with pytest.raises(InputError, match=r"^ema: must be a number in \[0.0, 1.0\)"):
            check_number("ema", bad, 0.0, 1.0, open_high=True)
    with pytest.raises(InputError, match=r"\(0.0, 1.0\]"):
        check_number("lr_consistency", 0.0, 0.0, 1.0, open_low=True)


def test_check_choice_lists_the_choices():
    assert check_choice("sampler", "ddim", {"ddim": 1, "heun": 2}) == "ddim"
    with pytest.raises(InputError, match=r"^sampler: must be one of \['ddim', 'heun'\], got 'euler'"):
        check_choice("sampler", "euler", ("heun", "ddim"))
