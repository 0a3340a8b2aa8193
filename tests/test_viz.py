"""Pictures (rasp_ir/viz, `rasp report`, `rasp draw`, `rasp attention`) as HTML text: the
sections and figures are there, nothing is fetched from the network, tables are labelled and
hold the program's values, and asking without matplotlib says how to install it. The pages as
a browser shows them are tested in test_browser.py (`pytest -m browser`)."""

from __future__ import annotations

import json
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from rasp_ir.diagnostics import RaspError

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
EXAMPLES = ROOT / "examples"

pytest.importorskip("matplotlib")


def run_cli(*argv) -> int:
    from rasp_ir.cli import main
    return main([str(a) for a in argv])


@pytest.fixture
def extraction(tmp_path) -> Path:
    """The shipped bin_majority extraction (`rasp extract examples/bin_majority --quick`),
    copied where a test may write beside it."""
    for f in DATA.glob("bin_majority.*"):
        shutil.copy(f, tmp_path / f.name)
    return tmp_path / "bin_majority.rasp"


def offline(page: str) -> None:
    """Nothing in the page is loaded from elsewhere: no script or style source, no image or
    link to another host."""
    assert not re.search(r"<script[^>]*\bsrc=", page)
    assert not re.search(r"<link[^>]*\bhref=", page)
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)
    assert "@import" not in page


def test_report_of_the_shipped_extraction(extraction, capsys):
    assert run_cli("report", extraction) == 0
    page = (extraction.with_suffix(".html")).read_text(encoding="utf-8")
    offline(page)
    for anchor in ("program", "accuracy", "pruning", "tables", "mlps", "replacements",
                   "settings", "frontier-components", "frontier-paths", "frontier-products"):
        assert f'id="{anchor}"' in page, anchor
    # each statement is a block linked to the pictures of its tables, and back
    assert 'id="stmt-mean_token"' in page and 'id="stmt-logits"' in page
    assert 'href="#table-1"' in page and 'href="#stmt-mean_token"' in page
    # the projection (inp == out) as a labelled 6 x 6 identity, readable on hover
    cells = json.loads(re.search(r'<script type="application/json" id="table-2-cells">(.*?)'
                                 r"</script>", page).group(1))
    assert cells["rows"] == ["0", "1", "<bos>", "<sep>", "<eos>", "<pad>"]
    assert np.array_equal(np.array(cells["values"]), np.eye(6))
    assert page.count("<svg") >= 6      # buckets, three frontiers, two tables
    assert "wrote" in capsys.readouterr().out


def test_report_draws_side_file_tables_and_mlp_views(extraction):
    """A program with a side-file score table, and a report whose MLP was replaced by a
    primitive: the table's heatmap, and the MLP's output beside the primitive's."""
    from extractor.decompile.extract import write_mlp_views
    from rasp_ir.tables import write_tables
    from rasp_ir import nodes as ir
    text = extraction.read_text()
    text = text.replace("mean_token = aggregate(s=select(k=tokens, op=False), v=tokens);",
                        'mean_token = aggregate(s=select(k=tokens, q=tokens, '
                        'op=table("qk0_0.token.token")), v=tokens);')
    extraction.write_text(text)
    vocab = ("0", "1", "<bos>", "<sep>", "<eos>", "<pad>")
    values = tuple(tuple(float(i - j) for j in range(6)) for i in range(6))
    write_tables(extraction.with_suffix(".tables.safetensors"),
                 {"qk0_0.token.token": ir.Matrix(vocab, vocab, values,
                                                 name="qk0_0.token.token")})
    report = json.loads(extraction.with_suffix(".report.json").read_text())
    report["candidates"][0]["replacements"].insert(
        0, {"what": "mlp 0", "primitive": "harden(a0_0_token)", "match": 1.0, "explained": 0.93})
    extraction.with_suffix(".report.json").write_text(json.dumps(report))
    rng = np.random.default_rng(0)
    write_mlp_views({"mlp 0": {"labels": ["0", "1"], "model": rng.normal(size=(2, 16)),
                               "primitive": rng.normal(size=(2, 16)),
                               "count": np.array([30.0, 12.0])}},
                    extraction.with_suffix(".mlps.safetensors"))
    assert run_cli("report", extraction, "-o", extraction.parent / "r.html") == 0
    page = (extraction.parent / "r.html").read_text(encoding="utf-8")
    offline(page)
    assert "qk0_0.token.token" in page and "(side-file table)" in page
    assert 'id="mlp-0"' in page
    assert "the MLP&#x27;s output" in page or "the MLP's output" in page
    assert "harden(a0_0_token): its write" in page


def test_report_shows_a_failed_read_out_with_the_figures_it_has(extraction):
    """A read-back of the logits that kept nothing shows its best try with the figures its
    log has (an agreement, no variance explained: sort's report crashed the page)."""
    report = json.loads(extraction.with_suffix(".report.json").read_text())
    report["candidates"][0]["replacements"].append(
        {"what": "logits", "readings": 4, "best": "indices % 2", "agreement": 0.005})
    extraction.with_suffix(".report.json").write_text(json.dumps(report))
    assert run_cli("report", extraction, "-o", extraction.parent / "r.html") == 0
    page = (extraction.parent / "r.html").read_text(encoding="utf-8")
    assert "nothing kept; best tried indices % 2: agreement 0.005" in page


def test_report_shows_why_an_mlp_stays(extraction):
    """An MLP that stays lists its best lookup and its best sum with their figures, or why
    no sum was tried (the report's words for sort's and interleave's MLPs)."""
    report = json.loads(extraction.with_suffix(".report.json").read_text())
    report["candidates"][0]["replacements"] += [
        {"what": "mlp 0", "primitive": None, "inputs": {"token": 154, "a0_0_token": 154},
         "readings": 2, "reached": 3390, "sum": "a0_0_token + token + harden(a0_0_token)",
         "sum_explained": 0.9846, "sum_sample_agreement": 0.9542, "sum_match": 0.82},
        {"what": "mlp 1", "primitive": None, "best": "tokens", "explained": 0.678,
         "match": 0.28, "sum": "a head or a later MLP reads it"}]
    extraction.with_suffix(".report.json").write_text(json.dumps(report))
    assert run_cli("report", extraction, "-o", extraction.parent / "r.html") == 0
    page = (extraction.parent / "r.html").read_text(encoding="utf-8")
    assert ("nothing kept, stays an mlp; best sum a0_0_token + token + harden(a0_0_token): "
            "explains 98.5%, match 0.8200, sample agreement 0.954") in page
    assert ("stays an mlp; best tried tokens: explains 67.8%, match 0.2800; no sum: a head "
            "or a later MLP reads it") in page


def test_report_errors_name_the_file(tmp_path, capsys):
    program = tmp_path / "p.rasp"
    shutil.copy(EXAMPLES / "reverse.rasp", program)
    assert run_cli("report", program) != 0
    assert "D702" in capsys.readouterr().err
    (tmp_path / "p.report.json").write_text("{not json")
    assert run_cli("report", program) != 0
    err = capsys.readouterr().err
    assert "D702" in err and "p.report.json" in err and "Traceback" not in err
    (tmp_path / "p.report.json").write_text('{"stage": "pruned"}')
    assert run_cli("report", program) != 0
    assert "missing 'kind'" in capsys.readouterr().err
    assert run_cli("report", program, "-o", tmp_path / "p.txt") != 0
    assert "D703" in capsys.readouterr().err


def test_without_matplotlib_the_error_says_how_to_install(monkeypatch, extraction, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)       # import matplotlib fails
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    from rasp_ir.viz import matplotlib_figure
    with pytest.raises(RaspError) as info:
        matplotlib_figure()
    d = info.value.diagnostics[0]
    assert d.code == "D701" and "pip install 'rasp-ir[viz]'" in d.hint
    assert run_cli("report", extraction) != 0
    assert "pip install 'rasp-ir[viz]'" in capsys.readouterr().err
    assert not extraction.with_suffix(".html").exists()
    # the other commands do not need it
    assert run_cli("run", EXAMPLES / "reverse.rasp", "hello") == 0
    assert "olleh" in capsys.readouterr().out


def test_flow_of_reverse():
    import grammar
    from rasp_ir.viz.flow import flow_items
    program = grammar.load(EXAMPLES / "reverse.rasp")
    seq, items = flow_items(program, "hello")
    by_key = {i.key: i for i in items}
    assert [str(v) for v in by_key["reverse"].values] == list("olleh")
    assert by_key["reverse"].output
    # the selector flip on this input: query q reads key 4 - q (an anti-diagonal)
    assert np.array_equal(by_key["flip"].values, np.fliplr(np.eye(5)))
    assert set(by_key["reverse"].reads) == {"flip", "tokens"}
    depth = {i.key: i.depth for i in items}
    assert depth["tokens"] == 0 and depth["reverse"] > depth["flip"] > depth["opp"]


def test_draw_writes_svg_and_html(tmp_path, capsys):
    svg = tmp_path / "rev.svg"
    assert run_cli("draw", EXAMPLES / "sort.rasp", "[3,1,2]", "-o", svg) == 0
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text and "sorted" in text
    page = tmp_path / "rev.html"
    assert run_cli("draw", EXAMPLES / "reverse.rasp", "abc", "-o", page) == 0
    html = page.read_text()
    offline(html)
    assert 'id="flow"' in html and "<svg" in html
    assert run_cli("draw", EXAMPLES / "reverse.rasp", "abz", "-o", page) != 0
    assert "R233" in capsys.readouterr().err


def test_soft_selectors_draw_their_weights():
    """Under @attention "softmax" a selector's grid is what its aggregate averages with: the
    softmax of the scores under the causal mask (rows sum to 1)."""
    import grammar
    from rasp_ir.viz.flow import flow_items
    program = grammar.load(DATA / "bin_majority.rasp")
    _, items = flow_items(program, ["1", "0", "1"])
    grid = next(i for i in items if i.kind == "grid").values
    assert grid.shape == (4, 4)                 # <bos> prepended
    assert np.allclose(grid.sum(-1), 1) and np.allclose(np.triu(grid, 1), 0)
    assert np.allclose(grid[3], 0.25)


def test_predicate_tables():
    import grammar
    from rasp_ir.viz.tables import program_tables
    program = grammar.load(EXAMPLES / "reverse.rasp")
    flip = next(t for t in program_tables(program) if t.statement == "flip")
    # select(indices, opp, ==): rows are the queries' values, columns the keys'
    assert flip.kind == "selector" and flip.row_name.startswith("query")
    i, j = list(flip.rows).index(2), list(flip.cols).index(2)
    assert flip.values[i, j] == 1 and flip.values.sum() == min(len(flip.rows), len(flip.cols))


def test_statements_split_with_their_comments():
    from rasp_ir.viz.source import statements
    text = ('@vocab {"a"};\n\n# "t": a table\nx = aggregate(s=select(k=tokens, q=tokens, '
            'op=matrix(rows={\n    "a": 1,\n})), v=tokens);\ny = x;\n@output y;\n')
    blocks = statements(text)
    named = {name: lines for name, lines in blocks if name}
    assert list(named) == ["x", "y"]
    assert named["x"][0].startswith("# \"t\"") and named["x"][-1].endswith("v=tokens);")
    assert sum(len(lines) for _, lines in blocks) == len(text.splitlines())


def test_attention_page_of_the_shipped_checkpoint(tmp_path, capsys):
    out = tmp_path / "att.html"
    assert run_cli("attention", EXAMPLES / "bin_majority", "1 0 1 1 <sep>", "--program",
                   DATA / "bin_majority.rasp", "-o", out) == 0
    page = out.read_text()
    offline(page)
    assert 'id="a0-h0"' in page and 'id="selector-1"' in page
    cells = json.loads(re.search(r'id="a0-h0-cells">(.*?)</script>', page).group(1))
    weights = np.array(cells["values"])
    assert weights.shape == (6, 6) and np.allclose(weights.sum(-1), 1, atol=1e-3)
    assert cells["rows"][0] == "0:<bos>"
    assert run_cli("attention", EXAMPLES / "bin_majority", "1 0 x", "-o", out) != 0
    assert "D704" in capsys.readouterr().err


def test_mlp_view_groups_positions_by_the_primitive_value():
    from extractor.decompile.replace import mlp_view
    rng = np.random.default_rng(0)
    features = np.eye(3)[rng.integers(0, 3, 400)]
    E = rng.normal(size=(3, 8))
    out = features @ E + 0.01 * rng.normal(size=(400, 8))
    view = mlp_view(features, E, out, ("a", "b", "c"))
    assert sorted(view["labels"]) == ["a", "b", "c"] and view["count"].sum() == 400
    assert np.abs(view["model"] - view["primitive"]).max() < 0.01


def test_repl_draw_writes_the_picture(tmp_path, monkeypatch):
    import io

    from rasp_ir.cli import drawing
    from rasp_ir.cli.repl import repl
    monkeypatch.setenv("RASP_DRAW_DIR", str(tmp_path / "pictures"))
    monkeypatch.setattr(drawing, "_PICTURES", [])
    out = io.StringIO()
    assert repl(None, stdin=io.StringIO('flip = select(indices, length - indices - 1, ==);\n'
                                        'reverse = aggregate(flip, tokens);\n'
                                        'draw(reverse, "abc");\n'), stdout=out) == 0
    text = out.getvalue()
    assert "  reverse  [c, b, a] (strings)" in text          # the text drawing stays
    page = tmp_path / "pictures" / "draw-1.html"
    assert f"picture: {page}" in text
    html = page.read_text()
    offline(html)
    assert 'id="flow"' in html and "reverse" in html


def test_a_large_table_is_sampled_and_hover_data_has_a_budget():
    from rasp_ir.viz import heatmap as H
    from rasp_ir.viz.page import Page
    page = Page("t")
    values = np.arange(700 * 40, dtype=float).reshape(700, 40)
    H.heatmap(page, values, list(range(700)), list(range(40)), "big", "r", "c")
    html = page.html()
    assert "one row in 3 and every column of 700 × 40 drawn" in html
    cells = json.loads(re.search(r'id="fig1-cells">(.*?)</script>', html).group(1))
    assert len(cells["values"]) == 234 and cells["rows"][1] == "3"
    page.hover_bytes = H.HOVER_BUDGET
    H.heatmap(page, values[:5, :5], list(range(5)), list(range(5)), "small", "r", "c")
    assert 'id="fig2-cells"' not in page.html() and "budget" in page.html()


def test_draw_as_dot_needs_no_matplotlib(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.figure", None)
    out = tmp_path / "reverse.dot"
    assert run_cli("draw", EXAMPLES / "reverse.rasp", "abc", "-o", out) == 0
    dot = out.read_text()
    assert dot.startswith("digraph flow {") and '"flip" -> "reverse";' in dot
    assert '"reverse" [label="reverse\\nc b a"' in dot           # DOT's own \n
    assert '"flip" [label="flip\\n0: 2\\n1: 1\\n2: 0"' in dot    # query: the keys it reads


def test_read_back_view_puts_the_lookup_beside_the_mlp():
    from extractor.decompile import readback as rb
    from extractor.decompile.replace import read_back_view
    from rasp_ir import nodes as ir
    rng = np.random.default_rng(1)
    token = rng.integers(0, 2, 600)
    flag = rng.integers(0, 2, 600)
    # the output depends on the token only where the flag holds
    out = np.stack([np.where(flag == 1, token, 0.5), 1 - flag], 1) + 0.01 * rng.normal(
        size=(600, 2))
    tok = rb.Reading(ir.Tokens(), ("a", "b"), token, "token")
    above = rb.Reading(ir.Primitive("exists", (ir.Ref("x"),), ("a", 0.5)), (False, True),
                       flag, "x")
    rep = rb.read_back("m0", (tok, above), out, 0.1)
    view = read_back_view(rep, (tok, above), out)
    assert sorted(view["labels"]) == ["a, False", "a, True", "b, False", "b, True"]
    assert view["count"].sum() == 600
    # the lookup writes its class's mean: within the noise of the MLP's own mean
    assert np.abs(view["model"] - view["primitive"]).max() < 0.05
