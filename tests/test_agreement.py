"""rasp_ir/agreement.py: the one rule by which `rasp equiv`, `rasp verify`, the extraction
judges and the round trip decide that two outputs agree."""

from __future__ import annotations

import numpy as np

from rasp_ir import agreement as rule
from rasp_ir.compare import View, agreement


def test_numbers_agree_within_the_tolerance_relative_to_the_larger():
    a = np.array([0.0, 1.0, 1e6, 1e6, -3.0, np.inf, np.inf, np.nan, 0.0])
    b = np.array([5e-7, 1.0 + 2e-6, 1e6 + 0.9, 1e6 + 1.1, -3.0, np.inf, -np.inf, np.nan, 2e-6])
    want = [True, False, True, False, True, True, False, False, False]
    assert rule.close(a, b).tolist() == want
    assert rule.close(b, a).tolist() == want             # symmetric
    assert rule.close(1.0, 1.5, tolerance=0.5)


def test_mixed_values_agree_by_the_same_rule():
    a = np.array(["x", 1.0, True, 2, np.inf, np.inf], dtype=object)
    b = np.array(["x", 1.0 + 1e-7, 1, 2.5, 1.0, np.inf], dtype=object)
    # a bool is a categorical value, compared exactly (True == 1 in Python, as before)
    assert rule.same_values(a, b).tolist() == [True, True, True, False, False, True]
    assert rule.same_values(np.array([1, 2]), np.array([1.0, 2.0 + 1e-9])).all()


def test_tokens_are_the_argmax_first_on_ties():
    scores = np.array([[[0.1, 0.7, 0.7], [2.0, 2.0, -1.0], [-1.0, -2.0, -0.5]]])
    assert rule.tokens(scores).tolist() == [[1, 0, 2]]


def test_a_sigmoid_and_its_logits_give_the_same_sets():
    logits = np.array([[-2.0, 0.0, 1e-9, 3.0]])
    probabilities = 1 / (1 + np.exp(-logits))
    sets = rule.token_sets(logits, rule.LOGIT)
    assert sets.tolist() == [[False, False, True, True]]
    assert (rule.token_sets(probabilities, rule.PROBABILITY) == sets).all()
    assert rule.same_sets(sets, sets).tolist() == [True]
    assert rule.same_sets(sets, ~sets).tolist() == [False]


def test_a_sequence_agrees_where_it_is_scored():
    positions = np.array([[True, False, True], [True, True, True]])
    assert rule.sequences_agree(positions).tolist() == [False, True]
    scored = np.array([[True, False, True], [True, True, True]])
    assert rule.sequences_agree(positions, scored).tolist() == [True, True]


def test_equiv_views_use_the_rule():
    number = View("number")
    a, b = np.array([[1.0, 1e6]]), np.array([[1.0 + 5e-7, 1e6 + 2.0]])
    assert agreement(number, a, number, b).tolist() == rule.close(a, b).tolist()
    vector = View("vector", ("p", "q"))
    assert agreement(vector, np.ones((1, 2, 2)), vector, np.ones((1, 2, 2)) + 1e-7).all()
