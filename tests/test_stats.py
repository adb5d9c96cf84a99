"""WeightStats, the source of Figures 3-6, on a batch built and counted by hand."""
import numpy as np
import pytest
import torch

from gdwlib.stats import WeightStats

# C = 4 classes, five instances (training-set index in brackets):
#   i0 [7]: label 1, true 1 (clean)        i1 [3]: label 2, true 0 (noisy)
#   i2 [5]: label 3, true 3 (clean)        i3 [0]: label 3, true 1 (noisy)
#   i4 [9]: label 0, true unknown (-1)
LABELS = torch.tensor([1, 2, 3, 3, 0])
TRUE = torch.tensor([1, 0, 3, 1, -1])
INDEX = torch.tensor([7, 3, 5, 0, 9])
W = torch.tensor([0.9, 0.1, 0.8, 0.2, 0.5])
# +1: omega' > omega (increased), 0: equal (not increased), -1: decreased
CHANGE = torch.tensor([[+1, -1, +1, 0],
                       [+1, -1, -1, +1],
                       [-1, +1, +1, -1],
                       [-1, -1, -1, +1],
                       [+1, +1, +1, +1]])
OMEGA = torch.ones(5, 4)
OMEGA_PRIME = OMEGA + 0.5 * CHANGE

# Counted by hand, [increased, total]:
#   non-target weights of clean instances: i0 cols 0, 2, 3 (+, +, =), i2 cols 0, 1, 2 (-, +, +) -> 4 of 6
#   true-target weights of noisy instances: i1 col 0 (+), i3 col 1 (-)                           -> 1 of 2
#   other non-target weights of noisy ones: i1 cols 1, 3 (-, +), i3 cols 0, 2 (-, -)             -> 1 of 4
#   omega_{C-2} on instances labelled C-1:  i2 col 2 (+), i3 col 2 (-)                           -> 1 of 2
#   i4 (true label unknown, label 0) is in none of them.
EXPECTED_COUNTS = {"nontarget_clean": [4, 6], "truetarget_noisy": [1, 2], "nontarget_noisy": [1, 4],
                   "penultimate_on_last": [1, 2]}


def recorded(tracked=(3, 9, 11)):
    stats = WeightStats(num_train=12, num_classes=4, tracked=np.array(tracked))
    stats.start_epoch(0)
    stats.record(LABELS, TRUE, INDEX, W, OMEGA, OMEGA_PRIME)
    return stats


def test_category_counts_and_ratios_by_hand():
    stats = recorded()
    ratios = stats.end_epoch()
    assert stats.epochs[0]["counts"] == EXPECTED_COUNTS
    assert ratios == pytest.approx({"nontarget_clean": 4 / 6, "truetarget_noisy": 1 / 2, "nontarget_noisy": 1 / 4,
                                    "penultimate_on_last": 1 / 2})


def test_counts_add_up_over_the_batches_of_an_epoch_and_restart_with_the_next():
    stats = recorded()
    stats.record(LABELS, TRUE, INDEX, W, OMEGA, OMEGA_PRIME)
    stats.end_epoch()
    assert stats.epochs[0]["counts"] == {k: [2 * a, 2 * b] for k, (a, b) in EXPECTED_COUNTS.items()}
    stats.start_epoch(1)
    clean = torch.tensor([True, False, True, False, False])  # i0 and i2 only: no noisy instance
    stats.record(LABELS[clean], TRUE[clean], INDEX[clean], W[clean], OMEGA[clean], OMEGA_PRIME[clean])
    ratios = stats.end_epoch()
    assert ratios["nontarget_clean"] == pytest.approx(4 / 6)
    assert np.isnan(ratios["truetarget_noisy"]) and np.isnan(ratios["nontarget_noisy"])
    assert ratios["penultimate_on_last"] == pytest.approx(1.0)  # i2 col 2 increased


def test_target_and_instance_weights_land_at_their_training_index():
    stats = recorded()
    stats.end_epoch()
    arrays = stats.arrays()
    target, instance = arrays["target_weight"][0], arrays["instance_weight"][0]
    # omega'_label: i0 col 1 (-), i1 col 2 (-), i2 col 3 (-), i3 col 3 (+), i4 col 0 (+)
    expected = np.full(12, np.nan, dtype=np.float32)
    expected[[7, 3, 5, 0, 9]] = [0.5, 0.5, 0.5, 1.5, 1.5]
    np.testing.assert_array_equal(target, expected)
    expected[[7, 3, 5, 0, 9]] = [0.9, 0.1, 0.8, 0.2, 0.5]
    np.testing.assert_array_equal(instance, expected)


def test_tracked_rows_hold_both_stages_of_the_tracked_instances_only():
    stats = recorded(tracked=(3, 9, 11))
    stats.end_epoch()
    rows = stats.arrays()["tracked_rows"][0]             # (K, 2, C)
    np.testing.assert_array_equal(rows[0, 0], np.ones(4))             # index 3 is i1
    np.testing.assert_array_equal(rows[0, 1], [1.5, 0.5, 0.5, 1.5])
    np.testing.assert_array_equal(rows[1, 1], [1.5, 1.5, 1.5, 1.5])   # index 9 is i4
    assert np.isnan(rows[2]).all()                                    # index 11 was not in the batch
    assert stats.arrays()["increased"].tolist() == [[EXPECTED_COUNTS[k] for k in EXPECTED_COUNTS]]
