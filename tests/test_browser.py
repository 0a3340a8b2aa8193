"""The pages as a person sees them: the report of the shipped bin_majority extraction, a `rasp
draw` page and a `rasp attention` page, opened in headless Chromium (Debian's `chromium`)
with the network off. Each must load with no console message (our pages log nothing, so any
message is an error), run its script to the end (it marks <body data-ready="1">), hold its
pictures, and show a screenshot that is not blank.

Run with `pytest -m browser`; `.ci/run` installs chromium when it is missing. Screenshots are
kept under $RASP_SCREENSHOTS when that is set (to look at them), else in a temporary folder."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data"
EXAMPLES = ROOT / "examples"

pytestmark = pytest.mark.browser
pytest.importorskip("matplotlib")
PIL = pytest.importorskip("PIL.Image")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
if CHROMIUM is None:
    pytest.skip("no chromium on PATH (apt-get install chromium)", allow_module_level=True)

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-extensions", "--hide-scrollbars", "--enable-logging=stderr", "--v=0",
         # nothing leaves the machine: every host resolves nowhere
         "--host-resolver-rules=MAP * ~NOTFOUND"]


@pytest.fixture(scope="module")
def shots(tmp_path_factory) -> Path:
    where = os.environ.get("RASP_SCREENSHOTS")
    if where:
        Path(where).mkdir(parents=True, exist_ok=True)
        return Path(where)
    return tmp_path_factory.mktemp("shots")


def chromium(page: Path, profile: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", *args,
                           page.resolve().as_uri()], capture_output=True, text=True,
                          timeout=120)


def look(page: Path, shot: Path, tmp_path: Path, height: int = 2400) -> str:
    """Open `page`: its DOM after the scripts ran; the screenshot is written to `shot`.
    Fails on a console message or a blank screenshot."""
    dom = chromium(page, tmp_path / "profile-dom", "--dump-dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    messages = [line for line in dom.stderr.splitlines() if ":CONSOLE" in line]
    assert not messages, "console messages:\n" + "\n".join(messages)
    assert 'data-ready="1"' in dom.stdout, "the page's script did not run to its end"
    run = chromium(page, tmp_path / "profile-shot", f"--window-size=1280,{height}",
                   f"--screenshot={shot}")
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    image = PIL.open(shot).convert("RGB")
    small = image.resize((160, height // 8))
    colours = small.getcolors(maxcolors=1 << 16) or []
    inked = sum(n for n, c in colours if sum(c) < 600)         # not white or near-white
    assert len(colours) > 20 and inked > 0.01 * small.width * small.height, \
        f"{shot} looks blank ({len(colours)} colours)"
    return dom.stdout


def rasp(*argv) -> None:
    from rasp_ir.cli import main
    assert main([str(a) for a in argv]) == 0


def test_report_page(tmp_path, shots):
    for f in DATA.glob("bin_majority.*"):
        shutil.copy(f, tmp_path / f.name)
    page = tmp_path / "report.html"
    rasp("report", tmp_path / "bin_majority.rasp", "-o", page)
    dom = look(page, shots / "report.png", tmp_path, height=3200)
    for anchor in ("program", "accuracy", "frontier-components", "frontier-paths",
                   "frontier-products", "table-1", "table-2", "replacements", "settings"):
        assert f'id="{anchor}"' in dom, anchor
    assert len(re.findall(r"<svg\b", dom)) >= 6
    assert 'class="stmt" id="stmt-logits"' in dom


def test_draw_page(tmp_path, shots):
    page = tmp_path / "draw.html"
    rasp("draw", EXAMPLES / "sort.rasp", "[3,1,4,2]", "-o", page)
    dom = look(page, shots / "draw.png", tmp_path, height=900)
    assert 'id="flow"' in dom and len(re.findall(r"<svg\b", dom)) == 1
    assert "sorted" in dom and "unique_key" in dom


def test_attention_page(tmp_path, shots):
    page = tmp_path / "attention.html"
    rasp("attention", EXAMPLES / "bin_majority", "1 0 1 1 0 <sep>", "--program",
         DATA / "bin_majority.rasp", "-o", page)
    dom = look(page, shots / "attention.png", tmp_path, height=1400)
    assert 'id="a0-h0"' in dom and 'id="selector-1"' in dom
    assert len(re.findall(r"<svg\b", dom)) == 2


# dispatched after the page's own script: the pointer over the centre of a heatmap's cell
HOVER = """<script>
(function(){
  var f=document.getElementById('%s'),svg=f.querySelector('svg');
  var r=svg.getBoundingClientRect(),b=f.getAttribute('data-box').split(' ').map(Number);
  var d=JSON.parse(document.getElementById(f.getAttribute('data-cells')).textContent);
  var nr=d.values.length,nc=d.values[0].length,row=%d,col=%d;
  var x=r.left+r.width*(b[0]+(b[2]-b[0])*(col+0.5)/nc);
  var y=r.top+r.height*(b[1]+(b[3]-b[1])*(row+0.5)/nr);
  f.dispatchEvent(new MouseEvent('mousemove',{clientX:x,clientY:y,bubbles:true}));
  document.body.setAttribute('data-tip',document.getElementById('tip').textContent);
})();
</script>"""


def test_hover_shows_a_cell(tmp_path):
    """The pointer over cell (<sep>, <sep>) of the projection (inp == out) shows its row,
    column and value."""
    for f in DATA.glob("bin_majority.*"):
        shutil.copy(f, tmp_path / f.name)
    page = tmp_path / "report.html"
    rasp("report", tmp_path / "bin_majority.rasp", "-o", page)
    text = page.read_text(encoding="utf-8")
    page.write_text(text.replace("</body>", HOVER % ("table-2", 3, 3) + "</body>"),
                    encoding="utf-8")
    dom = chromium(page, tmp_path / "profile", "--window-size=1280,2400", "--dump-dom")
    tip = re.search(r'data-tip="([^"]*)"', dom.stdout)
    assert tip, dom.stderr[-2000:]
    assert tip.group(1).split("\n") == ["input: mean_token &lt;sep&gt;", "output &lt;sep&gt;",
                                         "value 1"], tip.group(1)
