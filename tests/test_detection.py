"""Finding mislabelled instances: the metrics worked out by hand, the scores on tiny arrays, the real
cleanlab on synthetic probabilities, and the label_issues.csv list."""
import csv
import warnings

import numpy as np
import pytest

from gdwlib.detection import (COLUMNS, cleanlab_issues, detection_metrics, label_issue_rows, loss_score,
                              suggested_labels_from_probs, suggested_labels_from_rows, weight_score,
                              write_label_issues)

# Eight instances, three wrong labels (W), five right ones (R); instances 2 and 3 tie at 0.7.
#   index:  0    1    2    3    4    5    6    7
#   score: .9   .8   .7   .7   .5   .4   .3   .1
#          W    R    W    R    R    W    R    R
TIED_SCORE = np.array([.9, .8, .7, .7, .5, .4, .3, .1])
TIED_WRONG = np.array([1, 0, 1, 0, 0, 1, 0, 0], dtype=bool)
# AUROC, 3 x 5 = 15 (wrong, right) pairs; each wrong label against the right ones:
#   .9 beats all 5 -> 5;  .7 beats .5 .3 .1, ties .7 (1/2), loses to .8 -> 3.5;  .4 beats .3 .1 -> 2
#   (5 + 3.5 + 2) / 15 = 0.7
# Average precision, recall steps at the distinct thresholds .9 (1 W of 1), .7 (2 W of 4), .4 (3 W of 6):
#   1/3 * 1 + 1/3 * 2/4 + 1/3 * 3/6 = 2/3
# precision@3: .9 and .8 hold 1 wrong; the third place goes to one of the tied pair (1 wrong of 2) -> 1/2
#   (1 + 1/2) / 3 = 1/2
TIED_EXPECTED = {"auroc": 0.7, "auprc": 2 / 3, "precision_at_k": 0.5, "k": 3}

# Six instances, no ties, three wrong:
#   score: .9 W  .8 R  .6 W  .4 R  .2 W  .1 R
# AUROC: (3 + 2 + 1) / 9 = 2/3.  AP: recall steps at ranks 1, 3, 5: (1 + 2/3 + 3/5) / 3 = 34/45.
# precision@3: W R W -> 2/3.
PLAIN_SCORE = np.array([.9, .8, .6, .4, .2, .1])
PLAIN_WRONG = np.array([1, 0, 1, 0, 1, 0], dtype=bool)
PLAIN_EXPECTED = {"auroc": 2 / 3, "auprc": 34 / 45, "precision_at_k": 2 / 3, "k": 3}


@pytest.mark.parametrize("wrong, score, expected", [(TIED_WRONG, TIED_SCORE, TIED_EXPECTED),
                                                    (PLAIN_WRONG, PLAIN_SCORE, PLAIN_EXPECTED)],
                         ids=["ties", "no-ties"])
def test_metrics_equal_the_hand_worked_values(wrong, score, expected):
    assert detection_metrics(wrong, score) == pytest.approx(expected)


def test_metrics_of_a_perfect_and_of_a_reversed_score():
    wrong = np.array([0, 1, 0, 1, 0], dtype=bool)
    perfect = np.array([.1, .9, .2, .8, .3])
    assert detection_metrics(wrong, perfect) == pytest.approx({"auroc": 1, "auprc": 1, "precision_at_k": 1, "k": 2})
    # reversed: the wrong labels score lowest and come 4th and 5th: AP = 1/2 * 1/4 + 1/2 * 2/5 = 0.325
    assert detection_metrics(wrong, -perfect) == pytest.approx({"auroc": 0, "auprc": 0.325, "precision_at_k": 0,
                                                                "k": 2})


def test_precision_at_k_does_not_depend_on_the_order_of_tied_instances():
    # the same instances listed in another order give the same metrics
    order = np.array([3, 2, 7, 6, 5, 4, 1, 0])
    assert detection_metrics(TIED_WRONG[order], TIED_SCORE[order]) == pytest.approx(TIED_EXPECTED)


def test_a_nan_score_is_refused_with_how_many_and_why():
    score = TIED_SCORE.copy()
    score[[1, 4]] = np.nan
    with pytest.raises(ValueError, match=r"2 NaN or infinite value\(s\) of 8.*never seen in training"):
        detection_metrics(TIED_WRONG, score)


@pytest.mark.parametrize("wrong", [np.zeros(8, bool), np.ones(8, bool)], ids=["none-wrong", "all-wrong"])
def test_a_single_class_of_labels_is_refused(wrong):
    with pytest.raises(ValueError, match="AUROC needs both wrong and right labels"):
        detection_metrics(wrong, TIED_SCORE)


def test_mismatched_or_malformed_inputs_are_refused():
    with pytest.raises(ValueError, match="lengths"):
        detection_metrics(TIED_WRONG, TIED_SCORE[:-1])
    with pytest.raises(ValueError, match="boolean mask.*labels != true_labels"):
        detection_metrics(TIED_WRONG.astype(int), TIED_SCORE)
    with pytest.raises(ValueError, match=r"1-D"):
        detection_metrics(TIED_WRONG, TIED_SCORE[None])


# Weights of four instances over three epochs; NaN where an instance was not seen in that epoch.
EPOCH_WEIGHTS = np.array([[1.0, np.nan, 0.2, np.nan],
                          [0.5, 0.4, np.nan, np.nan],
                          [np.nan, 0.6, 0.4, np.nan]])
# means over the epochs it was seen: (1 + .5)/2 = .75, (.4 + .6)/2 = .5, (.2 + .4)/2 = .3, never seen -> NaN


def test_weight_score_is_one_minus_the_mean_over_seen_epochs():
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an instance never seen is no "mean of empty slice" warning
        score = weight_score(EPOCH_WEIGHTS)
    np.testing.assert_allclose(score, [0.25, 0.5, 0.7, np.nan])
    np.testing.assert_allclose(weight_score(np.array([0.75, 0.5, 0.3])), [0.25, 0.5, 0.7])


def test_loss_score_is_the_mean_loss_over_seen_epochs():
    np.testing.assert_allclose(loss_score(EPOCH_WEIGHTS), [0.75, 0.5, 0.3, np.nan])
    np.testing.assert_allclose(loss_score(np.array([2.0, 0.1])), [2.0, 0.1])


def test_an_instance_never_seen_cannot_be_measured():
    wrong = np.array([True, False, True, False])
    with pytest.raises(ValueError, match="1 NaN"):
        detection_metrics(wrong, weight_score(EPOCH_WEIGHTS))


def test_scores_refuse_other_shapes():
    with pytest.raises(ValueError, match="epochs, instances"):
        weight_score(np.ones((2, 3, 4)))


def test_suggested_label_from_rows_is_the_largest_other_class():
    rows = np.array([[0.2, 1.5, 0.9],    # given 1, the largest: the suggestion is the next, 2
                     [0.7, 0.1, 0.3],    # given 2: class 0
                     [0.4, 0.4, 2.0]])   # given 0: class 2
    np.testing.assert_array_equal(suggested_labels_from_rows(rows, np.array([1, 2, 0])), [2, 0, 2])


def test_suggested_label_from_rows_is_never_the_given_one():
    rng = np.random.default_rng(0)
    rows = rng.random((500, 4))
    given = rows.argmax(axis=1)   # the hardest case: the given class holds the largest weight
    suggested = suggested_labels_from_rows(rows, given)
    assert not (suggested == given).any()
    np.testing.assert_array_equal(suggested, np.argsort(rows, axis=1)[:, -2])


def test_suggested_label_from_rows_refuses_bad_input():
    with pytest.raises(ValueError, match="lengths"):
        suggested_labels_from_rows(np.ones((3, 2)), np.array([0, 1]))
    with pytest.raises(ValueError, match=r"integers in \[0, 2\)"):
        suggested_labels_from_rows(np.ones((2, 2)), np.array([0, 2]))
    with pytest.raises(ValueError, match="NaN"):
        suggested_labels_from_rows(np.array([[1.0, np.nan], [1.0, 0.5]]), np.array([0, 1]))


def test_suggested_label_from_probs_is_the_most_probable_class():
    probs = np.array([[0.1, 0.7, 0.2], [0.5, 0.2, 0.3]])
    np.testing.assert_array_equal(suggested_labels_from_probs(probs), [1, 0])


def test_cleanlab_finds_flipped_labels_in_confident_probabilities():
    # 200 instances, 3 classes: probabilities confident in the true class, then 20 labels moved to another class
    rng = np.random.default_rng(0)
    n, c = 200, 3
    true = rng.integers(0, c, n)
    logits = rng.normal(0, 1, (n, c))
    logits[np.arange(n), true] += 4
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    labels = true.copy()
    flipped = rng.choice(n, 20, replace=False)
    labels[flipped] = (true[flipped] + rng.integers(1, c, 20)) % c
    wrong = labels != true

    issues = cleanlab_issues(labels, probs)
    np.testing.assert_allclose(issues.score, 1 - probs[np.arange(n), labels])  # self-confidence, by definition
    assert issues.flagged.dtype == bool and issues.flagged.shape == (n,)
    assert (issues.flagged & wrong).sum() >= 16
    assert (issues.flagged & ~wrong).sum() <= 5
    assert detection_metrics(wrong, issues.score)["auroc"] > 0.9
    assert (issues.suggested[wrong] == true[wrong]).mean() >= 0.8


def test_cleanlab_issues_refuses_mismatched_lengths():
    with pytest.raises(ValueError, match="lengths"):
        cleanlab_issues(np.array([0, 1]), np.full((3, 2), 0.5))


def test_rows_are_most_suspect_first_with_ties_in_index_order():
    score = np.array([0.2, 0.9, 0.5, 0.9, 0.1])
    rows = label_issue_rows(score, given=np.array([0, 1, 2, 0, 1]), suggested=np.array([1, 2, 0, 2, 0]))
    assert rows == [("1", 1, 2, 0.9), ("3", 0, 2, 0.9), ("2", 2, 0, 0.5), ("0", 0, 1, 0.2), ("4", 1, 0, 0.1)]


def test_label_issues_csv(tmp_path):
    path = tmp_path / "label_issues.csv"
    write_label_issues(path, score=np.array([0.3, 0.8, 0.55]), given=np.array([2, 0, 1]),
                       suggested=np.array([1, 1, 0]), paths=["a.png", "b.png", "c.png"])
    with open(path, newline="") as f:
        table = list(csv.reader(f))
    assert table == [list(COLUMNS), ["b.png", "0", "1", "0.8"], ["c.png", "1", "0", "0.55"],
                     ["a.png", "2", "1", "0.3"]]
    assert COLUMNS == ("path", "given", "suggested", "score")
    assert [p.name for p in tmp_path.iterdir()] == ["label_issues.csv"]  # no temporary file left behind


def test_label_issues_csv_refuses_mismatched_lengths_and_writes_nothing(tmp_path):
    path = tmp_path / "label_issues.csv"
    with pytest.raises(ValueError, match="lengths"):
        write_label_issues(path, score=np.array([0.3, 0.8]), given=np.array([2, 0, 1]), suggested=np.array([1, 1, 0]))
    with pytest.raises(ValueError, match="lengths"):
        write_label_issues(path, score=np.array([0.3, 0.8]), given=np.array([2, 0]), suggested=np.array([1, 1]),
                           paths=["a.png"])
    with pytest.raises(ValueError, match="NaN"):
        write_label_issues(path, score=np.array([0.3, np.nan]), given=np.array([2, 0]), suggested=np.array([1, 1]))
    assert list(tmp_path.iterdir()) == []
