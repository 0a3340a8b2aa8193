"""A model's attention pattern per layer and head on one input (`rasp attention`), beside the
selectors of a program on the same input when one is given: the picture that says whether the
program's selectors are what the model attends with (queries down, keys across)."""

from __future__ import annotations

import numpy as np

from rasp_ir import nodes as ir
from rasp_ir.viz.page import Page, esc


def attention_page(tokens: list, patterns: dict, title: str,
                   program: ir.Program | None = None, program_name: str | None = None) -> str:
    """`patterns`: {layer: array (heads, queries, keys)} of the model on `tokens` (the
    softmax weights, each row summing to 1). With `program`, its selectors on the same
    input follow, drawn as the weights their aggregates use."""
    from rasp_ir.viz.heatmap import heatmap
    page = Page(title)
    labels = [f"{i}:{t}" for i, t in enumerate(tokens)]
    page.para("input: " + " ".join(str(t) for t in tokens), "note")
    page.add('<nav class="toc">' + "".join(f'<a href="#layer-{L}">layer {L}</a>'
                                           for L in sorted(patterns))
             + ('<a href="#program">program selectors</a>' if program is not None else "")
             + "</nav>")
    # the model's heads on the left, the program's selectors beside them (they wrap below
    # on a narrow window)
    page.add('<div class="row"><div class="col">')
    for L in sorted(patterns):
        heads = np.asarray(patterns[L])
        page.heading(f"Layer {L}", f"layer-{L}")
        page.add('<div class="row">')
        for h in range(heads.shape[0]):
            heatmap(page, heads[h], labels, labels, f"a{L}.h{h}", "query", "key",
                    anchor=f"a{L}-h{h}", scale=None,
                    caption=f"the model's attention, layer {L} head {h}")
        page.add("</div>")
    page.add('</div><div class="col">')
    if program is not None:
        from rasp_ir.viz.flow import flow_items
        seq, items = flow_items(program, tokens)
        grids = [i for i in items if i.kind == "grid"]
        page.heading("Program selectors" + (f" ({program_name})" if program_name else ""),
                     "program")
        if [str(t) for t in seq] != [str(t) for t in tokens]:
            page.para("the program reads the input as: " + " ".join(map(str, seq)), "note")
        if not grids:
            page.para("The program has no selector on the path to its output.", "note")
        page.add('<div class="row">')
        prog_labels = [f"{i}:{t}" for i, t in enumerate(seq)]
        for k, item in enumerate(grids):
            heatmap(page, item.values, prog_labels, prog_labels, item.label, "query", "key",
                    anchor=f"selector-{k + 1}", caption=esc(item.detail))
        page.add("</div>")
    page.add("</div></div>")
    return page.html()
