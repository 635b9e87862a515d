"""The bootstrap of the claims' intervals: its coverage on synthetic tables of known spread, its
resampling within checkpoints, its quantiles, and a level's seeds resampled."""

import numpy as np
import pytest

from nowrongturns.report.uncertainty import (
    interval,
    seed_draws,
    stratified_draws,
    weighted_mean,
    weighted_quantile,
)

CHECKPOINTS, MINIBATCHES = 10, 20


def test_resampling_keeps_each_row_in_its_checkpoint():
    rng = np.random.default_rng(0)
    strata = rng.permutation(np.repeat(np.arange(5), [1, 2, 3, 4, 30]))
    draws = stratified_draws(strata, 300, rng)
    assert draws.shape == (300, 40)
    assert (strata[draws] == strata).all()
    # A checkpoint of one row has no spread; one of 30 draws all of its rows.
    alone = np.flatnonzero(strata == 0)[0]
    assert (draws[:, alone] == alone).all()
    assert set(draws[:, strata == 4].ravel()) == set(np.flatnonzero(strata == 4))


def test_95_percent_intervals_cover_the_true_value_95_percent_of_the_time():
    """1,000 synthetic tables: 10 checkpoints with their own means, 20 minibatches each of a
    known spread; the interval of the mean over every minibatch covers the mean of the
    checkpoints' means 95 % +- 3 % of the time."""
    rng = np.random.default_rng(1)
    checkpoint_means = rng.normal(0.2, 0.1, CHECKPOINTS)
    strata = np.repeat(np.arange(CHECKPOINTS), MINIBATCHES)
    truth = checkpoint_means.mean()
    covered = 0
    for _ in range(1000):
        values = checkpoint_means[strata] + rng.normal(0, 0.05, len(strata))
        draws = stratified_draws(strata, 500, rng)
        low, high = interval(weighted_mean(values[draws], None))
        covered += low <= truth <= high
    assert 0.92 <= covered / 1000 <= 0.98


def test_a_weighted_quantile_with_equal_weights_is_numpys_hazen():
    rng = np.random.default_rng(2)
    for count in (1, 2, 5, 10, 11):
        values = rng.normal(size=(3, count))
        for q in (0, 0.01, 0.5, 0.9, 1):
            expected = np.quantile(values, q, axis=-1, method="hazen")
            assert weighted_quantile(values, None, q) == pytest.approx(expected)
            assert weighted_quantile(values, np.full(count, 2.5), q) == pytest.approx(expected)
        # The median is the usual one: the middle value, or the mean of the two middle ones.
        assert weighted_quantile(values, None, 0.5) == pytest.approx(np.median(values, -1))


def test_weights_pull_the_median_and_the_mean():
    values = np.array([[0.0, 1.0, 2.0]])
    assert weighted_mean(values, np.array([1.0, 1.0, 2.0]))[0] == pytest.approx(1.25)
    heavy_top = weighted_quantile(values, np.array([1.0, 1.0, 4.0]), 0.5)[0]
    assert heavy_top == pytest.approx(1.6)  # positions 1/12, 3/12, 8/12
    assert np.isnan(weighted_quantile(np.array([[1.0, np.nan]]), None, 0.5)[0])


def test_a_level_resamples_its_seeds():
    rng = np.random.default_rng(3)
    # Two seeds without minibatch spread, at 0 and 1: every draw averages two picks of them.
    run_draws = np.array([np.zeros(4000), np.ones(4000)])
    level = seed_draws(run_draws, rng)
    assert set(np.unique(level)) == {0.0, 0.5, 1.0}
    assert np.mean(level == 0.5) == pytest.approx(0.5, abs=0.03)
    assert interval(level) == (0.0, 1.0)
    # One seed: its own draws.
    assert seed_draws(run_draws[:1], rng) is not None
    assert (seed_draws(run_draws[:1], rng) == 0).all()
