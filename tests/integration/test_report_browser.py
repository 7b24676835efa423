"""The report opened in a real browser (headless Chromium): every figure laid out with a
non-zero size, no broken image, the recommendation present; screenshots kept as artifacts.

One report comes from real BM runs made through the CLI (tiny IC model, 2 repetitions),
one from a synthetic study with every platform, GPU, busy-host and emulated-VM runs.
"""
from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/install.sh installs it)")

DEPLOYBENCH = [sys.executable, "-m", "deploybench"]

#: appended to a *copy* of the report (the report itself has no script): measures what the
#: browser laid out and writes it into the DOM, which --dump-dom prints
LAYOUT_PROBE = """<script>
window.addEventListener('load', function () {
  var figs = Array.prototype.map.call(document.querySelectorAll('svg.figure'), function (s) {
    var r = s.getBoundingClientRect();
    return {figure: s.getAttribute('data-figure'), width: r.width, height: r.height};
  });
  var imgs = Array.prototype.map.call(document.images, function (i) {
    return {src: i.src, ok: i.complete && i.naturalWidth > 0};
  });
  var rec = document.getElementById('recommendation');
  var pre = document.createElement('pre');
  pre.id = 'layout-probe';
  pre.textContent = JSON.stringify({figures: figs, images: imgs,
    recommendation: rec ? rec.innerText : null,
    headings: Array.prototype.map.call(document.querySelectorAll('h2'), function (h) { return h.innerText; })});
  document.body.appendChild(pre);
});
</script>"""


def chromium(args: list[str], profile: Path) -> subprocess.CompletedProcess:
    return subprocess.run([CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           f"--user-data-dir={profile}", "--no-first-run", *args],
                          capture_output=True, text=True, timeout=180)


def layout(report: Path, tmp_path: Path) -> dict:
    probe = tmp_path / f"{report.stem}-probe.html"
    probe.write_text(report.read_text().replace("</body>", LAYOUT_PROBE + "</body>"))
    proc = chromium(["--virtual-time-budget=10000", "--window-size=1280,1000", "--dump-dom", probe.as_uri()],
                    tmp_path / "profile")
    match = re.search(r'<pre id="layout-probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"chromium printed no layout probe: {proc.stderr[-800:]}"
    return json.loads(html.unescape(match.group(1)))


def check_rendered(report: Path, tmp_path: Path) -> dict:
    text = report.read_text()
    expected = len(re.findall(r"<svg\b", text))
    seen = layout(report, tmp_path)
    assert expected >= 1
    assert len(seen["figures"]) == expected, "every inline SVG figure must be in the laid-out page"
    for fig in seen["figures"]:
        assert fig["width"] > 100 and fig["height"] > 100, f"figure {fig['figure']} rendered too small: {fig}"
    assert all(img["ok"] for img in seen["images"]), f"broken images: {seen['images']}"
    assert seen["recommendation"] and "Recommendation" in seen["recommendation"]
    return seen


def screenshot(report: Path, png: Path, tmp_path: Path, height: int = 3200) -> None:
    proc = chromium([f"--screenshot={png}", f"--window-size=1280,{height}", report.as_uri()], tmp_path / "profile")
    assert png.exists() and png.stat().st_size > 20_000, proc.stderr[-800:]
    from PIL import Image, ImageStat

    with Image.open(png) as im:
        assert im.size == (1280, height)
        assert max(ImageStat.Stat(im.convert("L")).stddev) > 10, "the screenshot is blank"


def test_report_of_real_bm_runs_renders_in_chromium(tmp_path, artifacts, needs_cgroups):
    db = tmp_path / "real.db"
    common = ["--app", "ic", "--model-size", "tiny", "--requests", "16", "--repeat", "2", "--data-count", "8",
              "--db", str(db)]
    for extra in ([], ["--inference-only"]):
        run = subprocess.run([*DEPLOYBENCH, "run", "BM/1/PIN/CPU", "BM/1/VNL/CPU", *common, *extra],
                             capture_output=True, text=True, timeout=600)
        assert run.returncode == 0, run.stderr[-2000:]
    out = tmp_path / "report.html"
    made = subprocess.run([*DEPLOYBENCH, "report", "--db", str(db), "-o", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr[-2000:]
    assert f"report written to {out.resolve()}" in made.stdout
    seen = check_rendered(out, tmp_path)
    assert "BM/1/" in seen["recommendation"]
    assert "Best practices (the paper's Section VI) on this data" in seen["headings"]
    shutil.copy(out, artifacts / "report.html")
    screenshot(out, artifacts / "report.png", tmp_path)


def test_report_of_a_synthetic_study_renders_in_chromium(tmp_path, artifacts):
    from deploybench.report.build import write_report
    from deploybench.synthetic import synthetic_study

    out = tmp_path / "synthetic.html"
    write_report(synthetic_study(apps=("ic", "nlp", "rs"), cores=(1, 2, 4, 8, 16), gpu=True, busy=True,
                                 inference_only=True, emulated_vm=True), out)
    seen = check_rendered(out, tmp_path)
    assert {"fig5", "fig9", "fig10", "fig11"} <= {f["figure"] for f in seen["figures"]}
    shutil.copy(out, artifacts / "report-synthetic.html")
    screenshot(out, artifacts / "report-synthetic.png", tmp_path, height=6000)
