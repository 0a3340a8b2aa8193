"""One self-contained HTML page: styles, the hover script and every picture inline, so that the
file opens without network access (no CDN, no fonts fetched, no external images).

Figures are matplotlib figures written as SVG and inlined; each one's ids are prefixed, so that
several SVGs share a document without one's clip paths standing in for another's. A heatmap
carries its cells as JSON (`<script type="application/json">`) and the box of its cells in
figure fractions: the page's one script shows the cell under the pointer (row, column, value).
"""

from __future__ import annotations

import contextlib
import html
import io
import json
import re

from rasp_ir.viz import matplotlib_figure

# matplotlib settings of every picture: text stays text in the SVG (small, selectable, and
# searchable with the browser's find), ids do not depend on the run, fonts are the browser's
RC = {
    "svg.fonttype": "none",
    "svg.hashsalt": "rasp-ir",
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.spines.top": False,
    "axes.spines.right": False,
}


@contextlib.contextmanager
def drawing():
    """matplotlib's Figure class, under this package's settings (D701 without matplotlib)."""
    Figure = matplotlib_figure()
    import matplotlib
    with matplotlib.rc_context(RC):
        yield Figure


class Page:
    """A page being built: sections of HTML, figures numbered in order."""

    def __init__(self, title: str):
        self.title = title
        self.parts: list[str] = []
        self.figures = 0
        self.hover_bytes = 0            # cell data carried for hovering, kept under a budget

    def add(self, text: str) -> None:
        self.parts.append(text)

    def heading(self, text: str, anchor: str | None = None, level: int = 2) -> None:
        ident = f' id="{esc(anchor)}"' if anchor else ""
        self.add(f"<h{level}{ident}>{esc(text)}</h{level}>")

    def para(self, text: str, cls: str | None = None) -> None:
        self.add(f'<p{_cls(cls)}>{esc(text)}</p>')

    def figure(self, fig, anchor: str | None = None, caption: str | None = None,
               cls: str = "plot", cells: dict | None = None, box=None,
               extra: str = "") -> str:
        """Inline `fig` as SVG in a <figure>; `cells` ({"rows", "cols", "values"}) and `box`
        (the cells' axes) make its cells readable on hover. Returns the figure's id."""
        self.figures += 1
        ident = anchor or f"fig{self.figures}"
        data = ""
        if cells is not None and box is not None:
            # "</" would end the script element early
            payload = json.dumps(cells, separators=(",", ":"), allow_nan=False)
            payload = payload.replace("</", "<\\/")
            self.hover_bytes += len(payload)
            data = (f' data-box="{box_fractions(fig, box)}"'
                    f' data-cells="{esc(ident)}-cells"')
            extra += (f'<script type="application/json" id="{esc(ident)}-cells">'
                      f'{payload}</script>')
        svg = svg_text(fig, f"f{self.figures}-")
        cap = f"<figcaption>{caption}</figcaption>" if caption else ""
        self.add(f'<figure class="{cls}" id="{esc(ident)}"{data}>{svg}{cap}{extra}</figure>')
        return ident

    def html(self) -> str:
        body = "\n".join(self.parts)
        return (f"<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
                f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
                f"<title>{esc(self.title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
                f"<h1>{esc(self.title)}</h1>\n{body}\n"
                f"<div id=\"tip\" role=\"tooltip\"></div>\n<script>{SCRIPT}</script>\n"
                "</body>\n</html>\n")


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def _cls(cls: str | None) -> str:
    return f' class="{esc(cls)}"' if cls else ""


def table_html(header: list, rows: list[list], cls: str = "data") -> str:
    """A plain HTML table; cells are escaped text (a cell given as ("html", text) is not)."""
    def cell(tag, c):
        if isinstance(c, tuple) and c and c[0] == "html":
            return f"<{tag}>{c[1]}</{tag}>"
        return f"<{tag}>{esc(c)}</{tag}>"
    head = "".join(cell("th", h) for h in header)
    body = "".join("<tr>" + "".join(cell("td", c) for c in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def box_fractions(fig, ax) -> str:
    """The axes' box as "left top right bottom" fractions of the figure, measured from the
    top-left corner as the SVG is laid out (matplotlib measures from the bottom)."""
    x0, y0, x1, y1 = ax.get_position().extents
    return " ".join(f"{v:.5f}" for v in (x0, 1 - y1, x1, 1 - y0))


_ID = re.compile(r'(\bid="|xlink:href="#|href="#|url\(#)([^")]+)')


def svg_text(fig, prefix: str) -> str:
    """`fig` as an SVG element to inline: no XML prolog, ids prefixed, scaled to the page."""
    buffer = io.StringIO()
    fig.savefig(buffer, format="svg", metadata={"Date": None, "Creator": None})
    text = buffer.getvalue()
    text = text[text.index("<svg"):]
    text = _ID.sub(lambda m: m.group(1) + prefix + m.group(2), text)
    # natural size, but never wider than the page
    return text.replace("<svg ", '<svg class="pic" ', 1)


def compact(value: float) -> str:
    """A number as a cell shows it: integers as integers, else three significant digits."""
    if value != value:
        return "nan"
    if abs(value) < 1e15 and value == int(value):
        return str(int(value))
    return f"{value:.3g}"


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",sans-serif;margin:0 auto;max-width:1180px;
padding:0 18px 60px;color:#1d232a;background:#fff;line-height:1.45}
h1{font-size:1.5em;margin:18px 0 6px}h2{font-size:1.2em;margin:28px 0 8px;
border-bottom:1px solid #d8dde3;padding-bottom:3px}h3{font-size:1.02em;margin:18px 0 6px}
nav.toc{font-size:.92em;margin:6px 0 14px}nav.toc a{margin-right:14px}
p.note{color:#56606b;font-size:.92em}
pre.program{background:#f6f8fa;border:1px solid #d8dde3;border-radius:6px;padding:8px 0;
overflow-x:auto;font:12.5px/1.5 ui-monospace,"DejaVu Sans Mono",Menlo,Consolas,monospace}
pre.program .stmt{display:block;padding:0 12px}pre.program .stmt:target{background:#fff6d6}
pre.program .stmt:hover{background:#eef3f9}
.links{font:11px system-ui,sans-serif;color:#56606b}
.links a{margin-right:8px;color:#0b62c4}
.kw{color:#8a3ab9;font-weight:600}.fn{color:#0b62c4}.str{color:#0a7a3e}.num{color:#b5530b}
.com{color:#7b8590;font-style:italic}.dir{color:#a3214a;font-weight:600}.name{font-weight:700}
table.data{border-collapse:collapse;font-size:.9em;margin:6px 0 12px}
table.data th,table.data td{border:1px solid #d8dde3;padding:3px 8px;text-align:left}
table.data th{background:#f0f3f6}td.good{color:#0a7a3e}td.bad{color:#b3261e}
figure{margin:10px 0 18px;display:inline-block;vertical-align:top;max-width:100%;
position:relative}figure.wide{display:block}
figure svg.pic{max-width:100%;height:auto;display:block}
figure.flow svg.pic{min-width:min(100%,900px)}
figcaption{font-size:.86em;color:#56606b;max-width:720px}
figure.heatmap:target,figure.plot:target{outline:2px solid #f0b400;outline-offset:3px}
.back{font-size:.8em;margin-left:6px}
.row{display:flex;flex-wrap:wrap;gap:14px;align-items:flex-start}.col{min-width:0}
#tip{position:fixed;pointer-events:none;background:#1d232a;color:#fff;font:12px/1.35
ui-monospace,monospace;padding:4px 7px;border-radius:4px;display:none;z-index:10;
white-space:pre}
"""

# The one script: for a heatmap under the pointer, the cell's row, column and value.
SCRIPT = r"""
(function(){
  var tip=document.getElementById('tip'),cache={};
  function cells(f){var id=f.getAttribute('data-cells');
    if(!(id in cache)){cache[id]=JSON.parse(document.getElementById(id).textContent);}
    return cache[id];}
  function show(e){
    var f=e.currentTarget,svg=f.querySelector('svg');if(!svg){return;}
    var r=svg.getBoundingClientRect(),b=f.getAttribute('data-box').split(' ').map(Number);
    var fx=(e.clientX-r.left)/r.width,fy=(e.clientY-r.top)/r.height;
    var d=cells(f),nr=d.values.length,nc=(d.values[0]||[]).length;
    var c=Math.floor((fx-b[0])/(b[2]-b[0])*nc),w=Math.floor((fy-b[1])/(b[3]-b[1])*nr);
    if(c<0||w<0||c>=nc||w>=nr){tip.style.display='none';return;}
    var v=d.values[w][c];
    tip.textContent=(d.rowName||'row')+' '+d.rows[w]+'\n'+(d.colName||'col')+' '+d.cols[c]+
      '\nvalue '+(v===null?'-':v);
    tip.style.left=(e.clientX+14)+'px';tip.style.top=(e.clientY+12)+'px';
    tip.style.display='block';}
  var figs=document.querySelectorAll('figure[data-cells]');
  for(var i=0;i<figs.length;i++){figs[i].addEventListener('mousemove',show);
    figs[i].addEventListener('mouseleave',function(){tip.style.display='none';});}
  document.body.setAttribute('data-ready','1');   // the page's script ran to its end
})();
"""
