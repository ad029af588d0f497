"""Grouped cross-validation read back (msvssm.crossval): pooled predictions count each crop once, intervals and
paired tests take people as the unit, and a missing or doubled fold is an error, not a quietly wrong number."""
from __future__ import annotations

import pandas as pd
import pytest

from msvssm import crossval


def _predictions(correct_by_person: dict[str, list[bool]], name="MS-VSSM", split="subject", folds=2) -> pd.DataFrame:
    rows = []
    for i, (person, verdicts) in enumerate(correct_by_person.items()):
        for k, ok in enumerate(verdicts):
            rows.append({"name": name, "split": split, "folds": folds, "fold": i % folds, "seed": 0,
                         "split_file": f"{split}_k{folds}_fold{i % folds}_seed0.csv",
                         "path": f"images/{person}_{k}.png", "participant": person, "trial": str(k % 3),
                         "label": "HVHA", "pred": "HVHA" if ok else "LVLA", "correct": ok})
    return pd.DataFrame(rows)


PEOPLE = {"1": [True] * 8 + [False] * 2, "2": [True] * 5 + [False] * 5, "3": [True] * 2 + [False] * 8,
          "4": [True] * 6 + [False] * 4}


def test_pooled_accuracy_is_over_every_crop_once_with_an_interval_over_people():
    table = crossval.cross_validated(_predictions(PEOPLE))
    row = table.iloc[0]
    assert row["accuracy"] == pytest.approx(21 / 40) and row["crops"] == 40 and row["people"] == 4
    assert row["folds"] == 2 and row["fold min"] == pytest.approx(0.5) and row["fold max"] == pytest.approx(0.55)
    assert row["ci_low"] < row["accuracy"] < row["ci_high"] and row["ci_high"] - row["ci_low"] > 0.2, "4 people: wide"


def test_a_crop_scored_by_two_folds_or_a_missing_fold_is_refused():
    twice = _predictions(PEOPLE)
    twice = pd.concat([twice, twice.iloc[[0]].assign(fold=1)], ignore_index=True)
    with pytest.raises(ValueError, match="scored by two folds"):
        crossval.cross_validated(twice)
    with pytest.raises(ValueError, match="a fold is missing"):
        crossval.cross_validated(_predictions(PEOPLE, folds=3).query("fold != 2"))


def test_against_a_reference_pairs_the_same_crops_of_the_same_split_file_and_counts_people():
    net = _predictions(PEOPLE)
    floor = _predictions({p: [False] * len(v) for p, v in PEOPLE.items()}).drop(columns="seed")
    out = crossval.against(net, floor, "constant guess").iloc[0]
    assert out["difference"] == pytest.approx(21 / 40) and out["b_better"] == 4 and out["a_better"] == 0
    assert out["p_sign"] == pytest.approx(0.125) and out["ci_low"] > 0
    assert crossval.verdict(out) == "above it on the pooled crops, but with 4 people who differ the sign test cannot go below p = 0.12"
    with pytest.raises(ValueError, match="did not score"):
        crossval.against(net, floor.iloc[1:], "constant guess")
    other_folds = floor.assign(split_file=floor["split_file"].str.replace("seed0", "seed1"))
    with pytest.raises(ValueError, match="same split file"):  # a floor of another fold assignment never pairs
        crossval.against(net, other_folds, "constant guess")
    # another network row as the reference: matched seed by seed
    other = _predictions({p: v[::-1] for p, v in PEOPLE.items()}, name="MS-VSSM + paper augmentation")
    row = crossval.against(other, net, "MS-VSSM").iloc[0]
    assert row["difference"] == pytest.approx(0.0) and row["name"] == "MS-VSSM + paper augmentation"
    with pytest.raises(ValueError, match="did not score"):
        crossval.against(other, net.assign(seed=1), "MS-VSSM")


def test_verdicts_need_the_interval_and_the_sign_test():
    both = {"ci_low": 0.02, "ci_high": 0.2, "p_sign": 0.01, "b_better": 10, "a_better": 1}
    assert crossval.verdict(both) == "above it"
    assert crossval.verdict({**both, "ci_low": -0.2, "ci_high": -0.02}) == "below it"
    assert crossval.verdict({**both, "p_sign": 0.2}) == "above it on the pooled crops, but not for enough people to pass the sign test"
    assert crossval.verdict({**both, "ci_low": -0.01}) == "not distinguishable from it"
