"""The `deploybench` command line. Imports are lazy: `deploybench --help` loads no torch."""
from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="Measure the end-to-end inference time of deep-learning apps on bare "
                       "metal, containers, VMs, micro-VMs and containers in VMs.")

DB_OPTION = typer.Option("deploybench.db", "--db", help="result store (SQLite file)")


def _user_errors() -> tuple[type[BaseException], ...]:
    from .apps.base import AppError
    from .export import ExportError
    from .reference import ReferenceError
    from .platforms.base import PlatformError
    from .platforms.cpu import CgroupError
    from .scenario import ScenarioError
    from .store import StoreError
    from .study import StudyError

    return (AppError, ExportError, PlatformError, CgroupError, ScenarioError, StoreError, StudyError,
            ReferenceError, FileNotFoundError)


def friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Errors for people: one line on stderr and exit status 2, never a traceback."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except typer.Exit:
            raise
        except KeyboardInterrupt:
            typer.echo("interrupted: runs finished so far are stored", err=True)
            raise typer.Exit(130)
        except Exception as exc:  # noqa: BLE001 - filtered just below
            if isinstance(exc, _user_errors()):
                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                typer.echo(f"error: {message}", err=True)
                raise typer.Exit(2)
            raise

    return wrapper


def _fmt(value: Any, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def print_table(summaries: list[Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="E2E inference time per request (ms)", show_lines=False)
    for column in ("scenario", "app", "size", "backend", "runs", "E2E mean ± 95% CI", "p50", "p90", "p99",
                   "pre", "infer", "post", "req/s", "cpus", "warnings"):
        table.add_column(column, justify="right" if column not in ("scenario", "app", "backend", "warnings") else "left")
    for s in summaries:
        ci = "" if s.e2e_ci95_ms is None or math.isnan(s.e2e_ci95_ms) else f" ± {s.e2e_ci95_ms:.2f}"
        basis = "" if s.ci_basis == "runs" else "*"
        name = s.scenario + (f" {getattr(s, 'conditions', '')}" if getattr(s, "conditions", "") else "")
        if s.accel not in ("native", "kvm"):
            name += f" ({s.accel.upper()})"  # emulated: never to be read as a native figure
        table.add_row(name, s.app, s.model_size, s.backend, str(s.runs), f"{s.e2e_mean_ms:.2f}{ci}{basis}",
                      _fmt(s.p50_ms), _fmt(s.p90_ms), _fmt(s.p99_ms), _fmt(s.pre_ms), _fmt(s.infer_ms),
                      _fmt(s.post_ms), _fmt(s.samples_per_s, 1),
                      ",".join(map(str, s.affinity_cpus)), " ".join(s.warnings))
    console = Console(width=max(150, Console().width))
    console.print(table)
    if any(s.ci_basis != "runs" for s in summaries):
        console.print("* single run: CI over its requests, not over independent runs (use --repeat)")


def _validate(names: list[str], workload: dict[str, Any], options: Any) -> list[Any]:
    """Parse and check every scenario before running any (one-line errors)."""
    from .platforms import create_platform, implemented
    from .platforms.base import PlatformError
    from .scenario import Scenario
    from .host import host_facts

    from .platforms.cpu import limits_for
    from .scenario import CpuMode

    facts = host_facts()
    if options.engine not in (None, "docker", "podman"):
        raise PlatformError(f"unknown container engine {options.engine!r}: use docker or podman, "
                            "or leave --engine out to use the OCI runtime directly")
    for what, path in (("guest kernel", options.kernel), ("guest initrd", options.initrd)):
        if path and not Path(path).is_file():
            raise PlatformError(f"{what} {path} does not exist: pass a file, or leave it out "
                                "to use the prepared one (`deploybench prepare vm`)")
    out = []
    for name in names:
        scenario = Scenario.parse(name, **workload)
        scenario.check_fits(facts.cores)
        if options.pin_cpus and scenario.cpu_mode is CpuMode.PIN:
            limits_for(scenario.cores, True, list(options.pin_cpus))  # one-line CgroupError
        if not implemented(scenario.platform):
            raise PlatformError(f"{scenario.name}: platform {scenario.platform.value} is not available in this version")
        platform = create_platform(scenario.platform, options)
        reason = platform.unavailable_reason(facts)
        if reason is None and hasattr(platform, "scenario_problem"):
            reason = platform.scenario_problem(scenario, facts)
        if reason:
            raise PlatformError(f"{scenario.name} cannot run here: {reason}")
        out.append((scenario, platform))
    return out


@app.command()
@friendly
def run(
    scenarios: List[str] = typer.Argument(..., help="PLATFORM/CORES/VNL|PIN/CPU|GPU, e.g. BM/2/PIN/CPU"),
    app_name: str = typer.Option("ic", "--app", help="ic, nlp, ..., or module:Class for your own app (on PYTHONPATH)"),
    model_size: Optional[str] = typer.Option(None, "--model-size", help="model size (default: the app's paper-like size)"),
    backend: Optional[str] = typer.Option(None, "--backend", help="inference backend: torch or onnxruntime (default: the app's first)"),
    requests: int = typer.Option(32, "--requests", min=1, help="requests per run"),
    repeat: int = typer.Option(1, "--repeat", min=1, help="runs per scenario (interleaved)"),
    loadgen_scenario: str = typer.Option("Offline", "--loadgen-scenario", help="Offline, SingleStream or Server"),
    batch_size: int = typer.Option(1, "--batch-size", min=1),
    inference_only: bool = typer.Option(False, "--inference-only", help="time the model only (DLBS-style)"),
    target_qps: float = typer.Option(10.0, "--target-qps", help="Server scenario arrival rate"),
    data_count: int = typer.Option(64, "--data-count", min=1, help="input files in the data set"),
    cpus: Optional[str] = typer.Option(None, "--cpus", help="cores for PIN scenarios, e.g. 2,3"),
    timeout: float = typer.Option(900.0, "--timeout", help="seconds before a run is killed"),
    db: Path = DB_OPTION,
    as_json: bool = typer.Option(False, "--json", help="print the summaries as JSON"),
    accel: str = typer.Option("auto", "--accel", help="VM accelerator: auto (KVM if a boot probe works), kvm, tcg"),
    kernel: Optional[str] = typer.Option(None, "--kernel", help="guest kernel for VM/MVM/VMCN (default: prepared Debian kernel)"),
    initrd: Optional[str] = typer.Option(None, "--initrd", help="guest initramfs for VM/MVM/VMCN (with --kernel)"),
    runtime: str = typer.Option("runc", "--runtime", help="OCI runtime for CN: runc or crun"),
    engine: Optional[str] = typer.Option(None, "--engine", help="CN through an engine: docker or podman (default: the runtime directly)"),
) -> None:
    """Run scenarios now and store every run."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from .apps import resolve_app_class
    from .apps.base import AppError
    from .datasets.cache import ensure_data
    from .findings import summarize
    from .platforms.base import PlatformOptions
    from .scenario import parse_cpu_list
    from .store import Store
    from .sweep import RunSettings, run_and_store

    app_cls = resolve_app_class(app_name)
    size = model_size or app_cls.sizes[0]
    if size not in app_cls.sizes:
        raise AppError(f"app {app_name!r} has no model size {size!r}: use one of {', '.join(app_cls.sizes)}")
    backends = getattr(app_cls, "backends", None)  # apps that declare their backends
    backend = backend or (backends[0] if backends else "torch")
    if backends is not None and backend not in backends:
        raise AppError(f"app {app_name!r} has no backend {backend!r}: use one of {', '.join(backends)}")
    workload = dict(app=app_name, model_size=size, backend=backend, requests=requests,
                    loadgen_scenario=loadgen_scenario, batch_size=batch_size,
                    inference_only=inference_only)
    options = PlatformOptions(pin_cpus=tuple(parse_cpu_list(cpus)) if cpus else None,
                              accel=accel, kernel=kernel, initrd=initrd,
                              runtime=runtime, engine=engine)
    planned = _validate(scenarios, workload, options)
    store = Store(db)
    data_dir = ensure_data(app_cls(), data_count, 0)
    settings = RunSettings(timeout_s=timeout, server_target_qps=target_qps)
    records = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), transient=True, disable=as_json) as progress:
        task = progress.add_task("running", total=len(planned) * repeat)
        for rep in range(repeat):
            for scenario, platform in planned:
                progress.update(task, description=f"{scenario.name} {scenario.app} #{rep + 1}")
                record = run_and_store(scenario, platform, store, data_dir=data_dir,
                                       settings=settings, repetition=rep)
                records.append(record)
                if record.status != "ok":
                    progress.console.print(f"[red]{scenario.name} {record.status}[/red]: {record.error}")
                progress.advance(task)
    summaries = summarize(records)
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in summaries], indent=1))
    elif summaries:
        print_table(summaries)
    failed = [r for r in records if r.status != "ok"]
    if failed:
        typer.echo(f"{len(failed)} of {len(records)} runs failed (stored with their reasons)", err=True)
        raise typer.Exit(1)


@app.command()
@friendly
def show(
    db: Path = DB_OPTION,
    as_json: bool = typer.Option(False, "--json", help="a list of JSON objects"),
    app_name: Optional[str] = typer.Option(None, "--app", help="only this app"),
) -> None:
    """One line per scenario: runs, mean E2E with 95% CI, percentiles, phases, warnings."""
    from .findings import summarize
    from .store import Store

    if not db.exists():
        raise FileNotFoundError(f"no store at {db}: run `deploybench run ...` first or pass --db")
    store = Store(db)
    records = store.runs()
    if app_name:
        records = [r for r in records if r.scenario.app == app_name]
    summaries = summarize(records)
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in summaries], indent=1))
        return
    if not summaries:
        typer.echo(f"no successful runs in {db}")
    else:
        print_table(summaries)
    from .findings import failures

    failed = failures(records)
    if failed:
        typer.echo(f"{len(failed)} failed runs: " + "; ".join(
            f"{r.scenario.name} {r.status}: {r.error}" for r in failed[-5:]))
    _print_outliers_and_stops(summaries, store)


def _print_outliers_and_stops(summaries: list[Any], store: Any, study: Optional[str] = None) -> None:
    """Outlier runs (MAD, reported not dropped) and why each study scenario stopped."""
    for s in summaries:
        for o in getattr(s, "outlier_runs", []):
            typer.echo(f"outlier run: {s.label} run #{o['repetition']} ({o['run_id'][:8]}) "
                       f"mean {o['e2e_mean_ms']:.2f} ms (kept in the mean)")
    stops = store.stops(study)
    if stops:
        counts: dict[str, int] = {}
        for stop in stops:
            counts[stop["reason"]] = counts.get(stop["reason"], 0) + 1
        typer.echo("stopped: " + ", ".join(f"{n} {reason}" for reason, n in sorted(counts.items())))
        from .scenario import Scenario

        for stop in stops:
            if stop["reason"] in ("failing", "max_runs", "time_budget"):
                label = Scenario.from_json(json.loads(stop["scenario_key"])).label
                typer.echo(f"  {stop['study']}: {label} {stop['reason']}: {stop['detail']}")


@app.command()
@friendly
def sweep(
    study_path: Path = typer.Argument(..., metavar="STUDY.toml", help="a study file (see studies/)"),
    db: Path = DB_OPTION,
    plan: bool = typer.Option(False, "--plan", help="print the scenarios, skips and an estimated "
                              "duration; run nothing"),
    runtime: str = typer.Option("runc", "--runtime", help="OCI runtime for CN/VMCN: runc or crun"),
    accel: str = typer.Option("auto", "--accel", help="VM accelerator: auto (KVM when a boot probe "
                              "shows it works, else TCG), kvm or tcg"),
) -> None:
    """Run a study: its scenario matrix, repeated adaptively until each mean is known to the
    target precision. Interrupted? Run it again with the same --db: only what is missing runs."""
    import time

    from .apps import create_app
    from .datasets.cache import ensure_data
    from .findings import summarize
    from .planning import format_duration, plan_lines, plan_study, vms_native
    from .store import Store
    from .study import load_study
    from .sweep import run_sweep
    from .host import host_facts

    from .platforms.base import PlatformOptions

    study = load_study(study_path)
    options = PlatformOptions(runtime=runtime, accel=accel)
    kvm = vms_native(host_facts(), options)
    planned = plan_study(study, host_facts(), kvm=kvm, options=options)
    store = Store(db) if (not plan or db.exists()) else None
    lines, low, high = plan_lines(study, planned, store, kvm=kvm)
    if plan:
        typer.echo("\n".join(lines))
        return
    typer.echo(lines[0])
    typer.echo(lines[-1])
    for app_name in sorted({p.scenario.app for p in planned if p.skip_reason is None}):
        ensure_data(create_app(app_name), study.model.data_count, study.seed)
    skipped: dict[str, int] = {}
    for p in planned:
        if p.skip_reason is not None:
            skipped[p.skip_reason] = skipped.get(p.skip_reason, 0) + 1
    for reason, n in skipped.items():
        typer.echo(f"skip {n} scenario{'s' if n > 1 else ''}: {reason} (--plan lists them)")
    count = [0]
    began = time.time()

    def on_run(p: Any, record: Any) -> None:
        count[0] += 1
        mean = record.summary.get("e2e_mean_ms")
        what = f"E2E {mean:.2f} ms" if mean is not None else (record.error or "")
        warn = f"  [{' '.join(record.warning_codes)}]" if record.warning_codes else ""
        typer.echo(f"[{count[0]:>3} {format_duration(time.time() - began):>7}] {p.scenario.label} "
                   f"#{record.repetition} {record.status:<7} {record.finished_at - record.started_at:5.1f} s  "
                   f"{what}{warn}")

    def on_stop(p: Any, decision: Any) -> None:
        if decision.reason != "skipped":
            typer.echo(f"stop {p.scenario.label}: {decision.reason} ({decision.detail})")
        if decision.reason in ("max_runs", "time_budget") and (
                decision.rel_ci is None or decision.rel_ci > p.rule.target_rel_ci):
            from .warnings import WarningCode, hint

            fix = hint(WarningCode.HIGH_VARIANCE)
            typer.echo(f"  warning high_variance: the target ±{p.rule.target_rel_ci:.1%} was not "
                       f"reached; {fix}")

    decisions = run_sweep(planned, store, study=study.name, seed=study.seed, on_run=on_run,
                          on_stop=on_stop)
    records = store.runs(study=study.name)
    summaries = summarize(records)
    if summaries:
        print_table(summaries)
    _print_outliers_and_stops(summaries, store, study.name)
    ran = [d for d in decisions.values() if d.reason != "skipped"]
    typer.echo(f"sweep {study.name}: {len(ran)} scenarios done, "
               f"{len(decisions) - len(ran)} skipped, {count[0]} runs this time, "
               f"{format_duration(time.time() - began)}")
    if ran and not any(r.status == "ok" for r in records):
        typer.echo("no run succeeded (reasons above and in `deploybench show`)", err=True)
        raise typer.Exit(1)


@app.command()
@friendly
def doctor(as_json: bool = typer.Option(False, "--json")) -> None:
    """What this host can run (cgroups, KVM, runtimes, GPU) and, for what it cannot, why."""
    from .doctor import doctor_checks
    from .host import host_facts

    checks = doctor_checks()
    if as_json:
        typer.echo(json.dumps({"host": host_facts().to_json(),
                               "checks": [c.to_json() for c in checks]}, indent=1))
        return
    for check in checks:
        mark = "ok " if check.ok else "no "
        typer.echo(f"{mark} {check.name:<22} {check.detail}")


@app.command()
@friendly
def data(
    app_name: str = typer.Option("ic", "--app"),
    count: int = typer.Option(64, "--count", min=1),
    seed: int = typer.Option(0, "--seed"),
    out: Optional[Path] = typer.Option(None, "--out", help="folder (default: the cache)"),
    force: bool = typer.Option(False, "--force", help="generate again even if present"),
) -> None:
    """Generate an app's input data set (real file formats) and print its folder."""
    from .apps import create_app
    from .datasets.cache import ensure_data

    path = ensure_data(create_app(app_name), count, seed, out_dir=out, force=force)
    typer.echo(str(path))


@app.command()
@friendly
def prepare(
    what: str = typer.Argument(..., help="vm: the guest kernel and initramfs for VM/MVM/VMCN"),
    kernel: Optional[str] = typer.Option(None, "--kernel", help="use this kernel (bzImage) instead of Debian's"),
    initrd: Optional[str] = typer.Option(None, "--initrd", help="use this initramfs as it is"),
    force: bool = typer.Option(False, "--force", help="download and build again, probe KVM again"),
) -> None:
    """Prepare platform assets once (cached): `prepare vm` fetches and builds the guest."""
    from .platforms.base import PlatformError

    if what != "vm":
        raise PlatformError(f"nothing to prepare for {what!r}: use `deploybench prepare vm`")
    from .platforms.guest import prepare as prepare_guest

    assets = prepare_guest(kernel, initrd, force=force)
    typer.echo(f"kernel  {assets.kernel} ({assets.release or 'release unknown'})")
    typer.echo(f"initrd  {assets.initrd}" + (f" ({len(assets.modules)} modules)" if assets.modules else ""))


@app.command()
@friendly
def report(
    db: Path = DB_OPTION,
    output: Path = typer.Option(Path("report.html"), "-o", "--output", help="HTML file to write"),
    app_name: Optional[str] = typer.Option(None, "--app", help="only this app"),
    max_cores: Optional[int] = typer.Option(None, "--max-cores", help="recommend scenarios with at most this many cores"),
    latency_slo_ms: Optional[float] = typer.Option(None, "--latency-slo-ms", help="recommend only scenarios whose tail latency meets this SLO"),
    slo_percentile: int = typer.Option(90, "--slo-percentile", help="the SLO's percentile: 90 or 99"),
    platforms: Optional[str] = typer.Option(None, "--platforms", help="recommend only these platforms, e.g. BM,CN"),
    reference: Optional[Path] = typer.Option(None, "--reference", help="a reference set (folder, see reference/README.md) to show beside your results"),
) -> None:
    """Write a self-contained HTML report: findings, figures, best practices, recommendation."""
    from .recommend import Constraints
    from .reference import load_reference
    from .report.build import write_report
    from .store import Store

    ref = load_reference(reference) if reference is not None else None

    if not db.exists():
        raise FileNotFoundError(f"no store at {db}: run `deploybench run ...` first or pass --db")
    constraints = Constraints(max_cores=max_cores, latency_slo_ms=latency_slo_ms,
                              slo_percentile=slo_percentile,
                              platforms=Constraints.parse_platforms(platforms))
    records = Store(db).runs()
    if app_name:
        records = [r for r in records if r.scenario.app == app_name]
    analysis = write_report(records, output, constraints, reference=ref)
    if ref is not None:
        typer.echo(f"reference: {len(ref.rows)} scenarios from {ref.info.label}")
    for rec in analysis.recommendations:
        typer.echo(f"recommendation for {rec.workload}: {rec.text}")
    for bp in analysis.best_practices:
        typer.echo(f"best practice {bp.number}: {bp.label}")
    typer.echo(f"report written to {output.resolve()}")


@app.command()
@friendly
def compare(
    scenario_a: str = typer.Argument(..., help="e.g. BM/2/PIN/CPU"),
    scenario_b: str = typer.Argument(..., help="the baseline, e.g. BM/2/VNL/CPU"),
    db: Path = DB_OPTION,
    app_name: Optional[str] = typer.Option(None, "--app", help="only this app"),
    inference_only: bool = typer.Option(False, "--inference-only", help="compare the --inference-only runs"),
) -> None:
    """A against B: the difference of mean E2E, its 95% CI and Welch's significance test."""
    from .findings import build_cells
    from .recommend import compare_scenarios
    from .store import Store

    if not db.exists():
        raise FileNotFoundError(f"no store at {db}: run `deploybench run ...` first or pass --db")
    cells = build_cells(Store(db).runs())
    for comp in compare_scenarios(cells, scenario_a, scenario_b, app=app_name, inference_only=inference_only):
        a, b, d = comp.cell, comp.baseline, comp.diff
        verdict = ("not significantly different" if not d.significant else
                   f"{a.name} is faster" if d.diff < 0 else f"{b.name} is faster")
        typer.echo(f"{a.display} vs {b.display} · {a.workload_label}"
                   + (f" · host {a.host}" if a.host else ""))
        typer.echo(f"  {a.name}: {a.summary.e2e_mean_ms:.2f} ± {_fmt(a.summary.e2e_ci95_ms)} ms "
                   f"({a.summary.runs} runs)   {b.name}: {b.summary.e2e_mean_ms:.2f} ± "
                   f"{_fmt(b.summary.e2e_ci95_ms)} ms ({b.summary.runs} runs)")
        typer.echo(f"  difference {d.diff:+.2f} ms = {comp.text}: {verdict}")


@app.command()
@friendly
def export(
    db: Path = DB_OPTION,
    out: Path = typer.Option(Path("deploybench-export"), "-o", "--out", help="output folder"),
    fmt: str = typer.Option("csv", "--format", help="csv, jsonl or parquet (needs pyarrow)"),
) -> None:
    """Export runs and raw per-request phase times (runs.* and samples.*, joined by run_id)."""
    from .export import export as export_store
    from .store import Store

    if not db.exists():
        raise FileNotFoundError(f"no store at {db}: pass --db")
    for path in export_store(Store(db), out, fmt):
        typer.echo(str(path))


def main() -> None:
    app(prog_name="deploybench")


if __name__ == "__main__":
    main()
