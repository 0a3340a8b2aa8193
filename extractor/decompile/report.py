"""What `rasp extract` measured, as typed records: built once by the driver, written as
`PROG.report.json`, printed by the command line. The JSON schema is docs/report.md.

Three records share one base: `PrunedReport` (the default stage on a trained checkpoint),
`CompiledReport` (the default stage on a model written by `rasp compile`) and `FullReport`
(`--stage full`). Sections whose shape is a list of runs or a per-stage table (the sweep's runs,
the frontier, the LLN-A fit, the round trip) stay JSON-ready mappings; their keys are in the
schema too.
"""

from __future__ import annotations

import attrs
from attrs import field, frozen

_OMIT_NONE = {"omit_none": True}      # left out of the JSON when None (not "null")


@frozen
class ModelShape:
    layers: int
    heads: int
    d_model: int
    n_positions: int | None = field(default=None, metadata=_OMIT_NONE)
    vocab: int | None = field(default=None, metadata=_OMIT_NONE)


@frozen
class ProgramSummary:
    """The written program's size; `file` is set once it is written."""
    paths: int                        # activation variables: token, pos, one per aggregate/MLP
    score_terms: int
    table_entries: int
    bindings: int
    side_tables: int                  # distinct side-file tables the program references
    opaque_mlps: int                  # `mlp(...)` nodes left (no reading kept the match)
    lines: int | None = field(default=None, metadata=_OMIT_NONE)    # printed statements
    lam: float | None = field(default=None, metadata=_OMIT_NONE)    # the sweep run it came from
    shape_bound: dict | None = field(default=None, metadata=_OMIT_NONE)
    file: str | None = field(default=None, metadata=_OMIT_NONE)


@frozen
class Evaluation:
    """Per length bucket, the match with the model (and the task accuracy where there is one)."""
    buckets: dict                     # bucket name -> {"match": float[, "task": float]}
    sequences_per_bucket: int | None = field(default=None, metadata=_OMIT_NONE)
    seed: int | None = field(default=None, metadata=_OMIT_NONE)
    offset: int | None = field(default=None, metadata=_OMIT_NONE)
    compared: str | None = field(default=None, metadata=_OMIT_NONE)

    def worst(self) -> float:
        return min(b["match"] for b in self.buckets.values())


@frozen(kw_only=True)
class Report:
    stage: str                        # "pruned" or "full"
    kind: str                         # "trained" or "compiled"
    model: ModelShape
    program: ProgramSummary
    seconds: dict                     # step name -> seconds
    checkpoint: str | None = field(default=None, metadata=_OMIT_NONE)
    roundtrip: dict | None = field(default=None, metadata=_OMIT_NONE)   # `--verify`
    files: list | None = field(default=None, metadata=_OMIT_NONE)       # written, in order

    def to_json(self) -> dict:
        """The report as written to PROG.report.json."""
        return attrs.asdict(self, filter=lambda a, v: not (a.metadata.get("omit_none")
                                                           and v is None))

    def written(self, program_file: str, checkpoint: str, roundtrip: dict | None = None,
                files: list | None = None):
        """This report once its program is written to `program_file`; `files`: every file
        this extraction wrote (the side-file only when there is one), the report last."""
        return attrs.evolve(self, checkpoint=checkpoint, roundtrip=roundtrip, files=files,
                            program=attrs.evolve(self.program, file=program_file))


@frozen(kw_only=True)
class PrunedReport(Report):
    """The default stage on a trained checkpoint: sweep, primitives, held-out judgement."""
    task: str
    mode: str
    seed: int
    threshold: float
    settings: dict                    # ExtractSettings as given
    lln_a: dict | None                # estimated scales and the linearised model's faithfulness
    frontier: dict                    # stage -> [{"edges", "match", "lam"}] not beaten on both
    runs: list                        # every sweep run's summary, by λ
    candidates: list                  # every run taken through primitives, in order
    evaluation: Evaluation
    reached_threshold: bool
    verdict: str


@frozen(kw_only=True)
class CompiledReport(Report):
    """The default stage on a compiled model: greedy cuts judged on generated inputs."""
    seed: int
    threshold: float
    inputs: dict                      # count, max_len, exhaustive_up_to, beyond
    pruning: dict                     # method, ablation, stages
    mlp_tables: list | None = field(default=None, metadata=_OMIT_NONE)
    replacements: list | None = field(default=None, metadata=_OMIT_NONE)
    programs_judged: int | None = field(default=None, metadata=_OMIT_NONE)
    evaluation: Evaluation
    reached_threshold: bool
    verdict: str


@frozen(kw_only=True)
class FullReport(Report):
    """`--stage full`: the exact program of every path of the (linearised) model."""
    task: str | None = field(default=None, metadata=_OMIT_NONE)
    mode: str | None = field(default=None, metadata=_OMIT_NONE)
    lln_a: dict | None                # None: no LayerNorm, the rewrite is exact
