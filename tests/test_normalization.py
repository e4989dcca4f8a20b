import math

import numpy as np
import pytest
import torch

from emulator.config import DEFAULT_NORM_EPS
from emulator.normalization import Normalization, fit_normalization


def lognormal_delta(seed, shape=(16, 16, 16)):
    rng = np.random.default_rng(seed)
    g = rng.normal(size=shape)
    return (np.exp(0.8 * g - 0.32) - 1).astype(np.float32)


def test_round_trip_numpy_and_torch():
    norm = Normalization(shift=0.3, scale=1.7)
    delta = lognormal_delta(0)
    delta[0, 0, :4] = -1.0
    y = norm.forward(delta)
    assert y.dtype == np.float32
    np.testing.assert_allclose(norm.inverse(y), delta, atol=2e-5, rtol=2e-5)
    t = torch.from_numpy(delta).double()
    yt = norm.forward(t)
    assert torch.is_tensor(yt) and yt.dtype == torch.float64
    np.testing.assert_allclose(norm.inverse(yt).numpy(), delta, atol=1e-12, rtol=1e-10)


def test_formula_against_direct_evaluation():
    norm = Normalization(shift=-0.2, scale=0.5, eps=0.05)
    assert norm.forward(np.float64(3.0)) == pytest.approx((math.log(4.05) + 0.2) / 0.5)


def test_finite_at_empty_cells_and_lower_bound():
    norm = Normalization(shift=0.1, scale=0.9)
    y = norm.forward(np.full(4, -1.0, dtype=np.float32))
    assert np.isfinite(y).all()
    np.testing.assert_allclose(y, norm.lower, rtol=1e-6)
    assert norm.lower == pytest.approx((math.log(DEFAULT_NORM_EPS) - 0.1) / 0.9)
    assert torch.isfinite(norm.forward(torch.full((3,), -1.0))).all()


def test_fit_standardises_hr():
    fields = [lognormal_delta(1), lognormal_delta(2, (8, 8, 8))]
    norm = fit_normalization(fields)
    y = np.concatenate([norm.forward(f.astype(np.float64)).ravel() for f in fields])
    assert abs(y.mean()) < 1e-10 and y.std() == pytest.approx(1.0, rel=1e-10)
    assert norm.upper == pytest.approx(y.max())


def test_dict_round_trip():
    norm = fit_normalization([lognormal_delta(3)], eps=0.2)
    assert Normalization.from_dict(norm.to_dict()) == norm


@pytest.mark.parametrize("kwargs,msg", [({"shift": 0, "scale": 0}, "scale"),
                                        ({"shift": 0, "scale": 1, "eps": 0}, "eps"),
                                        ({"shift": math.nan, "scale": 1}, "shift")])
def test_validation(kwargs, msg):
    with pytest.raises(ValueError, match=msg):
        Normalization(**kwargs)


def test_fit_rejects_constant_and_empty():
    with pytest.raises(ValueError, match="constant"):
        fit_normalization([np.zeros((4, 4, 4))])
    with pytest.raises(ValueError, match="no data"):
        fit_normalization([])
