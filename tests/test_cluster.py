"""The sweep on a real cluster (pytest -m cluster; needs the ray and dask extras): a local Ray
(`ray.init(num_cpus=2)`) and a Dask `LocalCluster` of two one-thread workers each run the
README's quick extraction of the shipped checkpoint, and everything must equal the local
process pool's extraction: the runs (summaries and the cached tensors' bytes), the program and
the held-out numbers. Each cluster has two workers, as the local pool has, so the sweep
proposes the same λ.
"""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from rasp_ir.cli import main

pytestmark = pytest.mark.cluster

MAJORITY = Path(__file__).resolve().parent.parent / "examples" / "bin_majority"


def extract(capsys, out: Path, *options) -> dict:
    assert main(["extract", str(MAJORITY), "--quick", "-o", str(out), "--quiet", "--json",
                 *options]) == 0
    return json.loads(capsys.readouterr().out)["result"]


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """The local process pool's extraction (two workers, the default)."""
    out = tmp_path_factory.mktemp("local") / "majority.rasp"
    buffer = io.StringIO()                   # capsys is per test; this fixture is per module
    with contextlib.redirect_stdout(buffer):
        assert main(["extract", str(MAJORITY), "--quick", "-o", str(out), "--quiet",
                     "--json"]) == 0
    return out, json.loads(buffer.getvalue())["result"]


def timeless(runs: list[dict]) -> list[dict]:
    return [{**r, "stages": [{k: v for k, v in st.items() if k != "seconds"}
                             for st in r["stages"]]} for r in runs]


def same_as_local(local, out: Path, report: dict) -> None:
    local_out, local_report = local
    assert timeless(report["runs"]) == timeless(local_report["runs"])
    assert report["evaluation"] == local_report["evaluation"]
    assert {**report["program"], "file": None} == {**local_report["program"], "file": None}
    assert out.read_text() == local_out.read_text()
    ours, theirs = out.with_suffix(".runs"), local_out.with_suffix(".runs")
    names = sorted(p.name for p in ours.glob("*.safetensors"))
    assert len(names) == len(report["runs"])            # a cluster's sweep runs no guesses
    # the local pool may also have cached a guess its idle worker ran and no round asked for
    # (extractor/decompile/sweep.py): every run the cluster made is one of the local ones
    assert set(names) <= {p.name for p in theirs.glob("*.safetensors")}
    for name in names:                       # the same masks and learned tensors, bit for bit
        assert (ours / name).read_bytes() == (theirs / name).read_bytes(), name


def test_a_ray_cluster_extracts_what_the_local_pool_does(local, tmp_path, capsys):
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        out = tmp_path / "majority.rasp"
        report = extract(capsys, out, "--executor", "ray")
        same_as_local(local, out, report)
        assert ray.is_initialized()          # the executor leaves the caller's Ray running
    finally:
        ray.shutdown()


def test_a_dask_cluster_extracts_what_the_local_pool_does(local, tmp_path, capsys):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=None) as cluster:
        out = tmp_path / "majority.rasp"
        report = extract(capsys, out, "--executor", f"dask:{cluster.scheduler_address}")
        same_as_local(local, out, report)
