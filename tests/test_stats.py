"""Vectorized weighted metrics against scikit-learn (the independent reference)."""

import numpy as np
import pytest
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from audit import stats


@pytest.fixture(params=[0, 1, 2])
def data(request):
    rng = np.random.default_rng(request.param)
    n = 257
    y = rng.integers(0, 2, n)
    score = np.clip(rng.normal(0.35 + 0.3 * y, 0.2), 0, 1)
    score[:40] = np.round(score[:40], 1)  # ties
    w = rng.poisson(1.0, n).astype(float)
    return y, score, w


def test_point_values_equal_sklearn(data):
    y, s, _ = data
    W = np.ones((1, len(y)))
    pred = (s >= 0.5).astype(int)
    c = stats.confusion(W, y, pred)
    assert stats.accuracy(c)[0] == pytest.approx(skm.accuracy_score(y, pred), abs=1e-12)
    assert stats.balanced_accuracy(c)[0] == pytest.approx(skm.balanced_accuracy_score(y, pred), abs=1e-12)
    assert stats.precision(c)[0] == pytest.approx(skm.precision_score(y, pred), abs=1e-12)
    assert stats.tpr(c)[0] == pytest.approx(skm.recall_score(y, pred), abs=1e-12)
    assert stats.f1(c)[0] == pytest.approx(skm.f1_score(y, pred), abs=1e-12)
    assert stats.roc_auc(W, y, s)[0] == pytest.approx(skm.roc_auc_score(y, s), abs=1e-12)
    assert stats.average_precision(W, y, s)[0] == pytest.approx(skm.average_precision_score(y, s), abs=1e-12)
    assert stats.brier(W, y, s)[0] == pytest.approx(skm.brier_score_loss(y, s), abs=1e-12)


def test_weighted_values_equal_sklearn_sample_weight(data):
    """A bootstrap replicate (integer weights) equals the metric on rows repeated that often."""
    y, s, w = data
    W = w[None, :]
    pred = (s >= 0.5).astype(int)
    c = stats.confusion(W, y, pred)
    kw = {"sample_weight": w}
    assert stats.accuracy(c)[0] == pytest.approx(skm.accuracy_score(y, pred, **kw), abs=1e-12)
    assert stats.balanced_accuracy(c)[0] == pytest.approx(skm.balanced_accuracy_score(y, pred, **kw), abs=1e-12)
    assert stats.f1(c)[0] == pytest.approx(skm.f1_score(y, pred, **kw), abs=1e-12)
    assert stats.roc_auc(W, y, s)[0] == pytest.approx(skm.roc_auc_score(y, s, **kw), abs=1e-12)
    assert stats.average_precision(W, y, s)[0] == pytest.approx(skm.average_precision_score(y, s, **kw), abs=1e-12)
    assert stats.brier(W, y, s)[0] == pytest.approx(skm.brier_score_loss(y, s, **kw), abs=1e-12)


def test_ece_equals_calibration_curve(data):
    y, s, _ = data
    prob_true, prob_pred = calibration_curve(y, s, n_bins=10, strategy="uniform")
    counts = np.bincount(stats.ece_bins(s, 10), minlength=10)
    counts = counts[counts > 0]
    expected = np.sum(counts / len(y) * np.abs(prob_true - prob_pred))
    assert stats.expected_calibration_error(np.ones((1, len(y))), y, s)[0] == pytest.approx(expected, abs=1e-12)


def test_ece_hand_count():
    y = np.array([1, 0, 1, 1])
    s = np.array([0.9, 0.9, 0.15, 0.05])
    # bin (0.8,0.9]: rows 0,1 -> |1 - 1.8| = 0.8; (0.1,0.2]: row 2 -> |1 - 0.15| = 0.85; [0,0.1]: row 3 -> 0.95
    assert stats.expected_calibration_error(np.ones((1, 4)), y, s)[0] == pytest.approx((0.8 + 0.85 + 0.95) / 4)


def test_undefined_metrics_are_nan_not_zero():
    y = np.ones(5, dtype=int)
    s = np.linspace(0.1, 0.9, 5)
    W = np.ones((1, 5))
    assert np.isnan(stats.roc_auc(W, y, s)[0])
    c = stats.confusion(W, y, np.zeros(5, dtype=int))
    assert np.isnan(stats.precision(c)[0])


def test_poisson_weights_seeded_and_first_row_ones():
    a = stats.poisson_weights(50, 20, seed=3)
    b = stats.poisson_weights(50, 20, seed=3)
    assert a.shape == (21, 50) and (a[0] == 1).all()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, stats.poisson_weights(50, 20, seed=4))
    assert abs(a[1:].mean() - 1.0) < 0.1


def test_interval_covers_and_refuses_mostly_undefined():
    rng = np.random.default_rng(0)
    rep = rng.normal(0.7, 0.02, 1000)
    low, high = stats.percentile_interval(rep, 0.95)
    assert low < 0.7 < high and high - low == pytest.approx(0.0784, abs=0.01)
    rep[:200] = np.nan
    assert stats.percentile_interval(rep, 0.95) == (None, None)


def test_bootstrap_interval_coverage_for_accuracy():
    """The 95% interval for a proportion covers the true value in about 95% of samples."""
    covered = 0
    trials = 200
    for seed in range(trials):
        rng = np.random.default_rng(1000 + seed)
        correct = rng.random(300) < 0.8
        W = stats.poisson_weights(300, 400, seed)
        acc = (W @ correct) / W.sum(axis=1)
        low, high = stats.percentile_interval(acc[1:], 0.95)
        covered += low <= 0.8 <= high
    assert 0.90 <= covered / trials <= 0.99
