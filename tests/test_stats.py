"""msvssm.stats against scipy, textbook values and the cases that make paired tests matter."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from msvssm import stats


def test_paired_seed_test_is_scipys_ttest_rel_and_its_interval():
    from scipy.stats import ttest_rel

    a = np.array([0.850, 0.871, 0.902])
    b = np.array([0.879, 0.895, 0.928])
    test = stats.paired_seed_test(b - a)
    ref = ttest_rel(b, a)
    assert test.t == pytest.approx(ref.statistic) and test.p_t == pytest.approx(ref.pvalue)
    assert test.ci_low < test.mean_diff < test.ci_high and test.ci_low > 0
    assert test.positive == 3 and test.p_sign == pytest.approx(0.25)  # 3 of 3 positive: 2 x 1/8
    assert test.verdict() == "better in the paired test"


def test_pairing_sees_a_step_the_separate_spreads_hide():
    """Rows that move together over seeds: the unpaired rule (gain > std_a + std_b) says nothing, the paired test sees it."""
    a = np.array([0.80, 0.85, 0.90, 0.83, 0.88])
    b = a + np.array([0.012, 0.010, 0.014, 0.011, 0.013])
    assert b.mean() - a.mean() < a.std(ddof=1) + b.std(ddof=1)
    assert stats.paired_seed_test(b - a).p_t < 0.001


def test_paired_differences_from_a_per_run_table():
    per_run = pd.DataFrame({"name": ["A", "A", "B", "B", "B"], "seed": [0, 1, 0, 1, 2],
                            "accuracy": [0.5, 0.6, 0.55, 0.62, 0.7]})
    table = stats.paired_differences(per_run, "A", "B")
    assert list(table.index) == [0, 1] and np.allclose(table["diff"], [0.05, 0.02])
    with pytest.raises(ValueError, match="not in the table"):
        stats.paired_differences(per_run, "A", "C")
    assert stats.paired_seed_test([0.01]).verdict() == "one seed: no test"


def test_mcnemar_counts_only_the_discordant_images():
    a = np.array([1] * 50 + [1] * 2 + [0] * 10 + [0] * 38, dtype=bool)
    b = np.array([1] * 50 + [0] * 2 + [1] * 10 + [0] * 38, dtype=bool)
    result = stats.mcnemar(a, b)
    assert (result["only_a_right"], result["only_b_right"]) == (2, 10)
    from scipy.stats import binomtest

    assert result["p"] == pytest.approx(binomtest(10, 12, 0.5).pvalue)
    assert stats.mcnemar(a, a)["p"] == 1.0


def test_paired_bootstrap_over_images():
    rng = np.random.default_rng(0)
    a = rng.random(400) < 0.7
    b = a.copy()
    b[np.flatnonzero(~a)[:40]] = True  # b fixes 40 of a's errors and breaks nothing
    diff, low, high = stats.paired_bootstrap_images(a, b)
    assert diff == pytest.approx(0.1) and 0 < low < diff < high


def test_cluster_bootstrap_is_wider_than_treating_crops_as_independent():
    """Three people with very different accuracies: resampling people gives a much wider interval."""
    correct = np.array([1] * 90 + [0] * 10 + [1] * 50 + [0] * 50 + [1] * 10 + [0] * 90, dtype=bool)
    groups = ["p1"] * 100 + ["p2"] * 100 + ["p3"] * 100
    acc, low, high = stats.cluster_bootstrap(correct, groups)
    _, ilow, ihigh = stats.paired_bootstrap_images(np.zeros(300, bool), correct)
    assert acc == pytest.approx(0.5) and (high - low) > 3 * (ihigh - ilow)
    with pytest.raises(ValueError, match="two groups"):
        stats.cluster_bootstrap(correct[:100], groups[:100])


def test_paired_cluster_difference_counts_people_not_crops():
    """b beats a by 0.2 on each of 8 people: the sign test sees 8 of 8 (p = 2/256); one person with many crops
    where b is worse does not outvote the others, and the interval is over people."""
    from scipy.stats import binomtest

    rng = np.random.default_rng(0)
    groups, a, b = [], [], []
    for person in range(8):
        n = 400 if person == 0 else 20
        truth_a = rng.random(n) < 0.5
        groups += [f"p{person}"] * n
        a += list(truth_a)
        b += list(truth_a if person == 0 else truth_a | (rng.random(n) < 0.4))
    a, b = np.array(a), np.array(b)
    b[:40] = False  # person 0: b worse on 40 crops
    out = stats.paired_cluster_difference(a, b, groups)
    assert out["groups"] == 8 and out["b_better"] == 7 and out["a_better"] == 1
    assert out["p_sign"] == pytest.approx(binomtest(7, 8, 0.5).pvalue)
    assert out["difference"] == pytest.approx(b.mean() - a.mean())
    assert out["ci_low"] < out["difference"] < out["ci_high"]
    same = stats.paired_cluster_difference(a, a, groups)
    assert (same["difference"], same["b_better"], same["a_better"], same["p_sign"]) == (0.0, 0, 0, 1.0)
    with pytest.raises(ValueError, match="different images"):
        stats.paired_cluster_difference(a, b[:-1], groups)


def test_seeds_needed_matches_textbook_power_tables():
    """Paired t, two-sided 5 %, power 80 %: d = 1 needs 10 pairs, d = 0.5 needs 34 (Cohen; G*Power);
    unpaired, d = 0.5 needs 64 per group."""
    assert stats.seeds_needed(1.0, 1.0) == 10
    assert stats.seeds_needed(0.5, 1.0) == 34
    assert stats.seeds_needed(0.5, 1.0, paired=False) == 64
    assert stats.seeds_needed(0.019, 0.005) < stats.seeds_needed(0.019, 0.024, paired=False)


def test_bootstrap_ci_of_seeds():
    low, high = stats.bootstrap_ci([0.86, 0.88, 0.90, 0.87, 0.89])
    assert 0.86 <= low < 0.88 < high <= 0.90


def test_label_smoothing_floor_is_the_entropy_of_the_smoothed_target():
    import torch

    eps, k = 0.1, 4
    target = torch.full((k,), eps / k)
    target[0] += 1 - eps
    best = torch.nn.functional.cross_entropy(torch.log(target)[None], torch.tensor([0]), label_smoothing=eps)
    assert stats.label_smoothing_floor(eps, k) == pytest.approx(best.item(), rel=1e-6)  # reached by logits = log target
    worse = torch.nn.functional.cross_entropy(torch.tensor([[9.0, 0.0, 0.0, 0.0]]), torch.tensor([0]), label_smoothing=eps)
    assert worse.item() > stats.label_smoothing_floor(eps, k)  # over-confident logits do worse, not better
    assert stats.label_smoothing_floor(0.0, 4) == 0.0


def test_calibration_table_and_ece():
    conf = np.array([0.3, 0.35, 0.95, 0.92, 0.97, 0.55])
    correct = np.array([0, 1, 1, 1, 0, 1], dtype=bool)
    table = stats.calibration_table(conf, correct, bins=10)
    assert table["count"].sum() == 6 and list(table["low"].round(1)) == [0.2, 0.3, 0.5, 0.9]
    last = table.iloc[-1]
    assert last["count"] == 3 and last["accuracy"] == pytest.approx(2 / 3) and last["confidence"] == pytest.approx(0.9466667)
    want = sum(r["count"] / 6 * abs(r["accuracy"] - r["confidence"]) for _, r in table.iterrows())
    assert stats.expected_calibration_error(table) == pytest.approx(want)
    perfect = stats.calibration_table(np.full(10, 0.8), np.arange(10) < 8)
    assert stats.expected_calibration_error(perfect) == pytest.approx(0.0)
