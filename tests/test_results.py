"""The results collector, the seed-spread verdicts, and the helpers the results notebooks use."""
import numpy as np
import pandas as pd
import pytest

from msvssm import results
from msvssm.train.sweep import step_gains, summarise


def test_record_replaces_a_title_and_collect_joins_in_notebook_order(tmp_path):
    folder = tmp_path / "results"
    results.record(folder, "09", "Table 4", pd.DataFrame({"accuracy": [0.5, np.nan]}, index=["a", "b"]),
                   data="synthetic DEAP", runs=["/x/runs/r1", "/x/runs/r2"])
    results.record(folder, "08", "Table 3", "first version")
    results.record(folder, "08", "Table 3", "second version")
    assert results.record("", "08", "ignored", "not collecting") is None
    assert len(list(folder.glob("08-*.md"))) == 1
    text = results.collect(folder, tmp_path / "results.md", profile="smoke", data="synthetic DEAP (tiny scale)").read_text()
    assert text.index("## 08 ") < text.index("## 09 ")
    assert "second version" in text and "first version" not in text
    assert "`r1`, `r2`" in text and "*Data:* synthetic DEAP" in text
    assert "nan" not in text.lower().split()


def _runs(values: dict[str, list[float]]) -> pd.DataFrame:
    return pd.DataFrame([{"name": n, "seed": s, "accuracy": v, "weighted_f1": v, "train_seconds": 1.0}
                         for n, vs in values.items() for s, v in enumerate(vs)])


def test_step_gains_compare_the_gain_with_the_summed_stds():
    table = summarise(_runs({"A": [0.50, 0.52, 0.48], "B": [0.60, 0.62, 0.58], "C": [0.61, 0.55, 0.67]}))
    gains = step_gains(table).set_index("step")
    assert gains.loc["A -> B", "gain"] == pytest.approx(0.10)
    assert gains.loc["A -> B", "verdict"] == "gain exceeds the spread"  # 0.10 > 0.02 + 0.02
    assert gains.loc["B -> C", "verdict"] == "within the seed-to-seed spread"  # 0.01 < 0.02 + 0.06
    one = step_gains(summarise(_runs({"A": [0.5], "B": [0.9]})))
    assert one["verdict"].iloc[0] == "one seed: unknown"
    worse = step_gains(summarise(_runs({"A": [0.9, 0.91], "B": [0.5, 0.51]})))
    assert worse["verdict"].iloc[0] == "loss exceeds the spread"


def test_first_seed_training_every_class_skips_splits_that_miss_a_class(tmp_path):
    from msvssm.data.splits import first_seed_training_every_class, read_split

    # 6 participants x 2 trials x 3 frames; class D only in participant 6's trials: a subject split
    # with participant 6 outside training misses it (and others miss A, B or C).
    rows = []
    for p in range(1, 7):
        for t in range(1, 3):
            label = "D" if p == 6 else "ABC"[(p + t) % 3]
            for f in range(3):
                rows.append({"path": f"images/{label}/s{p:02d}_t{t}_{f}.png", "participant": p, "trial": t,
                             "label": label, "status": "ok"})
    data = tmp_path / "faces"
    data.mkdir()
    pd.DataFrame(rows).to_csv(data / "manifest.csv", index=False)
    seed = first_seed_training_every_class(data, "subject")
    assert seed > 0, "the fixture should need a search (seed 0 misses a class)"
    split = read_split(data / "splits" / f"subject_seed{seed}.csv")
    assert set(split.loc[split["split"] == "train", "label"]) == {"A", "B", "C", "D"}
    for earlier in range(seed):
        s = read_split(data / "splits" / f"subject_seed{earlier}.csv")
        assert set(s.loc[s["split"] == "train", "label"]) != {"A", "B", "C", "D"}, "an earlier seed was complete"


def test_format_mean_std_says_when_there_is_one_seed():
    from msvssm.train.sweep import format_mean_std

    shown = format_mean_std(summarise(_runs({"A": [0.5, 0.7], "B": [0.25]}))).set_index("name")
    assert shown.loc["A", "accuracy"] == "0.6000 ± 0.1414"
    assert shown.loc["B", "accuracy"] == "0.2500 (1 seed)"


def test_the_readme_results_tables_are_the_committed_reproductions():
    """The README's Results blocks are generated from docs/results_cpu.md and docs/results_cpu_cv.md (make
    readme-results after make reproduce, PROFILE=cpu-cv for the second): they cannot drift."""
    from pathlib import Path

    from msvssm.results import README_BLOCKS, readme_block, results_profile

    repo = Path(__file__).resolve().parents[1]
    readme = (repo / "README.md").read_text(encoding="utf-8")
    for profile, (kept, begin, end, _) in README_BLOCKS.items():
        assert results_profile(repo / kept) == profile, f"{kept} is not a {profile} reproduction"
        shown = begin + readme.split(begin, 1)[1].split(end, 1)[0] + end
        assert shown == readme_block(repo / kept, profile), f"run make readme-results after make reproduce PROFILE={profile}"


def test_readme_block_copies_the_selected_tables_without_their_run_lists(tmp_path):
    from msvssm import results

    folder = tmp_path / "r"
    for title in results.README_TABLES:
        nb = "08" if "Table 3" in title or "Ablation" in title or "Seeds" in title else "10"
        results.record(folder, nb, title + " (x)", pd.DataFrame({"a": [1.5]}), data="synthetic DEAP", runs=["r1"])
    out = results.collect(folder, tmp_path / "results.md", profile="cpu", data="synthetic DEAP", commit="abc")
    block = results.readme_block(out)
    assert block.startswith(results.README_BEGIN) and block.endswith(results.README_END)
    assert all(f"**{t} (x)**" in block for t in results.README_TABLES) and "r1" not in block and "1.5" in block
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{results.README_BEGIN}\nold\n{results.README_END}\nrest\n")
    assert results.update_readme(readme, out) and not results.update_readme(readme, out)
    assert readme.read_text().startswith("intro\n") and readme.read_text().endswith("\nrest\n")


def test_make_readme_results_keeps_a_cpu_or_cpu_cv_reproduction_and_refuses_others(tmp_path):
    from msvssm import results

    folder = tmp_path / "r"
    for title in results.README_TABLES:
        results.record(folder, "10", title + " (x)", pd.DataFrame({"a": [2.5]}), data="synthetic DEAP", runs=["r1"])
    repo = tmp_path / "repo"
    (repo / "docs").mkdir(parents=True)
    (repo / "README.md").write_text(f"a\n{results.README_BEGIN}\n{results.README_END}\nb\n{results.README_CV_BEGIN}\n"
                                    f"{results.README_CV_END}\nc\n")
    cv = results.collect(folder, tmp_path / "cv.md", profile="cpu-cv", data="synthetic DEAP")
    assert results.keep_reproduction(cv, repo) == repo / "docs" / "results_cpu_cv.md"
    readme = (repo / "README.md").read_text()
    assert readme.split(results.README_CV_BEGIN)[1].count("2.5") == len(results.README_CV_TABLES)
    assert "2.5" not in readme.split(results.README_CV_BEGIN)[0], "the cpu block is left alone"
    smoke = results.collect(folder, tmp_path / "smoke.md", profile="smoke", data="synthetic DEAP")
    with pytest.raises(ValueError, match="profile 'smoke'"):
        results.keep_reproduction(smoke, repo)
    cpu = results.collect(folder, tmp_path / "cpu.md", profile="cpu", data="synthetic DEAP")
    assert results.keep_reproduction(cpu, repo) == repo / "docs" / "results_cpu.md"
    assert (repo / "README.md").read_text().split(results.README_BEGIN)[1].split(results.README_END)[0].count("2.5") \
        == len(results.README_TABLES)
    # a partial reproduction (some notebooks only) is refused before the committed copy or the README is touched
    before = {p.name: p.read_text() for p in [repo / "README.md", *(repo / "docs").iterdir()]}
    partial = tmp_path / "p"
    results.record(partial, "10", results.README_CV_TABLES[0] + " (x)", pd.DataFrame({"a": [9.5]}), data="d", runs=[])
    results.record(partial, "07", "kept (x)", pd.DataFrame({"a": [1.0]}), data="d", runs=[])
    said = results.collect(partial, tmp_path / "said.md", profile="cpu", data="d", notebooks=["10_protocols"]).read_text()
    assert "Notebooks executed: 10_protocols. The sections of notebooks 07 are kept from an earlier call" in said
    with pytest.raises(KeyError, match="no table titled"):
        results.keep_reproduction(results.collect(partial, tmp_path / "partial.md", profile="cpu-cv", data="d"), repo)
    assert before == {p.name: p.read_text() for p in [repo / "README.md", *(repo / "docs").iterdir()]}
