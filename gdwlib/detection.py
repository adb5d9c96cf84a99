"""Finding mislabelled training instances, and measuring how well a score finds them.

Every detector here gives each training instance a *score*, higher meaning more likely mislabelled,
and, where it can, a *suggested* label. The scores come from what a method learns anyway:

- GDW's target class-level weight ``omega'_t`` or MW-Net's instance weight ``w``: a noisy label
  should be down-weighted, so ``1 - mean weight`` (:func:`weight_score`);
- the training loss: the small-loss criterion, noisy labels are fitted last (:func:`loss_score`);
- cleanlab's confident learning on out-of-sample predicted probabilities, the reference to
  measure against (:func:`cleanlab_issues`).

Where the true labels are known (synthetic noise), :func:`detection_metrics` says how well a score
separates wrong labels from right ones; :func:`write_label_issues` lists the suspects for a person
to look at. Everything works on plain per-instance arrays; cleanlab is imported only inside
:func:`cleanlab_issues`, so nothing else needs it installed.
"""
from __future__ import annotations

import csv
import io
import warnings
from collections.abc import Sequence, Sized
from pathlib import Path
from typing import NamedTuple

import numpy as np

COLUMNS = ("path", "given", "suggested", "score")


def _check_scores(score: np.ndarray, name: str = "score") -> np.ndarray:
    score = np.asarray(score, dtype=float)
    if score.ndim != 1:
        raise ValueError(f"{name} must be one value per instance (1-D), got shape {score.shape}")
    bad = ~np.isfinite(score)
    if bad.any():
        raise ValueError(f"{name} has {bad.sum()} NaN or infinite value(s) of {len(score)}: an instance never seen "
                         "in training has no learned weight or loss. Score it, or drop it from every array first")
    return score


def _check_same_length(**arrays: Sized) -> None:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"one value per instance is needed in each array, got lengths {lengths}")


def detection_metrics(is_wrong: np.ndarray, score: np.ndarray) -> dict[str, float | int]:
    """How well ``score`` (higher = more likely wrong) finds the wrong labels marked in ``is_wrong``.

    - ``auroc``: the probability that a random wrong label scores above a random right one (a tie
      counts 1/2); 0.5 is chance, 1 a perfect separation.
    - ``auprc``: average precision, ``sum_n (R_n - R_{n-1}) P_n`` over the distinct score thresholds
      from the highest down (scikit-learn's definition). Unlike AUROC it depends on how rare wrong
      labels are: chance level is their fraction.
    - ``precision_at_k``: the fraction of wrong labels among the ``k`` highest scores, ``k`` being the
      number of truly wrong labels (so it also equals the recall there). Instances tied at the cut-off
      count in proportion, the expected value over a random order of the ties, as AUROC counts ties.
    - ``k``: that number of wrong labels.
    """
    from sklearn.metrics import average_precision_score, roc_auc_score

    is_wrong = np.asarray(is_wrong)
    if is_wrong.dtype != bool or is_wrong.ndim != 1:
        raise ValueError(f"is_wrong must be a 1-D boolean mask (True where the given label is wrong), got dtype "
                         f"{is_wrong.dtype} and shape {is_wrong.shape}; build it as labels != true_labels")
    score = _check_scores(score)
    _check_same_length(is_wrong=is_wrong, score=score)
    k = int(is_wrong.sum())
    if k in (0, len(is_wrong)):
        raise ValueError(f"AUROC needs both wrong and right labels, but {k} of {len(is_wrong)} labels are wrong; "
                         "measure detection on a set with some noise and some clean labels")
    cutoff = np.sort(score)[-k]  # the k-th highest score
    above, tied = score > cutoff, score == cutoff
    hits = is_wrong[above].sum() + (k - above.sum()) * is_wrong[tied].mean()
    return {"auroc": float(roc_auc_score(is_wrong, score)), "auprc": float(average_precision_score(is_wrong, score)),
            "precision_at_k": float(hits / k), "k": k}


def _mean_over_epochs(values: np.ndarray, name: str) -> np.ndarray:
    """Per-instance mean of an (E, N) array over its epochs, ignoring NaN (an instance not seen in an
    epoch); an (N,) array is taken as it is. An instance seen in no epoch stays NaN, so that
    :func:`detection_metrics` refuses it rather than score it as anything."""
    values = np.asarray(values, dtype=float)
    if values.ndim == 1:
        return values.copy()
    if values.ndim != 2:
        raise ValueError(f"{name} must be (epochs, instances) or (instances,), got shape {values.shape}")
    seen = ~np.isnan(values)
    count = seen.sum(axis=0)
    total = np.where(seen, values, 0.0).sum(axis=0)
    return np.divide(total, count, out=np.full(values.shape[1], np.nan), where=count > 0)


def weight_score(weights: np.ndarray) -> np.ndarray:
    """``1 - mean learned weight``: a lower weight means a more suspect label.

    ``weights`` is GDW's target class-level weight ``omega'_t`` or MW-Net's instance weight ``w``,
    per epoch (E, N) with NaN where an instance was not seen, or already averaged (N,). Pass the
    last few epochs (e.g. ``target_weight[-5:]``): early weights have not yet told noisy from clean.
    """
    return 1.0 - _mean_over_epochs(weights, "weights")


def loss_score(losses: np.ndarray) -> np.ndarray:
    """The small-loss criterion: mean training loss per instance, a higher loss meaning a more suspect
    label (a network fits clean labels before it memorises noisy ones). Same input forms as
    :func:`weight_score`."""
    return _mean_over_epochs(losses, "losses")


def suggested_labels_from_rows(rows: np.ndarray, given: np.ndarray) -> np.ndarray:
    """From GDW's class-level weights ``omega'`` (N, C), averaged over epochs: the class other than
    the given one with the largest weight.

    This is a hypothesis to measure, not a property of GDW: the paper's Figure 5 reports that on a
    noisy instance the weight of the true class tends to increase, so the largest non-given weight
    may point at the true class.
    """
    rows = np.asarray(rows, dtype=float)
    given = np.asarray(given)
    if rows.ndim != 2 or rows.shape[1] < 2:
        raise ValueError(f"rows must be (instances, classes) with at least 2 classes, got shape {rows.shape}")
    _check_same_length(rows=rows, given=given)
    if not np.isfinite(rows).all():
        raise ValueError(f"rows has NaN or infinite weights in {(~np.isfinite(rows)).any(axis=1).sum()} instance(s): "
                         "an instance never seen in training has no weights; drop it first")
    if given.size and not (np.issubdtype(given.dtype, np.integer) and 0 <= given.min() and given.max() < rows.shape[1]):
        raise ValueError(f"given labels must be integers in [0, {rows.shape[1]}), one per row of rows")
    others = rows.copy()
    others[np.arange(len(given)), given] = -np.inf  # the given label is never suggested
    return others.argmax(axis=1)


def suggested_labels_from_probs(pred_probs: np.ndarray) -> np.ndarray:
    """The most probable class of each instance under ``pred_probs`` (N, C)."""
    pred_probs = np.asarray(pred_probs)
    if pred_probs.ndim != 2:
        raise ValueError(f"pred_probs must be (instances, classes), got shape {pred_probs.shape}")
    return pred_probs.argmax(axis=1)


class LabelIssues(NamedTuple):
    """cleanlab's verdict: a score (higher = more likely wrong), the instances it flags, and the
    most probable class as the suggested label."""
    score: np.ndarray
    flagged: np.ndarray
    suggested: np.ndarray


def cleanlab_issues(labels: np.ndarray, pred_probs: np.ndarray) -> LabelIssues:
    """Confident learning (cleanlab) on the given ``labels`` and predicted probabilities (N, C).

    ``score`` is ``1 - P[given label]`` (cleanlab's ``get_label_quality_scores`` with
    ``method="self_confidence"``), ``flagged`` is ``cleanlab.filter.find_label_issues`` with its
    defaults (pruning by the estimated noise rate).

    ``pred_probs`` must be out-of-sample: each instance predicted by a network that did not train on
    it, i.e. by k-fold cross-validation of the same network, as cleanlab's own benchmarks do. On
    in-sample probabilities a network that memorised the noisy labels agrees with them and nothing
    is found. Producing them is not this module's job.
    """
    with warnings.catch_warnings():
        # cleanlab imports tqdm.auto, which warns in a notebook kernel without ipywidgets (no bar is shown here)
        warnings.filterwarnings("ignore", message="IProgress not found")
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores

    labels, pred_probs = np.asarray(labels), np.asarray(pred_probs, dtype=float)
    if pred_probs.ndim != 2:
        raise ValueError(f"pred_probs must be (instances, classes), got shape {pred_probs.shape}")
    _check_same_length(labels=labels, pred_probs=pred_probs)
    quality = get_label_quality_scores(labels, pred_probs, method="self_confidence")
    # n_jobs=1: the result does not depend on it, and forking a process pool from a process that
    # holds torch's threads is asking for trouble
    flagged = find_label_issues(labels, pred_probs, n_jobs=1)
    return LabelIssues(score=1.0 - quality, flagged=flagged, suggested=suggested_labels_from_probs(pred_probs))


def label_issue_rows(score: np.ndarray, given: np.ndarray, suggested: np.ndarray,
                     paths: Sequence[str] | None = None) -> list[tuple[str, int | str, int | str, float]]:
    """``(path, given, suggested, score)`` per instance, most suspect (highest score) first; equal
    scores keep the instances' order, so the list is the same on every run. Without ``paths`` the
    instance's index stands in for its path. Labels are class numbers or names, as given."""
    score = _check_scores(score)
    given, suggested = np.asarray(given), np.asarray(suggested)
    paths = [str(i) for i in range(len(score))] if paths is None else list(paths)
    _check_same_length(score=score, given=given, suggested=suggested, paths=paths)
    order = np.argsort(-score, kind="stable")
    return [(paths[i], given[i].item(), suggested[i].item(), float(score[i])) for i in order]


def write_label_issues(path: str | Path, score: np.ndarray, given: np.ndarray, suggested: np.ndarray,
                       paths: Sequence[str] | None = None) -> None:
    """Write ``label_issues.csv`` (columns ``path,given,suggested,score``, rows as in
    :func:`label_issue_rows`) atomically, so a killed run never leaves half a list."""
    from .results import write_bytes

    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(label_issue_rows(score, given, suggested, paths))
    write_bytes(path, text.getvalue().encode())
