"""Pictures of programs, extractions and models, written as self-contained HTML or SVG files.

`report.py` draws an extraction (`rasp report`), `flow.py` a program's computation on one input
(`rasp draw`), `attention.py` a model's attention beside a program's selectors (`rasp
attention`); `heatmap.py` and `charts.py` draw the figures, `page.py` assembles a page that
opens without network access (styles, scripts and pictures inline), `source.py` colours
program text. Figures are drawn with matplotlib, the optional `viz` extra, imported inside the
functions that draw: the rest of rasp-ir works without it, and asking for a picture without it
raises D701 saying how to install it. The pictures read the IR, the interpreter and the side-file
tables; nothing else in `rasp_ir` imports this package.
"""

from __future__ import annotations

from rasp_ir.diagnostics import Diagnostic, RaspError

INSTALL = "pip install 'rasp-ir[viz]'"


def matplotlib_figure():
    """matplotlib's `Figure` class, or D701 naming the extra to install."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        raise RaspError([Diagnostic("D701", "drawing needs matplotlib, which is not installed",
                                    hint=f"install the drawing extra: {INSTALL}")]) from None
    return Figure
