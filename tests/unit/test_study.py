"""Study files: validation with one-line errors, the scenario matrix, overrides, the plan."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from deploybench.scenario import CpuMode, HostLoad, PageCache, PlatformName, Storage
from deploybench.study import Study, StudyError, load_study

ROOT = Path(__file__).resolve().parents[2]
QUICK = ROOT / "studies" / "paper-quick.toml"

BASE = """
name = "t"
apps = ["ic"]
platforms = ["BM"]
cores = [1, 2]
model_sizes = "tiny"
requests = 4
"""


def study(extra: str = "", base: str = BASE) -> Study:
    return Study.from_toml(base + extra, source="study.toml")


def error_of(text: str) -> str:
    with pytest.raises(StudyError) as info:
        Study.from_toml(text, source="study.toml")
    message = str(info.value)
    assert "\n" not in message
    return message


# -- errors -------------------------------------------------------------------------------
def test_unknown_platform_names_the_list_index():
    text = BASE.replace('platforms = ["BM"]', 'platforms = ["BM", "CN", "XX"]')
    assert error_of(text) == "study.toml: platforms[2]: unknown platform 'XX': use one of BM CN VM MVM VMCN"


@pytest.mark.parametrize("text, expected", [
    (BASE + "colour = 'red'\n", "study.toml: colour: unknown key"),
    (BASE.replace("cores = [1, 2]", "cores = [1, 0]"), "study.toml: cores: cores[1] = 0"),
    (BASE.replace("cores = [1, 2]", 'cores = ["two"]'), "study.toml: cores[0]: Input should be a valid integer"),
    (BASE + 'modes = ["PIN", "FAST"]\n', "study.toml: modes[1]: unknown CPU mode 'FAST'"),
    (BASE + "[stopping]\nmax_runs = 3\n", "study.toml: stopping.max_runs: this key was replaced by max_launches"),
    (BASE + "[stopping]\nmin_launches = 1\n", "study.toml: stopping.min_launches: Input should be greater than or equal to 2"),
    (BASE + "[stopping]\ntarget_rel_ci = 0\n", "study.toml: stopping.target_rel_ci: Input should be greater than 0"),
    (BASE + "[stopping]\nwarmup = 2\n", "study.toml: stopping.warmup: unknown key"),
    (BASE + "[host]\nhost_load = 'noisy'\n", "study.toml: host.host_load[0]: unknown host_load 'noisy': use one of idle busy"),
    (BASE + "[overrides.XX]\nrequests = 2\n", "study.toml: overrides: overrides.XX: unknown platform 'XX'"),
    (BASE + "[overrides.VM]\nspeed = 2\n", "study.toml: overrides.VM.speed: unknown key"),
    (BASE.replace('apps = ["ic"]', 'apps = ["ic", "chess"]'), "study.toml: apps[1]: unknown app 'chess'"),
    (BASE.replace('apps = ["ic"]', 'apps = ["nosuchmodule:App"]'), "study.toml: apps[0]: cannot import app module"),
    (BASE.replace('model_sizes = "tiny"', 'model_sizes = "huge"'),
     "study.toml: model_sizes.*[0]: app 'ic' has no model size 'huge': use one of full small tiny"),
    (BASE.replace('model_sizes = "tiny"', '') + '[model_sizes]\nic = "tiny"\nsr = "tiny"\n',
     "study.toml: model_sizes.sr: app 'sr' is not in the study's apps"),
    (BASE.replace('name = "t"', ''), "study.toml: name: required key is missing"),
    (BASE.replace('name = "t"', 'name = "a b"'), "study.toml: name: use letters"),
    (BASE + "schema = 7\n", "study.toml: schema: study schema 7 is not 1"),
    ("name = 't'\napps = [ic]\n", "study.toml: not valid TOML: "),
])
def test_invalid_study_files_give_one_line_errors(text, expected):
    assert error_of(text).startswith(expected)


def test_missing_study_file_is_a_study_error(tmp_path):
    with pytest.raises(StudyError, match="not found"):
        load_study(tmp_path / "nope.toml")


def test_cli_prints_one_line_and_exits_2_without_a_traceback(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text(BASE.replace('platforms = ["BM"]', 'platforms = ["BM", "CN", "XX"]'))
    out = subprocess.run([sys.executable, "-m", "deploybench", "sweep", str(bad), "--plan"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 2
    assert out.stderr.strip() == ("error: bad.toml: platforms[2]: unknown platform 'XX': use one "
                                  "of BM CN VM MVM VMCN")
    assert "Traceback" not in out.stderr + out.stdout


# -- the matrix ---------------------------------------------------------------------------
def test_expand_is_the_full_matrix_in_order():
    s = study('modes = ["VNL", "PIN"]\n[host]\nhost_load = ["idle", "busy"]\n')
    scenarios = s.expand(kvm=True)
    assert len(scenarios) == 2 * 2 * 2  # cores x modes x host load
    assert [x.name for x in scenarios[:4]] == ["BM/1/VNL/CPU"] * 2 + ["BM/1/PIN/CPU"] * 2
    assert {x.host_load for x in scenarios} == {HostLoad.IDLE, HostLoad.BUSY}
    assert all(x.requests == 4 and x.model_size == "tiny" for x in scenarios)
    assert len({x.key for x in scenarios}) == len(scenarios)


def test_per_app_sizes_and_requests_and_default_size():
    text = BASE.replace('model_sizes = "tiny"', '').replace("requests = 4", "") \
        + '[model_sizes]\nic = ["tiny", "small"]\n[requests]\nic = 7\n'
    s = Study.from_toml(text)
    assert {(x.model_size, x.requests) for x in s.expand(kvm=True)} == {("tiny", 7), ("small", 7)}
    plain = Study.from_toml(BASE.replace('model_sizes = "tiny"', ""))
    assert {x.model_size for x in plain.expand(kvm=True)} == {"full"}  # ic's paper-like size


def test_an_override_of_requests_for_every_app_replaces_the_studys_per_app_table():
    text = BASE.replace('platforms = ["BM"]', 'platforms = ["BM", "VM"]').replace("requests = 4", "") \
        + '[requests]\nic = 16\n[overrides.emulated]\nrequests = 2\n[overrides.VM]\nmodel_sizes = ["small"]\n'
    s = Study.from_toml(text)
    emulated = s.expand(kvm=False)
    assert {x.requests for x in emulated if x.platform is PlatformName.VM} == {2}
    assert {x.requests for x in emulated if x.platform is PlatformName.BM} == {16}
    assert {x.model_size for x in emulated if x.platform is PlatformName.VM} == {"small"}


def test_the_emulated_override_may_narrow_the_guests_and_the_rest_skip_with_a_reason(host):
    from deploybench.planning import plan_study

    text = BASE.replace('platforms = ["BM"]', 'platforms = ["BM", "VM", "MVM"]') \
        + '[overrides.emulated]\nplatforms = ["mvm"]\n'
    s = Study.from_toml(text)
    planned = plan_study(s, host, kvm=False)
    vm = [p for p in planned if p.scenario.platform is PlatformName.VM]
    assert vm and all("[overrides.emulated] measures only MVM" in p.skip_reason for p in vm)
    assert all(p.skip_reason is None or "emulated" not in p.skip_reason
               for p in planned if p.scenario.platform is PlatformName.MVM)
    assert all(p.skip_reason is None for p in plan_study(s, host, kvm=True) if p.scenario.platform is PlatformName.VM)
    with pytest.raises(StudyError, match="only \\[overrides.emulated\\] narrows the platforms"):
        Study.from_toml(BASE + '[overrides.virtualized]\nplatforms = ["VM"]\n')
    with pytest.raises(StudyError, match="overrides.emulated.platforms"):
        Study.from_toml(BASE + '[overrides.emulated]\nplatforms = ["XEN"]\n')


def test_overrides_layer_virtualized_platform_and_emulated():
    text = BASE.replace('platforms = ["BM"]', 'platforms = ["BM", "VM", "MVM"]') + """
[stopping]
max_launches = 10
[overrides.virtualized]
requests = 2
stopping = { max_launches = 2, warmup_rounds = 0 }
[overrides.MVM]
timeout_s = 77
[overrides.emulated]
cores = [1]
modes = ["PIN"]
stopping = { max_launches = 1 }
"""
    s = Study.from_toml(text)
    native = s.expand(kvm=True)
    assert {x.requests for x in native if x.platform is PlatformName.BM} == {4}
    assert {x.requests for x in native if x.platform is PlatformName.VM} == {2}
    assert s.rule_for(PlatformName.BM).max_launches == 10
    assert s.rule_for(PlatformName.VM).max_launches == 2
    assert s.rule_for(PlatformName.VM).min_launches == 3  # not decided within 2: a functional check
    assert s.rule_for(PlatformName.VM).warmup_rounds == 0
    assert s.rule_for(PlatformName.VM, emulated=True).max_launches == 1
    assert s.timeout_for(PlatformName.MVM) == 77 and s.timeout_for(PlatformName.VM) == 900
    emulated = s.expand(kvm=False)
    vms = [x for x in emulated if x.platform is not PlatformName.BM]
    assert {(x.cores, x.cpu_mode) for x in vms} == {(1, CpuMode.PIN)}
    assert len([x for x in emulated if x.platform is PlatformName.BM]) == 4


def test_paper_apps_missing_from_this_version_load_and_are_skipped_at_plan(monkeypatch, host):
    from deploybench import planning, study as study_mod

    real = study_mod.app_problem
    monkeypatch.setattr(study_mod, "app_problem",
                        lambda app: "unknown app" if app == "sr" else real(app))
    monkeypatch.setattr(planning, "app_problem", study_mod.app_problem)
    s = study(base=BASE.replace('apps = ["ic"]', 'apps = ["ic", "sr"]'))
    plan = planning.plan_study(s, host, kvm=True)
    reasons = {p.scenario.app: p.skip_reason for p in plan}
    assert reasons["sr"] == "app 'sr' is not in this version of deploybench"


def test_plan_skips_what_the_host_cannot_run_with_reasons(monkeypatch, host):
    import deploybench.platforms as platforms
    from deploybench.planning import plan_study

    text = BASE.replace('platforms = ["BM"]', 'platforms = ["BM", "CN"]').replace(
        "cores = [1, 2]", f"cores = [1, {host.cores + 1}]")
    monkeypatch.setattr(platforms, "implemented", lambda name: name is PlatformName.BM)
    plan = plan_study(study(base=text), host, kvm=True)
    reasons = {(p.scenario.platform.value, p.scenario.cores): p.skip_reason for p in plan}
    assert reasons[("CN", 1)] == "platform CN is not implemented in this version"
    assert reasons[("BM", host.cores + 1)] == f"asks for {host.cores + 1} cores, this host has {host.cores}"
    if host.cgroup_problem is None:
        assert reasons[("BM", 1)] is None

    class Unavailable:
        name = "BM"

        def __init__(self, options=None):
            self.options = options

        def unavailable_reason(self, host):
            return "no runc on PATH"

    monkeypatch.setattr(platforms, "create_platform", lambda name, options=None: Unavailable(options))
    plan = plan_study(study(), host, kvm=True)
    assert {p.skip_reason for p in plan} == {"BM unavailable here: no runc on PATH"}


def test_throttled_storage_is_skipped_on_platforms_without_io_limits(monkeypatch, host, tmp_path):
    import deploybench.platforms as platforms
    from deploybench.planning import plan_study

    from deploybench.platforms.base import PlatformBase

    class NoIo(PlatformBase):
        name = "BM"
        supports_io_limits = False

        def unavailable_reason(self, host):
            return None

    monkeypatch.setattr(platforms, "create_platform", lambda name, options=None: NoIo(options))
    monkeypatch.setenv("DEPLOYBENCH_HOME", str(tmp_path))
    s = study('[host]\nstorage = ["throttled"]\n')
    reasons = {p.skip_reason for p in plan_study(s, host, kvm=True)}
    assert len(reasons) == 1
    (reason,) = reasons
    assert reason.startswith("storage=throttled:")


def test_paper_quick_covers_every_app_platform_core_and_mode():
    s = load_study(QUICK)
    assert s.name == "paper-quick"
    scenarios = s.expand(kvm=True)
    assert {x.app for x in scenarios} == {"ic", "sr", "nlp", "rs"}
    assert {x.platform for x in scenarios} == set(PlatformName)
    assert {(x.cores, x.cpu_mode) for x in scenarios} == {(c, m) for c in (1, 2) for m in CpuMode}
    assert all(x.model_size == "tiny" for x in scenarios)
    assert all(x.page_cache is PageCache.WARM and x.storage is Storage.NATIVE for x in scenarios)
    assert s.rule_for(PlatformName.VM, emulated=True).max_launches == 1


def test_plan_output_names_the_estimate_basis(tmp_path):
    # --accel tcg: the plan must not depend on whether this host's KVM works
    out = subprocess.run([sys.executable, "-m", "deploybench", "sweep", str(QUICK), "--plan",
                          "--accel", "tcg", "--db", str(tmp_path / "none.db")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert re.match(r"study paper-quick \(paper-quick.toml\): \d+ scenarios, \d+ to run in \d+ group",
                    out.stdout)
    # under TCG the study's [overrides.emulated] keeps guests to IC on one pinned core
    vm_lines = [line for line in out.stdout.splitlines() if re.match(r"\s+(run |idle|skip)\s+(VM|MVM|VMCN)/", line)]
    assert vm_lines and all("/1/PIN/CPU · ic" in line for line in vm_lines)
    assert "estimated duration:" in out.stdout and "heuristic" in out.stdout
    assert not (tmp_path / "none.db").exists()  # --plan creates no store


def test_plan_projects_the_epochs_left_from_the_stored_history(tmp_path):
    """With rounds stored, the plan's costs are this host's own (past launches and rounds)
    and the number of epochs still needed is projected from the variance so far."""
    from deploybench.planning import plan_lines
    from deploybench.scenario import Scenario
    from deploybench.store import Store
    from deploybench.sweep import PlannedScenario, RaceRule
    from deploybench.synthetic import synthetic_runs

    study = Study.from_toml('schema = 1\nname = "hist"\napps = ["ic"]\nplatforms = ["BM", "CN"]\n'
                            'cores = [1]\nmodes = ["PIN"]\nrequests = 32\nmodel_sizes = "tiny"\n')
    store = Store(tmp_path / "hist.db")
    for name, mean in (("BM/1/PIN/CPU", 10.0), ("CN/1/PIN/CPU", 10.3)):
        for r in synthetic_runs(name, mean, runs=3, rounds=2, run_cv=0.02, start_latency_s=1.7):
            r.study = "hist"
            store.add(r)
    planned = [PlannedScenario(Scenario.parse(n, app="ic", model_size="tiny", requests=32),
                               rule=RaceRule(max_launches=40, max_time_s=3600))
               for n in ("BM/1/PIN/CPU", "CN/1/PIN/CPU")]
    lines, low, high = plan_lines(study, planned, store)
    text = "\n".join(lines)
    assert "launch 1.7 s" in text and "past runs (" in text
    assert re.search(r"likely \d+ \(projected from the 3 epochs stored\)", text), text
    assert "from past runs" in lines[-1]
    assert 0 <= low <= high
