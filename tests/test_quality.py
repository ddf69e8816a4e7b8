"""evaluate (Python, Spark, Beam) against a hand-computed confusion table; calibrate on synthetic scores."""

from __future__ import annotations

import numpy as np
import pytest

from gliclass_pipelines import ConfigError, Taxonomy
from gliclass_pipelines.quality import (
    calibrate,
    evaluate,
    gold_matrix,
    plot_threshold_curves,
    score_matrix,
    with_thresholds,
    write_taxonomy,
)
from gliclass_pipelines.quality.calibrate import best_threshold

TAXONOMY = Taxonomy.from_labels(["a", "b", "c"], thresholds={"b": 0.65})


def as_list(scores: dict[str, float]) -> list[dict]:
    return [{"label": k, "score": v} for k, v in sorted(scores.items(), key=lambda kv: -kv[1])]


# Thresholds a 0.5, b 0.65, c 0.5. Row by row (predicted | gold -> counts):
# 1 {a}    | {a}          -> tp a                      top a, right
# 2 {b,c}  | "b,c"        -> tp b, tp c                top c, right
# 3 {c}    | {a,b}        -> fp c, fn a, fn b          top c, wrong
# 4 null   | {c}          -> fn c                      no top, wrong
# 5 {a,c}  | {}           -> fp a, fp c                no gold: not in top-1
# 6 {}     | {b, zzz}     -> fn b, zzz unknown         top b, right
SCORES = [
    {"a": 0.9, "b": 0.6, "c": 0.1},
    {"a": 0.2, "b": 0.7, "c": 0.8},
    {"a": 0.4, "b": 0.3, "c": 0.55},
    None,
    {"a": 0.51, "b": 0.1, "c": 0.9},
    {"a": 0.3, "b": 0.45, "c": 0.2},
]
GOLD = [["a"], "b,c", ["a", "b"], ["c"], [], ["b", "zzz"]]
# label: (tp, fp, fn, precision, recall, f1)
TABLE = {
    "a": (1, 1, 1, 0.5, 0.5, 0.5),
    "b": (1, 0, 2, 1.0, 1 / 3, 0.5),
    "c": (1, 2, 1, 1 / 3, 0.5, 0.4),
}
MICRO_F1 = 6 / 13  # 2 tp / (2 tp + fp + fn) = 6 / (6 + 3 + 4)
MACRO_F1 = (0.5 + 0.5 + 0.4) / 3
ROWS = {"rows": 6, "rows_with_gold": 5, "top1_correct": 3, "null_predictions": 1, "unknown_gold": 1}


def predictions(kind: str) -> list:
    if kind == "list":
        return [None if s is None else as_list(s) for s in SCORES]
    return list(SCORES)


def check_report(report) -> None:
    for m in report.per_label:
        tp, fp, fn, precision, recall, f1 = TABLE[m.label]
        assert (m.tp, m.fp, m.fn, m.support) == (tp, fp, fn, tp + fn)
        assert (m.precision, m.recall, m.f1) == pytest.approx((precision, recall, f1))
    assert report.micro_f1 == pytest.approx(MICRO_F1)
    assert report.macro_f1 == pytest.approx(MACRO_F1)
    assert report.top1_accuracy == pytest.approx(3 / 5)
    assert report.rows == ROWS
    assert [m.threshold for m in report.per_label] == [0.5, 0.65, 0.5]


@pytest.mark.parametrize("kind", ["list", "map"])
def test_evaluate_matches_the_hand_computed_table(kind):
    check_report(evaluate(predictions(kind), None, GOLD, TAXONOMY))


def test_report_renders_json_and_markdown():
    import json

    report = evaluate(predictions("list"), None, GOLD, TAXONOMY)
    data = json.loads(report.to_json())
    assert data["micro_f1"] == pytest.approx(MICRO_F1) and len(data["per_label"]) == 3
    text = report.to_markdown()
    assert "| c | 0.500 | 0.333 | 0.500 | 0.400 | 2 |" in text


def test_evaluate_with_a_classifier_scores_every_label(clf):
    texts = ["The home team won the match.", None, "Stocks fell on Monday."]
    gold = [["sports"], ["business"], ["business"]]
    taxonomy = Taxonomy.from_labels(["sports", "business", "weather"])
    report = evaluate(clf, texts, gold, taxonomy, threshold=0.0)
    # threshold 0: every label is predicted for the two real texts
    assert sum(m.tp + m.fp for m in report.per_label) == 6
    assert report.rows["null_predictions"] == 1
    expected = evaluate(
        clf.classify(texts, taxonomy, threshold=0.0, return_all=True), None, gold, taxonomy, threshold=0.0
    )
    assert report.as_dict() == expected.as_dict()


def test_evaluate_refuses_mismatched_rows():
    with pytest.raises(ConfigError, match="gold rows"):
        evaluate(predictions("list"), None, GOLD[:-1], TAXONOMY)


@pytest.mark.spark
@pytest.mark.parametrize("kind", ["list", "map"])
def test_spark_evaluate_matches_the_hand_computed_table(spark, kind):
    from gliclass_pipelines.spark.evaluate import evaluate_dataframe

    if kind == "list":
        schema = "labels array<struct<label:string,score:float>>, gold array<string>"
        records = [(p, g.split(",") if isinstance(g, str) else g) for p, g in zip(predictions("list"), GOLD)]
        df = spark.createDataFrame(records, schema).repartition(3)
        report = evaluate_dataframe(df, TAXONOMY, predictions_col="labels", gold_col="gold")
    else:
        schema = "scores map<string,float>, gold string"
        records = [(p, g if isinstance(g, str) else ",".join(g)) for p, g in zip(predictions("map"), GOLD)]
        df = spark.createDataFrame(records, schema)
        report = evaluate_dataframe(df, TAXONOMY, predictions_col="scores", gold_col="gold")
    check_report(report)


@pytest.mark.spark
def test_spark_evaluate_refuses_a_wrong_column(spark):
    from gliclass_pipelines.spark.evaluate import evaluate_dataframe

    df = spark.createDataFrame([(1, "a")], "labels int, gold string")
    with pytest.raises(ConfigError, match="array<struct<label,score>>"):
        evaluate_dataframe(df, TAXONOMY)
    with pytest.raises(ConfigError, match="not in the DataFrame"):
        evaluate_dataframe(df, TAXONOMY, predictions_col="nope")


@pytest.mark.beam
def test_beam_combine_fn_matches_the_hand_computed_table():
    import apache_beam as beam
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from apache_beam.testing.util import assert_that

    from gliclass_pipelines.beam.evaluate import EvaluateFn

    def matches(reports):
        assert len(reports) == 1
        check_report(reports[0])

    with beam.Pipeline(runner=FnApiRunner()) as pipeline:
        reports = (
            pipeline
            | beam.Create(list(zip(predictions("list"), GOLD)))
            | beam.Reshuffle()
            | beam.CombineGlobally(EvaluateFn(TAXONOMY))
        )
        assert_that(reports, matches)


def test_plot_writes_a_png(tmp_path):
    labels = list(TAXONOMY.labels)
    scores = score_matrix(predictions("list"), labels)
    gold = gold_matrix(GOLD, labels)
    drawn = plot_threshold_curves(scores, gold, labels, tmp_path / "pr.png")
    assert drawn == ["b", "a", "c"]  # by support, ties in label order
    assert (tmp_path / "pr.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ---- calibrate ---------------------------------------------------------------------------------------


def test_best_threshold_by_hand():
    scores = np.array([0.9, 0.8, 0.7, 0.6, 0.5])
    gold = np.array([1, 0, 1, 0, 0], dtype=bool)
    # cuts at 0.9, 0.8, 0.7, 0.6, 0.5 give F1 2/3, 1/2, 4/5, 2/3, 4/7: the best keeps 0.7 and drops 0.6
    assert best_threshold(scores, gold) == pytest.approx((0.65, 0.8))
    # precision 1 only when keeping 0.9 alone
    assert best_threshold(scores, gold, target_precision=1.0) == pytest.approx((0.85, 1.0))
    assert best_threshold(scores, np.zeros(5, dtype=bool)) is None


def synthetic(rows_per_label: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Label x: positives in [0.7, 1], negatives in [0, 0.6]; y: positives in [0.2, 0.4], negatives below
    0.1; z: two positives only."""
    rng = np.random.default_rng(seed)
    n = rows_per_label
    gold = np.zeros((n, 3), dtype=bool)
    gold[: n // 4, 0] = True
    gold[n // 4 : n // 2, 1] = True
    gold[[0, n - 1], 2] = True
    scores = np.where(gold[:, [0]], rng.uniform(0.7, 1.0, (n, 1)), rng.uniform(0.0, 0.6, (n, 1)))
    scores = np.hstack(
        [
            scores,
            np.where(gold[:, [1]], rng.uniform(0.2, 0.4, (n, 1)), rng.uniform(0.0, 0.1, (n, 1))),
            rng.uniform(0.0, 1.0, (n, 1)),
        ]
    )
    return scores, gold


def test_calibrate_finds_the_known_thresholds_and_falls_back():
    scores, gold = synthetic(400, seed=1)
    labels = ["x", "y", "z"]
    fitted = calibrate(scores, gold, labels, min_support=5, prior=0)
    top_negative_x, low_positive_x = scores[~gold[:, 0], 0].max(), scores[gold[:, 0], 0].min()
    assert fitted.thresholds["x"] == pytest.approx((top_negative_x + low_positive_x) / 2, abs=1e-4)
    assert 0.6 <= fitted.thresholds["x"] <= 0.7
    assert 0.1 <= fitted.thresholds["y"] <= 0.2
    assert fitted.fallback == ("z",) and fitted.thresholds["z"] == fitted.global_threshold


def test_calibrate_pulls_thresholds_of_rare_labels_toward_the_global_one():
    scores, gold = synthetic(400, seed=1)
    labels = ["x", "y", "z"]
    own = calibrate(scores, gold, labels, min_support=5, prior=0)
    pulled = calibrate(scores, gold, labels, min_support=5, prior=30)
    assert pulled.global_threshold == own.global_threshold
    for j, label in enumerate(labels[:2]):
        n = gold[:, j].sum()
        expected = (n * own.thresholds[label] + 30 * own.global_threshold) / (n + 30)
        assert pulled.thresholds[label] == pytest.approx(expected, abs=1e-4)
        assert pulled.thresholds[label] != pytest.approx(own.thresholds[label], abs=1e-3)
    assert pulled.thresholds["z"] == own.thresholds["z"] == own.global_threshold
    precise = calibrate(scores, gold, labels, min_support=5, prior=30, target_precision=0.9)
    assert precise.thresholds == calibrate(scores, gold, labels, min_support=5, prior=0,
                                           target_precision=0.9).thresholds  # fmt: skip


def test_auto_prior_keeps_distinct_thresholds_and_pools_noisy_ones():
    # x and y have well-supported thresholds far apart: pulling them together costs F1
    scores, gold = synthetic(400, seed=1)
    assert calibrate(scores, gold, ["x", "y", "z"], min_support=5).prior <= 10
    # 20 labels share one true threshold and have 6 positives each: their own best thresholds are noise
    rng = np.random.default_rng(3)
    gold = np.zeros((300, 20), dtype=bool)
    for j in range(20):
        gold[rng.choice(300, 6, replace=False), j] = True
    scores = np.where(gold, rng.uniform(0.45, 1.0, gold.shape), rng.uniform(0.0, 0.55, gold.shape))
    auto = calibrate(scores, gold, [f"l{j}" for j in range(20)], min_support=5)
    assert auto.prior >= 30
    labels = [f"l{j}" for j in range(20)]
    pooled = calibrate(scores, gold, labels, min_support=5, prior=float("inf"))
    assert set(pooled.thresholds.values()) == {auto.global_threshold}


def test_the_prior_flag_takes_auto_a_number_or_inf():
    import argparse

    from gliclass_pipelines.cli.quality import prior_value

    assert prior_value("auto") == "auto" and prior_value("3") == 3.0 and prior_value("inf") == float("inf")
    for bad in ("-1", "nan", "lots"):
        with pytest.raises(argparse.ArgumentTypeError):
            prior_value(bad)


def test_calibration_fitted_on_one_split_raises_f1_on_another(tmp_path):
    labels = ["x", "y", "z"]
    fit_scores, fit_gold = synthetic(400, seed=1)
    test_scores, test_gold = synthetic(400, seed=2)
    fitted = calibrate(fit_scores, fit_gold, labels, min_support=5)
    taxonomy = with_thresholds(Taxonomy.from_labels(labels, prompt="Tag it."), fitted.thresholds)
    path = tmp_path / "taxonomy.yaml"
    write_taxonomy(taxonomy, path)
    loaded = Taxonomy.from_file(path)
    assert loaded == taxonomy and loaded.prompt == "Tag it."
    rows = [dict(zip(labels, row)) for row in test_scores]
    gold = [[label for label, g in zip(labels, row) if g] for row in test_gold]
    before = evaluate(rows, None, gold, Taxonomy.from_labels(labels)).micro_f1
    after = evaluate(rows, None, gold, loaded).micro_f1
    assert after > before + 0.1


def test_calibrate_refuses_bad_input():
    with pytest.raises(ConfigError, match="rows x 2 labels"):
        calibrate(np.zeros((3, 3)), np.zeros((3, 3), dtype=bool), ["a", "b"])
    with pytest.raises(ConfigError, match="min_support"):
        calibrate(np.zeros((3, 2)), np.zeros((3, 2), dtype=bool), ["a", "b"], min_support=0)
    with pytest.raises(ConfigError, match="prior"):
        calibrate(np.zeros((3, 2)), np.zeros((3, 2), dtype=bool), ["a", "b"], prior=-1)
    with pytest.raises(ConfigError, match="prior"):
        calibrate(np.zeros((3, 2)), np.zeros((3, 2), dtype=bool), ["a", "b"], prior="best")
