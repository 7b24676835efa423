"""The HTML report and the report/compare commands, on synthetic runs (no browser here:
tests/integration/test_report_browser.py opens the file in Chromium)."""
from __future__ import annotations

import json

import re

import pytest
from typer.testing import CliRunner

from deploybench.cli import app
from deploybench.recommend import Constraints
from deploybench.report.build import analyze, figures, render_html, write_report
from deploybench.synthetic import synthetic_runs, synthetic_study

SECTIONS = ("summary", "recommendation", "figures", "results", "overhead", "scale-up", "pinning", "chr",
            "gpu", "causes", "best-practices", "warnings", "failures", "metadata")


@pytest.fixture(scope="module")
def full_study():
    return synthetic_study(apps=("ic", "nlp"), cores=(1, 2, 4, 16), gpu=True, busy=True,
                           inference_only=True, emulated_vm=True)


@pytest.fixture(scope="module")
def full_html(full_study):
    return render_html(analyze(full_study))


def svgs(html: str) -> list[str]:
    return re.findall(r"<svg\b[^>]*>", html)


def test_report_has_every_section(full_html):
    for section in SECTIONS:
        assert f'<section id="{section}">' in full_html


def test_every_figure_is_inline_svg_with_a_size_and_unique_ids(full_html):
    tags = svgs(full_html)
    assert len(tags) >= 6  # Fig. 4 per app, Fig. 5 GPU and CPU, Fig. 9, Figs. 10 and 11
    for tag in tags:
        assert re.search(r'viewBox="0 0 [\d.]+ [\d.]+"', tag)
        assert re.search(r'width="[\d.]+pt"', tag) and re.search(r'height="[\d.]+pt"', tag)
    ids = re.findall(r'\bid="([^"]+)"', full_html)
    assert len(ids) == len(set(ids)), "duplicate ids would break clip paths between figures"


def test_report_needs_no_network(full_html):
    assert not re.search(r'(src|href)="(https?:)?//', full_html)
    assert "<script" not in full_html and "<link" not in full_html and "<img" not in full_html


def test_paper_figures_are_present_with_data(full_study):
    keys = [f.key for f in figures(analyze(full_study))]
    assert sum(k.startswith("fig4-") for k in keys) == 2
    for key in ("fig5", "fig9", "fig10", "fig11"):
        assert key in keys
    assert all(f.svg for f in figures(analyze(full_study)))


def test_missing_data_gives_explicit_placeholders_not_empty_figures():
    records = synthetic_runs("BM/1/PIN/CPU", 10.0) + synthetic_runs("BM/2/PIN/CPU", 6.0)
    a = analyze(records)
    by_key = {f.key: f for f in figures(a)}
    assert by_key["fig5"].svg is None and by_key["fig5"].needs == "GPU runs"
    assert by_key["fig9"].svg is None and "host_load" in by_key["fig9"].needs
    assert by_key["fig10"].svg is None
    html = render_html(a)
    assert "Not enough data for this figure (needs: GPU runs)" in html
    bp6 = html.split('id="bp6"')[1].split("</tr>")[0]
    assert "not enough data" in bp6 and "needs: GPU runs" in bp6


def test_emulated_vms_are_reported_apart(full_html):
    assert "Emulated VMs (TCG): not comparable with native runs" in full_html
    emulated = full_html.split("Emulated VMs (TCG)")[1].split("</table>")[0]
    assert "VM/2/PIN/CPU (TCG)" in emulated


def test_failed_runs_warnings_and_metadata_are_listed(full_html):
    failures = full_html.split('<section id="failures">')[1].split("</section>")[0]
    assert "VM/16/PIN/CPU" in failures and "the guest did not boot" in failures
    warnings = full_html.split('<section id="warnings">')[1].split("</section>")[0]
    assert "emulated_vm" in warnings and "TCG emulation" in warnings  # with its hint
    meta = full_html.split('<section id="metadata">')[1].split("</section>")[0]
    for field in ("kernel", "CPU", "git revision", "accelerator", "tcg", "kvm", "synthetic-host"):
        assert field in meta


def test_best_practice_verdicts_are_shown_with_their_tests(full_study, full_html):
    bp_html = full_html.split('<section id="best-practices">')[1].split("</section>")[0]
    for bp in analyze(full_study).best_practices:
        assert f'id="bp{bp.number}"' in bp_html
        assert bp.verdict in bp_html
    assert bp_html.count("Test: ") == 7


def test_recommendation_section_shows_constraints_and_the_best(full_study):
    html = render_html(analyze(full_study, Constraints(max_cores=2, platforms=("BM", "CN"))))
    rec = html.split('<section id="recommendation">')[1].split("</section>")[0]
    assert "at most 2 cores, platforms BM,CN" in rec
    assert "<strong>BM/2/" in rec or "<strong>CN/2/" in rec


def test_report_of_no_runs_still_renders():
    html = render_html(analyze([]))
    assert "nothing to recommend yet" in html


def test_write_report_writes_one_file(tmp_path):
    out = tmp_path / "sub" / "r.html"
    write_report(synthetic_runs("BM/1/PIN/CPU", 10.0), out)
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert list(out.parent.iterdir()) == [out]


# -- CLI ------------------------------------------------------------------------------------
@pytest.fixture()
def db(store, tmp_path):
    for r in (synthetic_runs("BM/1/PIN/CPU", 10.0, run_cv=0.005) + synthetic_runs("BM/2/PIN/CPU", 6.0, run_cv=0.005)
              + synthetic_runs("BM/2/VNL/CPU", 6.05, run_cv=0.05)):
        store.add(r)
    return store.path


def test_cli_report_writes_the_file_and_prints_its_path(db, tmp_path):
    out = tmp_path / "report.html"
    result = CliRunner().invoke(app, ["report", "--db", str(db), "-o", str(out), "--max-cores", "2",
                                      "--latency-slo-ms", "100", "--slo-percentile", "99"])
    assert result.exit_code == 0, result.output
    assert f"report written to {out.resolve()}" in result.output
    assert "recommendation for ic" in result.output and "best practice 7:" in result.output
    assert '<section id="recommendation">' in out.read_text()


def test_cli_report_bad_options_are_one_line_errors(db, tmp_path):
    for args in (["--slo-percentile", "95"], ["--platforms", "BM,XYZ"]):
        result = CliRunner().invoke(app, ["report", "--db", str(db), "-o", str(tmp_path / "r.html"), *args])
        assert result.exit_code == 2
        assert result.output.count("\n") == 1 and result.output.startswith("error: ")
    result = CliRunner().invoke(app, ["report", "--db", str(tmp_path / "missing.db")])
    assert result.exit_code == 2 and "no store at" in result.output


def test_cli_compare_prints_the_ratio_its_ci_and_the_verdict_in_words(db):
    result = CliRunner().invoke(app, ["compare", "BM/2/PIN/CPU", "BM/1/PIN/CPU", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "0.600x (95% CI 0.5" in result.output and "faster" in result.output
    assert "BM/2/PIN/CPU is 40.0% faster than BM/1/PIN/CPU" in result.output
    result = CliRunner().invoke(app, ["compare", "BM/2/VNL/CPU", "BM/2/PIN/CPU", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "undecided" in result.output and "is not decided yet at 95% confidence" in result.output
    result = CliRunner().invoke(app, ["compare", "BM/2/VNL/CPU", "BM/2/PIN/CPU", "--db", str(db), "--json"])
    [row] = json.loads(result.output)
    assert row["verdict"] == "undecided" and row["launch_pairs"] == 3 and row["margin"] == 0.05


def test_cli_compare_unknown_scenario_is_a_one_line_error(db):
    result = CliRunner().invoke(app, ["compare", "CN/2/PIN/CPU", "BM/1/PIN/CPU", "--db", str(db)])
    assert result.exit_code == 2 and "no successful runs of CN/2/PIN/CPU" in result.output


def test_cli_recommend_says_the_decision_and_its_confidence(db):
    result = CliRunner().invoke(app, ["recommend", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert result.output.startswith("ic (tiny, torch, 32 req): BM/2/PIN/CPU: 6.00")
    assert "not decided yet: BM/2/VNL/CPU could still be faster" in result.output
    result = CliRunner().invoke(app, ["recommend", "--db", str(db), "--json"])
    data = json.loads(result.output)
    assert set(data) >= {"decided", "best", "undecided_pairs", "recommendations", "margin", "confidence"}
    # BM/2/PIN and BM/2/VNL (5% run CV, 3 launches) cannot be told apart yet
    assert data["decided"] is False
    assert data["undecided_pairs"] == [["BM/2/PIN/CPU", "BM/2/VNL/CPU"]]
    [rec] = data["recommendations"]
    assert rec["fastest"] == "BM/2/PIN/CPU" and rec["probability_correct_selection"] is None

def test_cli_recommend_json_lists_workloads_without_a_candidate_apart_not_as_a_null_pick(db):
    result = CliRunner().invoke(app, ["recommend", "--db", str(db), "--json", "--latency-slo-ms", "0.01"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["best"] == [] and data["decided"] is False
    assert data["no_candidate"] == ["ic (tiny, torch, 32 req)"]



def test_cli_recommend_refuses_bad_constraints_and_empty_stores_in_one_line(db, tmp_path):
    result = CliRunner().invoke(app, ["recommend", "--db", str(db), "--slo-percentile", "95"])
    assert result.exit_code == 2 and "90 or 99" in result.output
    result = CliRunner().invoke(app, ["recommend", "--db", str(db), "--app", "sr"])
    assert result.exit_code == 2 and "Traceback" not in result.output
