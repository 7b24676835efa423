#!/usr/bin/env python3
"""The device check: one prepared run on the lent GPU machine (1 GPU, 16 cores, Python 3.12 with
CUDA torch, no package registry) that finishes within 8 minutes; `--dry-run` does the same
steps here, on the CPU, with tiny models. Started by scripts/device_check.sh.

Steps, each under the time budget (what no longer fits is skipped with the reason, never
started; a step that overruns its share is interrupted like Ctrl-C, so its finished runs are
stored, and killed 20 s later if it still runs):

1. a temporary site: a venv with --system-site-packages over the machine's Python, the
   carried wheels (device-carry/wheels, scripts/fetch_device_wheels.sh) unpacked into it, and
   a .pth naming this checkout's src/ and the base Python's own site folders; a carried runc
   (device-carry/runc) goes first on PATH;
2. the host: /dev/kvm and writable cgroups, printed; `deploybench doctor`;
3. the measurements, with the CLI as the README documents it (`deploybench run ... --repeat`):
   Fig. 5: BM/N/PIN/GPU against BM/N/PIN/CPU at N = 4 and 16, IC full, NLP base, RS debug,
   E2E and --inference-only; the CHR effect: BM/N/VNL/CPU against BM/N/PIN/CPU at N = 2, 4,
   8, 16 (IC full); CN/N/VNL against CN/N/PIN at N = 2 and 16 where a runtime works;
4. the results in $OUT (default ./device-out): the store, a JSON-lines export with its
   reference.json and the HTML report (reference/ of the README: `report --reference`),
   the logs, and summary.txt (GPU/CPU speedups, VNL/PIN and CN ratios).

In the dry run, N is capped at this host's cores and GPU scenarios are skipped with the
reason (there is no GPU); the project's .venv stands in for the base Python.
This file uses the standard library only: it runs before the wheels are installed.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
GRACE_S = 20.0  # after an interrupt, before the step is killed


# -- the plan --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Workload:
    app: str
    size: str
    requests: int


@dataclass(frozen=True)
class Profile:
    """The sizes of one kind of check (the device's, or the dry run's)."""

    fig5_apps: tuple[Workload, ...]
    fig5_cores: tuple[int, ...]
    chr_workload: Workload
    chr_cores: tuple[int, ...]
    cn_cores: tuple[int, ...]
    repeat: int
    data_count: int
    budget_s: float
    reserve_s: float  # kept for export, report and summary
    run_timeout_s: float


DEVICE = Profile(
    fig5_apps=(Workload("ic", "full", 64), Workload("nlp", "base", 16), Workload("rs", "debug", 32)),
    fig5_cores=(4, 16), chr_workload=Workload("ic", "full", 32), chr_cores=(2, 4, 8, 16),
    cn_cores=(2, 16), repeat=2, data_count=64, budget_s=420.0, reserve_s=45.0, run_timeout_s=120.0)
DRY = Profile(
    fig5_apps=(Workload("ic", "tiny", 8), Workload("nlp", "tiny", 8), Workload("rs", "tiny", 8)),
    fig5_cores=(4, 16), chr_workload=Workload("ic", "tiny", 8), chr_cores=(2, 4, 8, 16),
    cn_cores=(2, 16), repeat=1, data_count=16, budget_s=170.0, reserve_s=35.0, run_timeout_s=90.0)


@dataclass(frozen=True)
class Step:
    name: str
    scenarios: tuple[str, ...]
    workload: Workload
    inference_only: bool
    max_s: float  # its share of the budget
    min_s: float  # not started with less left than this

    def argv(self, profile: Profile, db: Path) -> list[str]:
        args = ["run", *self.scenarios, "--app", self.workload.app, "--model-size", self.workload.size,
                "--requests", str(self.workload.requests), "--repeat", str(profile.repeat),
                "--data-count", str(profile.data_count), "--timeout", f"{profile.run_timeout_s:g}",
                "--db", str(db)]
        return args + (["--inference-only"] if self.inference_only else [])


@dataclass(frozen=True)
class HostView:
    """What the plan depends on, from `deploybench doctor --json`."""

    cores: int
    gpu: str | None  # None = GPU scenarios cannot run; the reason is in gpu_reason
    gpu_reason: str
    bm_reason: str | None
    cn_reason: str | None


def capped(cores: tuple[int, ...], host_cores: int) -> list[int]:
    out: list[int] = []
    for n in cores:
        n = min(n, host_cores)
        if n not in out:
            out.append(n)
    return out


def plan(profile: Profile, host: HostView) -> tuple[list[Step], list[str]]:
    """The steps in priority order (Fig. 5 at the first N, the CHR series, CN, Fig. 5 at the
    other N), and the lines saying what is skipped and why."""
    steps: list[Step] = []
    skips: list[str] = []
    if host.bm_reason:
        skips.append(f"skip every BM step: {host.bm_reason}")
    fig5 = capped(profile.fig5_cores, host.cores)
    seen_gpu_skip = False

    def fig5_steps(n: int) -> list[Step]:
        nonlocal seen_gpu_skip
        out = []
        if host.bm_reason:
            return out
        for only in (False, True):
            for w in profile.fig5_apps:
                scenarios = [f"BM/{n}/PIN/CPU"]
                if host.gpu:
                    scenarios.insert(0, f"BM/{n}/PIN/GPU")
                elif not seen_gpu_skip:
                    skips.append(f"skip every GPU scenario (BM/N/PIN/GPU, CN/N/PIN/GPU): "
                                 f"{host.gpu_reason}; their CPU counterparts still run")
                    seen_gpu_skip = True
                mode = "inference-only" if only else "e2e"
                share = {"nlp": 70.0, "rs": 55.0}.get(w.app, 50.0)
                out.append(Step(f"fig5-n{n}-{mode}-{w.app}", tuple(scenarios), w, only, share, 12.0))
        return out

    if fig5:
        steps += fig5_steps(fig5[0])
    chr_cores = capped(profile.chr_cores, host.cores)
    if not host.bm_reason:
        if chr_cores != list(profile.chr_cores):
            skips.append(f"CHR series capped at this host's {host.cores} cores: N = "
                         f"{', '.join(map(str, chr_cores))}")
        scenarios = tuple(s for n in chr_cores for s in (f"BM/{n}/VNL/CPU", f"BM/{n}/PIN/CPU"))
        steps.append(Step("chr-bm-vnl-pin", scenarios, profile.chr_workload, False, 130.0, 25.0))
    if host.cn_reason:
        skips.append(f"skip CN/N/VNL against CN/N/PIN: {host.cn_reason}")
    else:
        cn = capped(profile.cn_cores, host.cores)
        scenarios = tuple(s for n in cn for s in (f"CN/{n}/VNL/CPU", f"CN/{n}/PIN/CPU"))
        steps.append(Step("chr-cn-vnl-pin", scenarios, profile.chr_workload, False, 70.0, 20.0))
        if host.gpu and fig5:  # the GPU through the OCI runtime: device nodes + driver libraries
            steps.append(Step("cn-gpu", (f"CN/{fig5[0]}/PIN/GPU",), profile.fig5_apps[0], False, 40.0, 15.0))
    for n in fig5[1:]:
        steps += fig5_steps(n)
    if len(fig5) < len(profile.fig5_cores):
        skips.append(f"Fig. 5 at N = {', '.join(map(str, profile.fig5_cores))} capped at this "
                     f"host's {host.cores} cores: N = {', '.join(map(str, fig5))}")
    return steps, skips


# -- running things under a deadline ---------------------------------------------------------
class Budget:
    def __init__(self, total_s: float, reserve_s: float) -> None:
        self.start = time.monotonic()
        self.total_s, self.reserve_s = total_s, reserve_s

    def elapsed(self) -> float:
        return time.monotonic() - self.start

    def left(self, keep_reserve: bool = True) -> float:
        return self.total_s - self.elapsed() - (self.reserve_s if keep_reserve else 0.0)


class Log:
    """Everything printed goes to stdout and to $OUT/device_check.log."""

    def __init__(self, path: Path) -> None:
        self.file = open(path, "a", buffering=1)
        self.lock = threading.Lock()

    def __call__(self, text: str = "") -> None:
        with self.lock:
            print(text, flush=True)
            self.file.write(text + "\n")


def _descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (read from /proc), so none is left running."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def _restore_sigint() -> None:
    # a background shell starts us with SIGINT ignored; the CLI needs it to stop cleanly
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def call(argv: list[str], timeout_s: float, log: Log, env: dict[str, str],
         capture: bool = False, grace_s: float = GRACE_S) -> tuple[int | None, str]:
    """Run ``argv``, its output printed and logged; interrupt it at ``timeout_s`` (returns
    None as its status then). Returns (status, output)."""
    lines: list[str] = []
    try:
        proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env=env, cwd=REPO, start_new_session=True, preexec_fn=_restore_sigint,
                                stdin=subprocess.DEVNULL, errors="replace")
    except OSError as exc:
        log(f"  cannot start {argv[0]}: {exc}")
        return 127, ""

    def pump() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            line = line.rstrip("\n")
            lines.append(line)
            if not capture:
                log("  " + line)

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    status: int | None
    try:
        status = proc.wait(timeout=max(1.0, timeout_s))
    except subprocess.TimeoutExpired:
        log(f"  ... out of time after {timeout_s:.0f} s: interrupting (finished runs are stored)")
        try:
            os.killpg(proc.pid, signal.SIGINT)
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            family = _descendants(proc.pid)
            log(f"  ... still running {grace_s:.0f} s later: killing it and {len(family)} descendants")
            for pid in [proc.pid, *family]:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            proc.wait()
        except ProcessLookupError:
            proc.wait()
        status = None
    reader.join(timeout=5)
    return status, "\n".join(lines)


# -- the temporary site ----------------------------------------------------------------------
WHEEL_NAME = re.compile(r"^(?P<dist>[^-]+)-(?P<ver>[^-]+)(-\d[^-]*)?-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$")


def wheel_fits(filename: str, python: tuple[int, int], machine: str = "x86_64") -> bool:
    """Whether a wheel installs on this Python (its tags), by its file name."""
    m = WHEEL_NAME.match(filename)
    if not m:
        return False
    cp = f"cp{python[0]}{python[1]}"
    pys = m["py"].split(".")
    abis = m["abi"].split(".")
    plats = m["plat"].split(".")
    py_ok = cp in pys or any(p in ("py3", f"py{python[0]}{python[1]}") for p in pys) or (
        "abi3" in abis and any(p.startswith("cp3") and int(p[3:] or 0) <= python[1] for p in pys))
    abi_ok = cp in abis or "none" in abis or "abi3" in abis
    plat_ok = "any" in plats or any(p.endswith(machine) and ("linux" in p) for p in plats)
    return py_ok and abi_ok and plat_ok


def install_wheel(wheel: Path, site: Path) -> None:
    """Unpack a wheel into ``site`` (what pip does for importing: the package, its
    .dist-info, and the purelib/platlib parts of its .data folder; scripts are not needed)."""
    with zipfile.ZipFile(wheel) as archive:
        for member in archive.infolist():
            parts = Path(member.filename).parts
            if not parts or ".." in parts or member.filename.startswith("/"):
                raise ValueError(f"{wheel.name}: unsafe path {member.filename!r}")
            if parts[0].endswith(".data"):
                if len(parts) < 3 or parts[1] not in ("purelib", "platlib"):
                    continue
                target = site.joinpath(*parts[2:])
            else:
                target = site.joinpath(*parts)
            if member.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with archive.open(member) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
            mode = (member.external_attr >> 16) & 0o777
            if mode:
                target.chmod(mode)


def _python_facts(python: str) -> dict:
    code = ("import json, site, sys, sysconfig; print(json.dumps({'version': list(sys.version_info[:2]), "
            "'sites': site.getsitepackages(), 'purelib': sysconfig.get_paths()['purelib'], "
            "'prefix': sys.prefix, 'base_prefix': sys.base_prefix}))")
    out = subprocess.run([python, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def make_site(base_python: str, tmp: Path, wheels: Path | None, log: Log) -> tuple[str, str | None]:
    """A venv over ``base_python`` with the carried wheels and this checkout on its path.
    Returns (its python, None), or (``base_python``, a PYTHONPATH) where no venv can be made
    (then CN cannot run: a container's clean environment passes no PYTHONPATH)."""
    base = _python_facts(base_python)
    venv = tmp / "venv"
    made = subprocess.run([base_python, "-m", "venv", "--system-site-packages", "--without-pip", str(venv)],
                          capture_output=True, text=True, timeout=120)
    if made.returncode == 0:
        python, pythonpath = str(venv / "bin" / "python"), None
        site = Path(_python_facts(python)["purelib"])
    else:
        log(f"  no venv ({(made.stderr.strip().splitlines() or ['?'])[-1]}): using PYTHONPATH")
        site = tmp / "site"
        python, pythonpath = base_python, os.pathsep.join([str(site), str(REPO / "src")])
    site.mkdir(parents=True, exist_ok=True)
    installed, unfit = [], []
    for wheel in sorted(wheels.glob("*.whl")) if wheels and wheels.is_dir() else []:
        if wheel_fits(wheel.name, tuple(base["version"])):
            install_wheel(wheel, site)
            installed.append(wheel.name.split("-")[0])
        else:
            unfit.append(wheel.name)
    log(f"  site {site}: {len(installed)} carried wheels" + (f" ({', '.join(installed)})" if installed else
                                                           " (none carried)"))
    if unfit:
        log(f"  not for Python {base['version'][0]}.{base['version'][1]}, left out: {', '.join(unfit)}")
    # this checkout, and the base Python's own site folders (a venv's too: --system-site-packages
    # only reaches the interpreter's base installation)
    lines = [str(REPO / "src")]
    lines += [f"import site; site.addsitedir({p!r})" for p in base["sites"] if os.path.isdir(p)]
    (site / "deploybench-device-check.pth").write_text("\n".join(lines) + "\n")
    return python, pythonpath


# -- facts, plan, run, summarise -------------------------------------------------------------
def host_view(doctor: dict, is_venv: bool, dry_run: bool) -> HostView:
    checks = {c["key"]: c for c in doctor.get("checks", [])}  # doctor --json's stable keys

    def works(c: dict) -> bool:
        return c.get("status") in ("ok", "emulated")

    def reason(key: str) -> str | None:
        c = checks.get(key)
        return None if c is None or works(c) else c["detail"]
    torch_cuda = checks.get("torch_cuda", {})
    gpu_ok = bool(doctor.get("host", {}).get("gpus")) and works(torch_cuda)
    if dry_run:
        gpu_ok = False
        gpu_reason = "dry run: no GPU here"
    else:
        gpu_reason = reason("gpu") or reason("torch_cuda") or "no usable GPU"
    cn_reason = reason("platform.CN") or reason("runtime.runc")
    if cn_reason is None and not is_venv:
        cn_reason = "the site is not a venv, and a container's clean environment has no PYTHONPATH"
    return HostView(cores=int(doctor.get("host", {}).get("cores") or os.cpu_count() or 1),
                    gpu=(doctor["host"]["gpus"][0] if gpu_ok else None), gpu_reason=gpu_reason,
                    bm_reason=reason("platform.BM"), cn_reason=cn_reason)


def kvm_and_cgroups(log: Log) -> list[str]:
    lines = []
    kvm = Path("/dev/kvm")
    if kvm.exists():
        try:
            fd = os.open(kvm, os.O_RDWR)
            os.close(fd)
            lines.append("kvm: /dev/kvm exists and opens read-write")
        except OSError as exc:
            lines.append(f"kvm: /dev/kvm exists but does not open ({exc.strerror})")
    else:
        lines.append("kvm: /dev/kvm does not exist (VM/MVM guests would run under TCG emulation)")
    root = Path("/sys/fs/cgroup")
    if (root / "cgroup.controllers").exists():
        kind = "v2 (" + (root / "cgroup.controllers").read_text().strip() + ")"
    elif (root / "cpu").is_dir():
        kind = "v1" + (" + unified" if (root / "unified").is_dir() else "")
    else:
        kind = "none mounted"
    probe = (root if (root / "cgroup.controllers").exists() else root / "cpu") / f"deploybench-probe-{os.getpid()}"
    try:
        probe.mkdir()
        probe.rmdir()
        writable = "writable"
    except OSError as exc:
        writable = f"not writable ({exc.strerror})"
    lines.append(f"cgroups: {kind} at {root}, {writable}")
    for line in lines:
        log(line)
    return lines


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if isinstance(v, (int, float))]
    return sum(values) / len(values) if values else None


def summarise(runs_jsonl: Path) -> list[str]:
    """GPU/CPU speedups (E2E, inference phase, inference-only), VNL/PIN and CN ratios, from
    the export's runs (means over successful runs)."""
    if not runs_jsonl.is_file():
        return ["no export: nothing to summarise"]
    groups: dict[tuple, list[dict]] = {}
    for line in runs_jsonl.read_text().splitlines():
        if not line.strip():
            continue
        run = json.loads(line)
        if run.get("status") != "ok":
            continue
        key = (run["scenario"], run["app"], run["model_size"], bool(run["inference_only"]))
        groups.setdefault(key, []).append(run)
    mean = {k: (_mean([r.get("e2e_mean_ms") for r in g]), _mean([r.get("infer_ms") for r in g]), len(g))
            for k, g in groups.items()}
    out = []
    for (name, app, size, only), (e2e, infer, n) in sorted(mean.items()):
        if "/GPU" not in name:
            continue
        cpu = mean.get((name.replace("/GPU", "/CPU"), app, size, only))
        if cpu and e2e and cpu[0]:
            what = "inference-only" if only else "E2E"
            extra = "" if only else f", inference phase {cpu[1] / infer:.2f}x" if infer else ""
            out.append(f"GPU speedup {name} vs CPU, {app} {size}, {what}: {cpu[0] / e2e:.2f}x "
                       f"(CPU {cpu[0]:.2f} ms, GPU {e2e:.2f} ms per request, {n}+{cpu[2]} runs{extra})")
    for (name, app, size, only), (e2e, _infer, n) in sorted(mean.items(), key=lambda kv: (kv[0][0].split("/")[0], int(kv[0][0].split("/")[1]))):
        if "/VNL/" not in name or only:
            continue
        pin = mean.get((name.replace("/VNL/", "/PIN/"), app, size, only))
        if pin and pin[0] and e2e:
            out.append(f"VNL/PIN {name.replace('/VNL', '')}, {app} {size}: {e2e / pin[0]:.3f} "
                       f"(VNL {e2e:.2f} ms, PIN {pin[0]:.2f} ms, {n}+{pin[2]} runs)")
    return out or ["no pair of scenarios to compare was measured"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scripts/device_check.sh", description=__doc__.split("\n\n")[0])
    parser.add_argument("--dry-run", action="store_true", help="here, on the CPU, tiny models")
    parser.add_argument("--out", default=os.environ.get("OUT") or "device-out", help="results folder ($OUT)")
    parser.add_argument("--budget-s", type=float, help="total seconds (device 420, dry run 170)")
    parser.add_argument("--carry", default=str(REPO / "device-carry"), help="carried wheels and runc")
    parser.add_argument("--python", help="base Python (device: python3; dry run: .venv/bin/python)")
    parser.add_argument("--only", default="", help="comma-separated step name prefixes to run")
    args = parser.parse_args(argv)

    profile = DRY if args.dry_run else DEVICE
    budget = Budget(args.budget_s or profile.budget_s, profile.reserve_s)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    log = Log(out / "device_check.log")
    mode = "dry run (CPU, tiny models)" if args.dry_run else "device check"
    log(f"deploybench {mode}: budget {budget.total_s:.0f} s, results in {out}")
    base_python = args.python or (str(REPO / ".venv" / "bin" / "python") if args.dry_run else "python3")
    carry = Path(args.carry)
    tmp = Path(tempfile.mkdtemp(prefix="deploybench-device-"))
    env = dict(os.environ, DEPLOYBENCH_HOME=str(tmp / "home"), PYTHONUNBUFFERED="1", COLUMNS="170")
    runc_dir = carry / "runc"
    if (runc_dir / "runc").is_file():
        env["PATH"] = f"{runc_dir}{os.pathsep}{env.get('PATH', '')}"
    db = out / "deploybench.db"
    export_dir = out / "reference"
    summary: list[str] = []
    try:
        log("== site")
        python, pythonpath = make_site(base_python, tmp, carry / "wheels", log)
        if pythonpath:
            env["PYTHONPATH"] = pythonpath
        db_cli = [python, "-m", "deploybench"]
        _, versions = call([python, "-c", "import sys, torch; print('python', sys.version.split()[0], "
                            "'torch', torch.__version__, 'cuda', torch.version.cuda)"], 120, log, env)
        if shutil.which("runc", path=env["PATH"]):
            runc = shutil.which("runc", path=env["PATH"])
            log(f"  runc: {runc}")
            call(["ldd", runc], 20, log, env)
            call([runc, "--version"], 20, log, env)
        else:
            log("  runc: none on PATH and none carried (device-carry/runc)")

        log("== host")
        summary += kvm_and_cgroups(log)
        if "none mounted" in summary[-1] and not args.dry_run and os.geteuid() == 0:
            mounted = subprocess.run(["mount", "-t", "cgroup2", "cgroup2", "/sys/fs/cgroup"],
                                     capture_output=True, text=True)
            log(f"  mount -t cgroup2 cgroup2 /sys/fs/cgroup: "
                f"{'done' if mounted.returncode == 0 else mounted.stderr.strip() or mounted.returncode}")
            summary += kvm_and_cgroups(log)
        log("$ deploybench doctor --json")
        status, text = call(db_cli + ["doctor", "--json"], 120, log, env, capture=True)
        doctor = {}
        try:
            doctor = json.loads(text[text.index("{"):]) if "{" in text else {}
        except json.JSONDecodeError:
            pass
        if not doctor:
            log("  doctor printed no JSON: " + " | ".join(text.splitlines()[-3:]))
        (out / "doctor.json").write_text(json.dumps(doctor, indent=1))
        for check in doctor.get("checks", []):
            log(f"  {check['status']:<8} {check['name']:<22} {check['detail']}")
        host = host_view(doctor, pythonpath is None, args.dry_run)
        log(f"  plan for {host.cores} cores, GPU: {host.gpu or 'none (' + host.gpu_reason + ')'}")

        steps, skips = plan(profile, host)
        if args.only:
            prefixes = [p for p in args.only.split(",") if p]
            left_out = [s.name for s in steps if not any(s.name.startswith(p) for p in prefixes)]
            steps = [s for s in steps if any(s.name.startswith(p) for p in prefixes)]
            if left_out:
                skips.append(f"--only {args.only}: left out {', '.join(left_out)}")
        for line in skips:
            log(line)
        summary += skips

        log("== data")
        for app in sorted({s.workload.app for s in steps}):
            if budget.left() < 10:
                break
            call(db_cli + ["data", "--app", app, "--count", str(profile.data_count)], min(120, budget.left()), log, env)

        log("== measurements")
        for step in steps:
            left = budget.left()
            if left < step.min_s:
                line = f"skip {step.name}: time budget spent ({max(left, 0):.0f} s left, needs {step.min_s:.0f} s)"
                log(line)
                summary.append(line)
                continue
            allot = min(step.max_s, left)
            log(f"-- {step.name} (up to {allot:.0f} s, {budget.elapsed():.0f} s used): deploybench "
                + " ".join(step.argv(profile, db)))
            t = time.monotonic()
            status, _ = call(db_cli + step.argv(profile, db), allot, log, env)
            took = time.monotonic() - t
            what = "interrupted at its time share" if status is None else f"exit status {status}"
            log(f"   {step.name}: {what}, {took:.0f} s")
            if status not in (0,):
                summary.append(f"{step.name}: {what}")

        log("== results")
        final_left = max(15.0, budget.left(keep_reserve=False))
        if db.exists():
            call(db_cli + ["export", "--db", str(db), "--format", "jsonl", "-o", str(export_dir)],
                 min(60, final_left), log, env)
            call(db_cli + ["report", "--db", str(db), "-o", str(export_dir / "report.html")],
                 max(15.0, min(90, budget.left(keep_reserve=False))), log, env)
            machine = describe_machine(doctor)
            command = "bash scripts/device_check.sh" + (" --dry-run" if args.dry_run else "")
            revision = os.environ.get("DEVICE_CHECK_REVISION") or git_revision()
            call([python, "-m", "deploybench.reference", "manifest", str(export_dir), "--machine", machine,
                  "--command", command, "--git-revision", revision,
                  "--notes", "dry run on a CPU host: not reference data" if args.dry_run else ""],
                 30, log, env)
            call(db_cli + ["show", "--db", str(db)], max(15.0, min(60, budget.left(keep_reserve=False))), log, env)
        else:
            log("no store: no run was made")
        summary += summarise(export_dir / "runs.jsonl")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log("== summary")
    for line in summary:
        log(line)
    (out / "summary.txt").write_text("\n".join(summary) + "\n")
    log(f"done in {budget.elapsed():.0f} s; results in {out}")
    return 0


def describe_machine(doctor: dict) -> str:
    host = doctor.get("host", {})
    gpus = host.get("gpus") or []
    gpu = f"{len(gpus)}x {gpus[0]}, " if gpus else "no GPU, "
    return f"{gpu}{host.get('cores')} cores ({host.get('cpu_model')}), {host.get('memory_gib')} GiB, kernel {host.get('kernel')}"


def git_revision() -> str:
    try:
        out = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short=12", "HEAD"],
                             capture_output=True, text=True, timeout=10)
        return out.stdout.strip() if out.returncode == 0 else "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


if __name__ == "__main__":
    sys.exit(main())
