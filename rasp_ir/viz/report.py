"""The HTML report of an extraction (`rasp report PROG.rasp`, `rasp extract --html`): the
program, coloured, each statement linked to its pictures; match and task accuracy per length
bucket; the pruning frontier of every stage; a heatmap of every score, selector and projection
table; each replaced MLP's output beside its primitive's; the replacements and their effect on
the match; times and settings. The report's keys are those of docs/report.md."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from rasp_ir import nodes as ir
from rasp_ir.diagnostics import Diagnostic, RaspError
from rasp_ir.viz.page import Page, esc, table_html

MAX_HEATMAPS = 60          # tables drawn per page; the rest are listed (time and size)


def mlp_views_file(program_path: Path) -> Path:
    """Where an extraction keeps, for each MLP replaced by a primitive, the MLP's output and
    the primitive's over the inputs reached (`PROG.mlps.safetensors`)."""
    return Path(program_path).with_suffix(".mlps.safetensors")


def read_report(program_path: Path) -> dict:
    """PROG.report.json beside PROG.rasp, as a dict (D702 when missing or not a report)."""
    path = Path(program_path).with_suffix(".report.json")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise RaspError([Diagnostic("D702", f"{path}: no such file; `rasp report` reads the "
                                    "report `rasp extract` writes beside the program")]) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RaspError([Diagnostic("D702", f"{path}: not a JSON report ({exc})")]) from None
    missing = [k for k in ("stage", "kind", "model", "program", "seconds")
               if not isinstance(report, dict) or k not in report]
    if missing:
        raise RaspError([Diagnostic("D702", f"{path}: not an extraction report (missing "
                                    f"{', '.join(repr(k) for k in missing)})")])
    return report


def read_mlp_views(program_path: Path) -> dict:
    """{"mlp L": {"model": Matrix, "primitive": Matrix, "count": Matrix}} from the side-file
    of MLP views, {} when there is none."""
    path = mlp_views_file(program_path)
    if not path.exists():
        return {}
    from rasp_ir.tables import read_tables
    try:
        tables = read_tables(path)
    except Exception as exc:                 # safetensors raises its own errors
        raise RaspError([Diagnostic("D702", f"{path}: unreadable ({exc})")]) from None
    views: dict = {}
    for name, m in tables.items():
        what, _, part = name.rpartition(".")
        views.setdefault(what.replace("mlp", "mlp ", 1), {})[part] = m
    return views


def report_page(program: ir.Program, text: str, report: dict, views: dict | None = None,
                title: str | None = None) -> str:
    """The report as one self-contained HTML document."""
    from rasp_ir.interpreter import Interpreter
    from rasp_ir.viz.charts import buckets_chart, frontier_chart, stages_chart
    from rasp_ir.viz.heatmap import heatmap
    from rasp_ir.viz.source import program_html
    from rasp_ir.viz.tables import program_tables

    name = Path(report["program"].get("file") or "program").name
    page = Page(title or f"Extraction report: {name}")
    interpreter = Interpreter(program)
    tables = program_tables(program, interpreter)
    drawn, skipped = tables[:MAX_HEATMAPS], tables[MAX_HEATMAPS:]
    anchors = {id(t): f"table-{i + 1}" for i, t in enumerate(drawn)}
    links: dict[str, list] = {}
    for t in drawn:
        links.setdefault(t.statement, []).append((anchors[id(t)], _link_label(t)))
    views = views or {}

    page.add(_summary(report))
    page.add('<nav class="toc"><a href="#program">program</a><a href="#accuracy">accuracy</a>'
             '<a href="#pruning">pruning</a><a href="#tables">tables</a><a href="#mlps">MLPs'
             '</a><a href="#replacements">replacements</a><a href="#settings">times and '
             'settings</a></nav>')

    page.heading("Program", "program")
    page.add(program_html(text, links))
    page.para("Each statement links to the pictures of its tables; each picture links back.",
              "note")

    page.heading("Accuracy per length bucket", "accuracy")
    _accuracy(page, report, buckets_chart)

    page.heading("Pruning", "pruning")
    _pruning(page, report, frontier_chart, stages_chart)

    page.heading("Tables", "tables")
    if not tables:
        page.para("The program holds no score, selector or projection table.", "note")
    for t in drawn:
        back = f'<a class="back" href="#stmt-{esc(t.statement)}">↑ {esc(t.statement)}</a>'
        where = f"{t.kind} in <code>{esc(t.statement)}</code>"
        if t.name is not None:
            where += " (side-file table)"
        heatmap(page, t.values, t.rows, t.cols if t.cols is not None else [], t.title,
                t.row_name, t.col_name, anchor=anchors[id(t)], caption=f"{where} {back}")
    if skipped:
        page.para(f"{len(skipped)} more table(s) not drawn (a page draws at most "
                  f"{MAX_HEATMAPS}): " + ", ".join(t.title for t in skipped[:40])
                  + (" …" if len(skipped) > 40 else ""), "note")

    page.heading("MLPs", "mlps")
    _mlps(page, report, views, program, heatmap)

    page.heading("Replacements", "replacements")
    _replacements(page, report)

    page.heading("Times and settings", "settings")
    _settings(page, report)
    return page.html()


def _link_label(t) -> str:
    return t.name if t.name is not None else t.kind


def _mlp_anchor(what: str) -> str:
    return "mlp-" + what.split()[-1]


def _summary(report: dict) -> str:
    m = report["model"]
    kind = f"{report['kind']} model, stage {report['stage']}"
    rows = [("checkpoint", report.get("checkpoint", "")),
            ("model", f"{m['layers']} layers × {m['heads']} heads, d_model {m['d_model']}"),
            ("extraction", kind)]
    if report.get("task"):
        rows.append(("task", f"{report['task']} ({report.get('mode', '')})"))
    p = report["program"]
    size = [f"{p[k]} {k.replace('_', ' ')}" for k in ("lines", "bindings", "score_terms",
                                                      "table_entries", "side_tables",
                                                      "opaque_mlps") if k in p]
    rows.append(("program", ", ".join(size)))
    if report.get("verdict"):
        rows.append(("verdict", report["verdict"]))
    body = "".join(f"<tr><th>{esc(k)}</th><td>{esc(v)}</td></tr>" for k, v in rows)
    return f'<table class="data summary"><tbody>{body}</tbody></table>'


def _accuracy(page: Page, report: dict, buckets_chart) -> None:
    threshold = report.get("threshold")
    ev = report.get("evaluation")
    if ev:
        buckets = ev["buckets"]
        has_task = any("task" in b for b in buckets.values())
        header = ["bucket", "match"] + (["task"] if has_task else [])
        rows = [[b, _fraction(r["match"], threshold)] + ([_fraction(r.get("task"))]
                                                         if has_task else [])
                for b, r in buckets.items()]
        page.add(table_html(header, rows))
        held = (f"{ev['sequences_per_bucket']} held-out sequences per bucket"
                if ev.get("sequences_per_bucket") else ev.get("compared", ""))
        buckets_chart(page, buckets, threshold, "the program against the model",
                      "accuracy-chart", esc(f"match: the program makes the model's prediction "
                                            f"at every scored position; {held}"))
    lln = report.get("lln_a")
    if lln and "faithfulness" in lln:
        page.heading("LLN-A: the linearised model against the original", level=3)
        rows = [[b, _fraction(f["match"]), f"{f['kl']:.3g}"]
                for b, f in lln["faithfulness"].items()]
        page.add(table_html(["bucket", "match", "KL (nats)"], rows))
        if not ev:
            buckets_chart(page, {b: {"match": f["match"]} for b, f in
                                 lln["faithfulness"].items()}, None,
                          "linearised model against the original", "accuracy-chart")
    rt = report.get("roundtrip")
    if rt and rt.get("compiled") and rt.get("checkpoint"):
        page.heading("Round trip: the compiled program against the checkpoint", level=3)
        c = rt["checkpoint"]
        rows = [[b, _fraction(r["match"])] + ([_fraction(r["task"])] if "task" in r else [])
                for b, r in c["buckets"].items()]
        header = ["bucket", "match"] + (["task"] if any("task" in r for r in
                                                        c["buckets"].values()) else [])
        page.add(table_html(header, rows))
        a = rt["interpreter"]
        page.para(f"compiled model against the interpreter: {a['differences']} differing "
                  f"positions of {a['positions']} ({a['inputs']} inputs)", "note")
    if not ev and not lln:
        page.para("This report has no per-bucket measurement.", "note")


def _fraction(value, threshold=None):
    if value is None:
        return ""
    text = f"{value:.4f}"
    if threshold is None:
        return text
    cls = "good" if value >= threshold else "bad"
    return ("html", f'<span class="{cls}">{text}</span>')


def _pruning(page: Page, report: dict, frontier_chart, stages_chart) -> None:
    frontier = report.get("frontier")
    runs = report.get("runs") or []
    if frontier is not None:
        lam = report["program"].get("lam")
        page.para(f"{len(runs)} pruning run(s) of the sparsity sweep. Grey points: each run's "
                  "kept edges and worst-bucket match on the pruning selection set, its λ "
                  "beside it; blue line: the frontier (runs no other beats on both); red "
                  "circle: the run the program came from" + (f" (λ = {lam:.3g})" if lam
                                                             is not None else "")
                  + "; dashed red line: the threshold.", "note")
        page.add('<div class="row">')
        for stage in ("components", "paths", "products"):
            if stage in frontier:
                frontier_chart(page, stage, runs, frontier[stage], lam, report.get("threshold"),
                               f"frontier-{stage}")
        page.add("</div>")
        if runs:
            rows = []
            for r in runs:
                cells = [f"{r['lam']:.3g}", r.get("seed", "")]
                for st in r["stages"]:
                    cells.append(f"{st['edges']} edges, {min(st['match'].values()):.3f} "
                                 f"({st['seconds']:.1f} s)")
                rows.append(cells)
            stages = [st["stage"] for st in runs[0]["stages"]]
            page.add(table_html(["λ", "seed"] + stages, rows))
        return
    pruning = report.get("pruning")
    if pruning and pruning.get("stages"):
        page.para(f"{pruning['method']}; a cut edge reads its {pruning.get('ablation', '')}.",
                  "note")
        stages_chart(page, pruning["stages"], report.get("threshold"), "pruning-chart")
        return
    page.para(pruning["method"] if pruning else "No pruning: the program is the model's full "
              "program (every path).", "note")


def _mlps(page: Page, report: dict, views: dict, program, heatmap) -> None:
    entries = [r for c in _candidates(report) if c.get("_chosen")
               for r in c.get("replacements", []) if str(r.get("what", "")).startswith("mlp")]
    opaque = [b.name for b in program.bindings if isinstance(b.value, ir.Mlp)]
    if not entries and not views and not opaque:
        page.para("No MLP reaches the output in this program (pruned away, or none).", "note")
        return
    drawn = set()
    for r in entries:
        what = r["what"]
        drawn.add(what)
        if r.get("primitive") is None:
            why = {k: v for k, v in r.items() if k not in ("what", "primitive")}
            page.para(f"{what}: stays an mlp node; no primitive or read-back kept the match "
                      f"({json.dumps(why)})", "note")
            continue
        page.heading(f"{what} → {r['primitive']}", _mlp_anchor(what), level=3)
        facts = [f"match after the step {r['match']:.4f}" if "match" in r else None,
                 f"explains {r['explained']:.1%} of the MLP output's variance"
                 if "explained" in r else None,
                 f"{r['classes']} classes" if "classes" in r else None]
        page.para("; ".join(f for f in facts if f), "note")
        view = views.get(what)
        if view and "model" in view and "primitive" in view:
            _view(page, heatmap, what, r["primitive"], view)
        else:
            page.para("(no record of the MLP's outputs beside this report: extractions "
                      "write one to PROG.mlps.safetensors)", "note")
    for what, view in views.items():
        if what in drawn or "model" not in view or "primitive" not in view:
            continue
        # a compiled model's MLP read back as a table over every combination of its inputs
        page.heading(f"{what} → a table over its inputs' values", _mlp_anchor(what), level=3)
        _view(page, heatmap, what, "the table", view, "combination of input values",
              "the MLP's output on each combination", "the class the table gives it")
    tables = [t for t in _compiled_tables(report) if not views]
    if tables:
        page.para(f"{', '.join(tables)}: read back exactly as tables over their inputs' "
                  "values (compiled model)", "note")
    if opaque:
        page.para(f"Opaque mlp node(s) left in the program: {', '.join(opaque)} (their "
                  "weights are not drawn).", "note")


def _view(page: Page, heatmap, what: str, primitive: str, view: dict,
          rows: str = "input reached",
          model_caption: str = "mean output over the positions reaching each input",
          primitive_caption: str = "the primitive's value written back by its fitted map"):
    """An MLP's output beside what replaced it, on one colour scale (residual directions
    across), and how many positions reached each row."""
    model, prim = view["model"], view["primitive"]
    scale = float(max(np.abs(np.asarray(model.values)).max(),
                      np.abs(np.asarray(prim.values)).max()) or 1.0)
    page.add('<div class="row">')
    heatmap(page, model.values, model.rows, model.cols, f"{what}: the MLP's output", rows,
            "residual direction", scale=scale, caption=model_caption)
    heatmap(page, prim.values, prim.rows, prim.cols, f"{primitive}: its write", rows,
            "residual direction", scale=scale, caption=primitive_caption)
    counts = np.asarray(view["count"].values) if "count" in view else None
    if counts is not None and not np.all(counts == 1):
        heatmap(page, counts[:, None], view["count"].rows, ["positions"],
                "positions reaching each input", rows, "", caption="on the judge's sequences")
    page.add("</div>")


def _compiled_tables(report: dict) -> list:
    return list(report.get("mlp_tables") or [])


def _candidates(report: dict) -> list[dict]:
    """The candidates tried, the written one marked `_chosen` (by its λ); a compiled report's
    single log as one chosen candidate."""
    if "candidates" in report:
        lam = report["program"].get("lam")
        return [dict(c, _chosen=(lam is not None and abs(c["lam"] - lam) < 1e-12))
                for c in report["candidates"]]
    if report.get("replacements") is not None:
        return [{"lam": None, "replacements": report["replacements"], "_chosen": True,
                 "programs_judged": report.get("programs_judged")}]
    return []


def _replacements(page: Page, report: dict) -> None:
    candidates = _candidates(report)
    if not candidates:
        page.para("No replacements: this stage writes the tables as they are.", "note")
        return
    for c in candidates:
        head = "written program" if c["_chosen"] else "candidate not written"
        if c.get("lam") is not None:
            head += f", from the run with λ = {c['lam']:.3g}"
        extra = []
        if c.get("lines") is not None:
            extra.append(f"{c['lines']} lines")
        if c.get("buckets"):
            worst = min(b["match"] for b in c["buckets"].values())
            extra.append(f"held-out worst-bucket match {worst:.4f}")
        if c.get("programs_judged") is not None:
            extra.append(f"{c['programs_judged']} programs judged")
        page.heading(head + (f" ({', '.join(extra)})" if extra else ""), level=3)
        rows = []
        for r in c.get("replacements", []):
            prim = r.get("primitive")
            if prim is None:       # nothing kept: the log says what was tried and how it did
                what = str(r.get("what", ""))
                kept = "nothing kept, stays an mlp" if what.startswith("mlp") else "nothing kept"
                rows.append([what, kept + _best_tried(r), "", ""])
                continue
            rows.append([r.get("what", ""), prim, f"{r['match']:.4f}" if "match" in r else "",
                         f"{r['explained']:.1%}" if "explained" in r else ""])
        if rows:
            page.add(table_html(["what", "replaced by", "worst-bucket match after",
                                 "variance explained"], rows))
        else:
            page.para("nothing replaced", "note")


def _best_tried(entry: dict) -> str:
    """"; best tried X: …" with the figures the log kept for it (a read-back of the logits
    keeps its agreement, an MLP's lookup its variance explained and match), then "; best
    sum Y: …" for an MLP read as a sum of readings (or why no sum was tried)."""
    text = ""
    if "best" in entry:
        text += _tried("best tried", entry["best"], entry, "")
    if "sum" in entry:
        if "sum_explained" in entry:
            text += _tried("best sum", entry["sum"], entry, "sum_")
        else:
            text += f"; no sum: {entry['sum']}"
    return text


# the figures a log entry may keep for what it tried, in the order they are shown
_FIGURES = (("explained", "explains {:.1%}"), ("match", "match {:.4f}"),
            ("agreement", "agreement {:.3f}"), ("sample_agreement", "sample agreement {:.3f}"))


def _tried(head: str, label: str, entry: dict, prefix: str) -> str:
    """"; head label: figures…" from the entry's keys `prefix + figure`."""
    figures = [form.format(entry[prefix + key]) for key, form in _FIGURES
               if prefix + key in entry]
    return f"; {head} {label}" + (f": {', '.join(figures)}" if figures else "")


def _settings(page: Page, report: dict) -> None:
    seconds = report.get("seconds") or {}
    page.add(table_html(["step", "seconds"], [[k, f"{v:.2f}"] for k, v in seconds.items()]))
    settings = dict(report.get("settings") or {})
    for key in ("threshold", "seed"):
        if key in report and key not in settings:
            settings[key] = report[key]
    if settings:
        page.add(table_html(["setting", "value"], [[k, json.dumps(v)] for k, v in
                                                   settings.items()]))
    lln = report.get("lln_a")
    if lln:
        scales = lln.get("scales") or lln.get("estimated_scales") or {}
        if scales:
            page.add(table_html(["LayerNorm", "LLN-A scale"],
                                [[k, f"{v:.4g}"] for k, v in scales.items()]))
    inputs = report.get("inputs")
    if inputs:
        page.add(table_html(["inputs", "value"], [[k, v] for k, v in inputs.items()]))
