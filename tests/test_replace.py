"""The replacement step's control flow, with a judge that states which programs it accepts.

The steps are judged against the model elsewhere (the slow tests in test_shared_extraction.py
run them on trained checkpoints); here a stand-in judge accepts exactly the programs a test
describes, so what the Replacer tries, and in which combination, is what is checked.
"""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from extractor.decompile.circuit import Circuit
from extractor.decompile.circuit_program import table_names
from extractor.decompile.prune import Layout
from extractor.decompile.replace import Replacer
from rasp_ir import nodes as ir
from test_prune import TOKENS, random_model, sequences


class StatedJudge:
    """Accepts a program when `rule(program)` holds; counts what it was shown."""

    task = SimpleNamespace(mode="lm")

    def __init__(self, rule, seqs):
        self.rule, self.shown = rule, []
        # (sequence, the model's decisions, the gold ones, scored positions)
        self.sets = {"all": [(s, np.zeros(len(s), int), None, np.ones(len(s), bool))
                             for s in seqs]}

    def __call__(self, program):
        return {"all": 1.0 if self.rule(program) else 0.0}

    def passes(self, program, floor):
        self.shown.append(program)
        return {"all": 1.0} if self.rule(program) else None


def _opaque(program) -> bool:
    return any(isinstance(b.value, ir.Mlp) for b in program.bindings)


def test_an_mlp_and_the_score_that_feeds_it_are_replaced_together():
    """A model whose MLP reads only its head's token average: neither the MLP alone nor the
    head's token score alone is accepted, both together are; the joint step finds the pair
    (the head named by a primitive, the MLP read as a function of its now exact output)."""
    model = random_model(layers=1, heads=1)
    circuit = Circuit(model)
    layout = Layout(circuit.graph)
    flat = layout.valid.float()
    for j, path in enumerate(circuit.graph.paths):
        if path.name in ("token", "pos", "a0_0_pos"):
            flat[layout.index("mlp", 0, j)] = 0
    both = lambda p: not _opaque(p) and "qk0_0.token.token" not in table_names(p)  # noqa: E731
    judge = StatedJudge(both, sequences(0, count=8))
    r = Replacer(circuit, flat, TOKENS, TOKENS, "softmax", judge, {"all": 0.9})
    r.replace_mlps()
    assert r.mlp_outputs == {}                      # no reading of the soft average passes
    left = r.replace_tables()
    assert "qk0_0.token.token" in left              # nor the head's score alone
    shown = len(judge.shown)
    left = r.replace_jointly(left)
    assert "qk0_0.token.token" not in left and len(judge.shown) > shown
    program = r.build()
    assert both(program)
    joint = [e for e in r.log if e.get("with") == "mlp 0"]
    assert joint and joint[0]["what"] == "qk0_0.token.token"
    assert not [e for e in r.log if e.get("what") == "mlp 0" and e.get("primitive") is None]


def test_the_joint_step_leaves_a_replaced_mlp_alone():
    """Once an MLP reads as a primitive, the joint step judges nothing more for it."""
    model = random_model(layers=1, heads=1)
    circuit = Circuit(model)
    flat = Layout(circuit.graph).valid.float()
    judge = StatedJudge(lambda p: not _opaque(p), sequences(1, count=8))
    r = Replacer(circuit, flat, TOKENS, TOKENS, "softmax", judge, {"all": 0.9})
    r.replace_mlps()
    assert r.mlp_outputs
    shown = len(judge.shown)
    left = ["qk0_0.token.token"]
    assert r.replace_jointly(left) == left and len(judge.shown) == shown
