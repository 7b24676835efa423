"""The `deploybench` command line. Imports are lazy: `deploybench --help` loads no torch.

Errors are for people: every usage error (typer/click) and every user error becomes one
line on stderr, exit status 2 (``OneLineErrors``, ``friendly``). `run` and `sweep` share
one set of platform and workload options, defined once below, and one validation
(``platforms.check_platform_flags``), so a flag one refuses the other refuses the same way.
"""
from __future__ import annotations

import functools
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any, Callable, List, Optional

import typer
from typer.core import TyperGroup

from .datasets import DEFAULT_DATA_COUNT  # stdlib only: --help stays light
from .scenario import DEFAULT_TARGET_QPS  # stdlib only


def _click_exceptions() -> Any:
    """click's exception classes as typer raises them (typer >= 0.2x vendors its own click)."""
    try:
        from typer._click import exceptions
    except ImportError:  # older typer: plain click
        from click import exceptions
    return exceptions


def _bad_value(exc: BaseException) -> Any:
    """The value a bad parameter was given, when the error carries it."""
    cause = exc.__cause__
    errors = getattr(cause, "errors", None)
    if callable(errors):
        try:
            return errors()[0].get("input")
        except Exception:  # noqa: BLE001 - only a detail of the message
            return None
    return None


def usage_error_line(exc: BaseException) -> str:
    """A typer/click usage error as one line naming the fix (``--requests must be >= 1``)."""
    errors = _click_exceptions()
    param = getattr(exc, "param", None)
    message = " ".join(line.strip() for line in exc.format_message().splitlines() if line.strip())
    name = None
    if param is not None:
        opts = [o for o in (getattr(param, "opts", None) or []) if o.startswith("-")]
        name = (max(opts, key=len) if opts else getattr(param, "metavar", None)
                or (getattr(param, "human_readable_name", None) or getattr(param, "name", None) or "").upper())
    path = exc.ctx.command_path.split() if getattr(exc, "ctx", None) is not None else []
    command = " ".join(["deploybench", *path[1:]])  # whatever name the program was called by
    if isinstance(exc, errors.MissingParameter) and name:
        return f"missing {name} (see `{command} --help`)"
    if isinstance(exc, errors.BadParameter) and name:
        text = (getattr(exc, "message", None) or message).strip().rstrip(".")
        got = _bad_value(exc)
        low, high = getattr(param, "min", None), getattr(param, "max", None)
        kind = getattr(param, "type", None)
        if low is None and high is None and kind is not None:
            low, high = getattr(kind, "min", None), getattr(kind, "max", None)
        ranged = any(w in text for w in ("greater than", "less than", "not in the range"))
        if ranged and (low is not None or high is not None):
            if got is None and "not in the range" in text:
                got = text.split(" is not in the range")[0].split(":")[-1].strip()
            bound = " and ".join(b for b in (low is not None and f">= {low}",
                                             high is not None and f"<= {high}") if b)
            return f"{name} must be {bound}" + (f" (got {got})" if got is not None else "")
        text = text[:1].lower() + text[1:]
        if text.startswith("must be"):
            return f"{name} {text}"
        return f"{name}: {text}" + (f" (got {got!r})" if got is not None else "")
    text = message.rstrip(".")
    return f"{text[:1].lower() + text[1:]} (see `{command} --help`)"


class OneLineErrors(TyperGroup):
    """The command group: usage errors become one line on stderr (exit 2), for every
    command at once, instead of a boxed usage text or a traceback."""

    def main(self, args: Any = None, prog_name: Any = None, complete_var: Any = None,
             standalone_mode: bool = True, **extra: Any) -> Any:
        errors = _click_exceptions()
        help_only = getattr(errors, "NoArgsIsHelpError", ())
        try:
            rv = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                              standalone_mode=False, **extra)
            code = rv if isinstance(rv, int) else 0
        except help_only as exc:  # `deploybench` alone: the help, not an error
            typer.echo(exc.format_message())
            code = 0
        except errors.ClickException as exc:
            typer.echo(f"error: {usage_error_line(exc)}", err=True)
            code = exc.exit_code
        except typer.Abort:
            typer.echo("aborted", err=True)
            code = 130
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(cls=OneLineErrors, add_completion=False, no_args_is_help=True,
                  help="Measure the end-to-end inference time of deep-learning apps on bare "
                       "metal, containers, VMs, micro-VMs and containers in VMs.")


def _print_version(value: bool) -> None:
    if value:
        from . import __version__
        from .host import git_revision

        typer.echo(f"deploybench {__version__} (git {git_revision()})")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True,
        help="print the version and git revision, then exit")] = False) -> None:
    """Measure the end-to-end inference time of deep-learning apps on bare metal,
    containers, VMs, micro-VMs and containers in VMs."""
    reap_dead_sessions()


def reap_dead_sessions() -> None:
    """Every command starts by reaping what dead deploybench processes left running (the
    sessions ledger: platforms/ledger.py), saying so in one line each."""
    from .platforms.ledger import reap_dead

    try:
        for reaped in reap_dead():
            typer.echo(reaped.describe(), err=True)
    except OSError as exc:  # an unreadable ledger must not stop the command
        typer.echo(f"warning: could not read the sessions ledger: {exc}", err=True)


def refuse_concurrent(allow: bool) -> None:
    """A measurement never runs silently beside another one on this host."""
    from .platforms.base import PlatformError
    from .platforms.ledger import Ledger

    others = Ledger().live_others()
    if others and not allow:
        first = others[0]
        raise PlatformError(f"another deploybench session is measuring on this host: {first.platform} "
                            f"{first.describe()}{f' and {len(others) - 1} more' if len(others) > 1 else ''}: "
                            "wait for it, or pass --allow-concurrent (its runs get a concurrent_run warning)")


def _positive(value: Optional[float]) -> Optional[float]:
    """Option callback: a number that must be > 0 (typer has no open ranges)."""
    if value is not None and value <= 0:
        raise typer.BadParameter(f"must be > 0 (got {value:g})")
    return value


def _sizes_help() -> str:
    from .apps import BUILTIN_SIZES

    listed = "; ".join(f"{app} {'|'.join(sizes)}" for app, sizes in BUILTIN_SIZES.items())
    return f"model size (default: the app's first): {listed}"


# -- options, defined once: run and sweep share the platform and workload ones ------------------
DbOption = Annotated[Path, typer.Option("--db", help="result store (SQLite file)")]
JsonOption = Annotated[bool, typer.Option("--json", help="print the summaries as JSON "
                                          "(progress lines go to stderr)")]
RuntimeOption = Annotated[str, typer.Option("--runtime", help="OCI runtime for CN and VMCN: runc or crun")]
EngineOption = Annotated[Optional[str], typer.Option(
    "--engine", help="CN through an engine: docker or podman (default: the runtime directly)")]
AccelOption = Annotated[str, typer.Option(
    "--accel", help="VM accelerator: auto (KVM when a boot probe shows it works, else TCG), kvm or tcg")]
KernelOption = Annotated[Optional[str], typer.Option(
    "--kernel", help="guest kernel for VM/MVM/VMCN (default: the prepared Debian kernel)")]
InitrdOption = Annotated[Optional[str], typer.Option(
    "--initrd", help="guest initramfs for VM/MVM/VMCN (with --kernel)")]
TimeoutOption = Annotated[Optional[float], typer.Option(
    "--timeout", callback=_positive,
    help="seconds before a run is killed (run: 900; sweep: the study's timeout_s)")]
AllowConcurrentOption = Annotated[bool, typer.Option(
    "--allow-concurrent", help="measure even while another deploybench session is live on this "
                               "host (every run then carries a concurrent_run warning)")]
AppOption = Annotated[Optional[str], typer.Option(
    "--app", help="the app: ic, sr, nlp, rs, or module:Class for your own (on PYTHONPATH); "
                  "run: default ic; sweep: only this app of the study")]

# the constraints of a recommendation (report and recommend)
MaxCoresOption = Annotated[Optional[int], typer.Option(
    "--max-cores", min=1, help="recommend only scenarios with at most this many cores")]
LatencySloOption = Annotated[Optional[float], typer.Option(
    "--latency-slo-ms", callback=_positive,
    help="recommend only scenarios whose tail latency (queue included under Server) meets this SLO")]
SloPercentileOption = Annotated[int, typer.Option("--slo-percentile", help="the SLO's percentile: 90 or 99")]
PlatformsOption = Annotated[Optional[str], typer.Option(
    "--platforms", help="recommend only these platforms, e.g. BM,CN")]
MarginOption = Annotated[float, typer.Option(
    "--margin", min=0.1, max=50.0, help="equivalence margin in %: within ±margin is 'equivalent'")]
ConfidenceOption = Annotated[float, typer.Option(
    "--confidence", min=0.5, max=0.999, help="confidence of every decision (1 - alpha)")]

ModelSizeOption = Annotated[Optional[str], typer.Option("--model-size", help=_sizes_help())]
BackendOption = Annotated[Optional[str], typer.Option(
    "--backend", help="inference backend: torch or onnxruntime (default: the app's first)")]
BatchSizeOption = Annotated[int, typer.Option("--batch-size", min=1, help="requests per inference batch")]
InferenceOnlyOption = Annotated[bool, typer.Option("--inference-only", help="time the model only (DLBS-style)")]
DataCountOption = Annotated[int, typer.Option("--data-count", min=1, help="input files in the data set")]
SeedOption = Annotated[int, typer.Option("--seed", help="seed of the data set and the worker (run: also "
                                         "of the order of rounds in each block)")]
CpusOption = Annotated[Optional[str], typer.Option("--cpus", help="cores for PIN scenarios, e.g. 2,3")]

#: options of `run` that `sweep` does not take, and why (a unit test keeps this table true)
RUN_ONLY_OPTIONS: dict[str, str] = {
    "--model-size": "a study lists its model_sizes (per app)",
    "--backend": "a study sets its backend",
    "--requests": "a study sets requests (per app, per platform in overrides)",
    "--repeat": "a study races: it measures until every decision is made ([stopping])",
    "--launches": "a study launches epoch by epoch, as its decisions need ([stopping])",
    "--fresh": "a study launches epoch by epoch, as its decisions need ([stopping])",
    "--warmup": "a study sets [stopping] warmup_rounds",
    "--loadgen-scenario": "a study sets loadgen_scenario",
    "--batch-size": "a study sets batch_size",
    "--inference-only": "a study sets inference_only",
    "--target-qps": "a study sets target_qps (its Server scenarios' arrival rate)",
    "--data-count": "a study sets data_count",
    "--seed": "a study sets its seed (data set, worker and run order)",
    "--cpus": "explicit cores fit one scenario; a study has many core counts",
}


def platform_options(*, runtime: str, engine: str | None, accel: str, kernel: str | None,
                     initrd: str | None, cpus: str | None = None) -> Any:
    """The PlatformOptions the flags ask for (the same for run and sweep)."""
    from .platforms.base import PlatformOptions
    from .scenario import parse_cpu_list

    return PlatformOptions(pin_cpus=tuple(parse_cpu_list(cpus)) if cpus else None, accel=accel,
                           kernel=kernel, initrd=initrd, runtime=runtime, engine=engine)


class CliError(RuntimeError):
    """Bad input found by the command line itself; one line for people."""


def _user_errors() -> tuple[type[BaseException], ...]:
    from .apps.base import AppError
    from .datasets import DataSetError
    from .export import ExportError
    from .fleet import FleetError
    from .platforms.base import PlatformError
    from .platforms.cpu import CgroupError
    from .reference import ReferenceError
    from .scenario import ScenarioError
    from .store import StoreError
    from .study import StudyError

    return (AppError, CliError, DataSetError, ExportError, FleetError, PlatformError, CgroupError,
            ReferenceError, ScenarioError, StoreError, StudyError, FileNotFoundError)


def friendly(func: Callable[..., Any]) -> Callable[..., Any]:
    """Errors for people: one line on stderr and exit status 2, never a traceback. A run
    measured but not stored (its record is in a recovery file) exits 1."""

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
            import sqlite3

            if isinstance(exc, _user_errors()):
                from .store import UnsavedRunError

                message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                typer.echo(f"error: {message}", err=True)
                raise typer.Exit(1 if isinstance(exc, UnsavedRunError) else 2)
            if isinstance(exc, sqlite3.Error):  # a store failing after it was opened
                typer.echo(f"error: the store failed while in use ({exc}): if it is damaged, "
                           "restore it from a copy", err=True)
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
    """The rows of `show`; columns are added for whatever tells two alike rows apart
    (requests, LoadGen scenario, batch size, inference-only, data set, host, accelerator)."""
    from rich.console import Console
    from rich.table import Table

    from .findings import distinguishing_columns

    extra = distinguishing_columns(summaries)
    titles = {"requests": "req", "loadgen_scenario": "loadgen", "batch_size": "batch",
              "inference_only": "infer-only", "data_set": "data set", "host": "host", "accel": "accel"}
    table = Table(title="E2E inference time per request (ms)", show_lines=False)
    columns = ["scenario", "app", "size", "backend", *[titles[e] for e in extra], "rounds", "E2E mean ± 95% CI",
               "p50", "p90", "p99", "pre", "infer", "post", "req/s", "cpus", "warnings"]
    for column in columns:
        table.add_column(column, justify="left" if column in ("scenario", "app", "backend", "warnings",
                                                               "loadgen", "data set", "host") else "right")
    for s in summaries:
        ci = "" if s.e2e_ci95_ms is None or math.isnan(s.e2e_ci95_ms) else f" ± {s.e2e_ci95_ms:.2f}"
        basis = "" if s.ci_basis == "launches" else "*"
        name = s.scenario + (f" {s.conditions}" if s.conditions else "")
        if s.accel not in ("native", "kvm"):
            name += f" ({s.accel.upper()})"  # emulated: never to be read as a native figure
        table.add_row(name, s.app, s.model_size, s.backend,
                      *[f"{','.join(s.hosts)} ({s.host})" if e == "host" else str(getattr(s, e)) for e in extra],
                      f"{s.runs} in {s.launches}", f"{s.e2e_mean_ms:.2f}{ci}{basis}",
                      _fmt(s.p50_ms), _fmt(s.p90_ms), _fmt(s.p99_ms), _fmt(s.pre_ms), _fmt(s.infer_ms),
                      _fmt(s.post_ms), _fmt(s.samples_per_s, 1),
                      ",".join(map(str, s.affinity_cpus)), " ".join(s.warnings))
    console = Console(width=max(150, Console().width))
    console.print(table)
    if any(s.ci_basis != "launches" for s in summaries):
        console.print("* within one launch: CI over its rounds (or one round's requests), not over "
                      "independent launches (use --launches 3 or more)")


def _validate(names: list[str], workload: dict[str, Any], options: Any) -> list[Any]:
    """Parse and check every scenario before running any (one-line errors)."""
    from .host import host_facts
    from .platforms import check_platform_flags, create_platform, implemented
    from .platforms.base import PlatformError
    from .platforms.cpu import limits_for
    from .scenario import CpuMode, Scenario

    facts = host_facts()
    parsed = [Scenario.parse(name, **workload) for name in names]
    check_platform_flags(options, [s.platform for s in parsed], facts)
    out = []
    for scenario in parsed:
        scenario.check_fits(facts.cores)
        if options.pin_cpus and scenario.cpu_mode is CpuMode.PIN:
            limits_for(scenario.cores, True, list(options.pin_cpus))  # one-line CgroupError
        if not implemented(scenario.platform):
            raise PlatformError(f"{scenario.name}: platform {scenario.platform.value} is not available in this version")
        platform = create_platform(scenario.platform, options)
        reason = platform.unavailable_reason(facts) or platform.scenario_problem(scenario, facts)
        if reason:
            raise PlatformError(f"{scenario.name} cannot run here: {reason}")
        out.append((scenario, platform))
    return out


def _only_app(records: list[Any], app_name: Optional[str], db: Path) -> list[Any]:
    """The runs of ``app_name`` (all without it); an app the store has no runs of is an
    error naming the apps it has."""
    if not app_name:
        return records
    picked = [r for r in records if r.scenario.app == app_name]
    if not picked:
        apps = sorted({r.scenario.app for r in records})
        has = (f"it has runs of {', '.join(apps)} (e.g. --app {apps[0]})" if apps else
               "it has no runs yet")
        raise CliError(f"no runs of app {app_name!r} in {db}: {has}")
    return picked


def _server_rate(loadgen_scenario: str, target_qps: Optional[float]) -> Optional[float]:
    """The Server scenario's arrival rate (part of the scenario); refused for the others."""
    from .scenario import LoadgenScenario, ScenarioError, _enum_value

    kind = _enum_value(LoadgenScenario, loadgen_scenario, "LoadGen scenario")
    if kind is not LoadgenScenario.SERVER:
        if target_qps is not None:
            raise ScenarioError(f"--target-qps is the arrival rate of the Server scenario; "
                                f"{kind.value} has none: drop it or add --loadgen-scenario Server")
        return None
    return DEFAULT_TARGET_QPS if target_qps is None else target_qps


def _workload(app_name: str, model_size: Optional[str], backend: Optional[str]) -> tuple[type, str, str]:
    """The app class, its model size and backend, checked (one-line errors)."""
    from .apps import resolve_app_class
    from .apps.base import AppError

    app_cls = resolve_app_class(app_name)
    size = model_size or app_cls.sizes[0]
    if size not in app_cls.sizes:
        raise AppError(f"app {app_name!r} has no model size {size!r}: use one of {', '.join(app_cls.sizes)}")
    backends = getattr(app_cls, "backends", None)  # apps that declare their backends
    backend = backend or (backends[0] if backends else "torch")
    if backends is not None and backend not in backends:
        raise AppError(f"app {app_name!r} has no backend {backend!r}: use one of {', '.join(backends)}")
    return app_cls, size, backend


@app.command()
@friendly
def run(
    scenarios: Annotated[List[str], typer.Argument(
        metavar="SCENARIO...", help="PLATFORM/CORES/VNL|PIN/CPU|GPU, e.g. BM/2/PIN/CPU")],
    app_name: AppOption = "ic",
    model_size: ModelSizeOption = None,
    backend: BackendOption = None,
    requests: Annotated[int, typer.Option("--requests", min=1, help="requests per round (one stored run)")] = 32,
    repeat: Annotated[int, typer.Option("--repeat", min=1, help="measured rounds (stored runs) per "
                                        "scenario, interleaved in blocks")] = 1,
    launches: Annotated[Optional[int], typer.Option(
        "--launches", min=1, help="independent launches the rounds are spread over "
                                  "(default: min(repeat, 3))")] = None,
    fresh: Annotated[bool, typer.Option("--fresh", help="a fresh launch for every round "
                                        "(--launches = --repeat)")] = False,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="warm-up rounds per launch first "
                                        "(stored with status warmup, never averaged)")] = 0,
    loadgen_scenario: Annotated[str, typer.Option("--loadgen-scenario", help="Offline, SingleStream or Server")] = "Offline",
    batch_size: BatchSizeOption = 1,
    inference_only: InferenceOnlyOption = False,
    target_qps: Annotated[Optional[float], typer.Option(
        "--target-qps", callback=_positive,
        help=f"Server only: the arrival rate in queries per second, part of the scenario "
             f"(default {DEFAULT_TARGET_QPS:g})")] = None,
    data_count: DataCountOption = DEFAULT_DATA_COUNT,
    seed: SeedOption = 0,
    cpus: CpusOption = None,
    timeout: TimeoutOption = 900.0,
    db: DbOption = Path("deploybench.db"),
    as_json: JsonOption = False,
    accel: AccelOption = "auto",
    kernel: KernelOption = None,
    initrd: InitrdOption = None,
    runtime: RuntimeOption = "runc",
    engine: EngineOption = None,
    allow_concurrent: AllowConcurrentOption = False,
) -> None:
    """Run scenarios now: --repeat rounds each over --launches warm launches, in blocks (one
    round of every scenario, in a fresh random order); store every round, failures too."""
    from .datasets.cache import ensure_data
    from .execute import BlockSet, Contender, RunSettings, run_block_set
    from .findings import summarize
    from .progress import RunProgress
    from .store import FAILED_STATUSES, Store

    # plan
    app_cls, size, backend = _workload(app_name or "ic", model_size, backend)
    workload = dict(app=app_name or "ic", model_size=size, backend=backend, requests=requests,
                    loadgen_scenario=loadgen_scenario, batch_size=batch_size,
                    inference_only=inference_only,
                    target_qps=_server_rate(loadgen_scenario, target_qps))
    options = platform_options(runtime=runtime, engine=engine, accel=accel, kernel=kernel,
                               initrd=initrd, cpus=cpus)
    planned = _validate(scenarios, workload, options)
    n_launches = repeat if fresh else min(launches or min(repeat, 3), repeat)
    per_launch = [repeat // n_launches + (1 if i < repeat % n_launches else 0) for i in range(n_launches)]
    store = Store(db)
    store.check_writable()  # refuse now, not after measuring
    refuse_concurrent(allow_concurrent)
    data_dir = ensure_data(app_cls(), data_count, seed)
    settings = RunSettings(timeout_s=timeout or 900.0, seed=seed)
    contenders = tuple(Contender(s, p, data_dir, settings) for s, p in planned)
    # execute and store
    records = []
    with RunProgress(total=len(planned) * (n_launches * warmup + repeat),
                     stream=sys.stderr if as_json else sys.stdout) as progress:
        def on_run(contender: Any, record: Any) -> None:
            records.append(record)
            progress.on_run(record)

        for epoch, blocks in enumerate(per_launch):
            run_block_set(BlockSet(contenders, blocks=blocks, warmup_rounds=warmup, epoch=epoch,
                                   seed=seed, allow_concurrent=allow_concurrent),
                          store.keep, on_run=on_run)
    # summarise
    measured = [r for r in records if r.status != "warmup"]
    summaries = summarize(measured)
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in summaries], indent=1))
    elif summaries:
        print_table(summaries)
    failed = [r for r in measured if r.status in FAILED_STATUSES]
    if failed:
        typer.echo(f"{len(failed)} of {len(measured)} runs failed (stored with their reasons)", err=True)
        raise typer.Exit(1)


@app.command()
@friendly
def capacity(
    scenarios: Annotated[List[str], typer.Argument(
        metavar="SCENARIO...", help="PLATFORM/CORES/VNL|PIN/CPU|GPU, e.g. BM/1/PIN/CPU")],
    app_name: AppOption = "ic",
    slo_ms: Annotated[float, typer.Option("--slo-ms", callback=_positive,
                                          help="the latency SLO (ms), queue included")] = 100.0,
    percentile: Annotated[float, typer.Option("--percentile", min=1, max=99.99,
                                              help="the SLO's percentile of per-request latency")] = 99.0,
    budget: Annotated[str, typer.Option("--budget", help="wall time for all the searches, e.g. 10m, "
                                        "1h, 90s (shared out among the scenarios)")] = "10m",
    requests: Annotated[Optional[int], typer.Option(
        "--requests", min=1, help="requests per probe (default: what LoadGen's early stopping needs at "
                                  "the percentile with one slow request: 662 at p99, 64 at p90)")] = None,
    precision: Annotated[float, typer.Option("--precision", min=0.001, max=1.0,
                                             help="stop bisecting when the bracket is this narrow "
                                                  "(relative)")] = 0.05,
    launches: Annotated[int, typer.Option("--launches", min=1, help="launches per search at most (the "
                                          "bracket is repeated on a second one)")] = 3,
    start_qps: Annotated[Optional[float], typer.Option(
        "--start-qps", callback=_positive,
        help="the first rate probed (default: half the throughput of an Offline warm-up round)")] = None,
    model_size: ModelSizeOption = None,
    backend: BackendOption = None,
    batch_size: BatchSizeOption = 1,
    inference_only: InferenceOnlyOption = False,
    data_count: DataCountOption = DEFAULT_DATA_COUNT,
    seed: SeedOption = 0,
    cpus: CpusOption = None,
    timeout: TimeoutOption = 900.0,
    db: DbOption = Path("deploybench.db"),
    as_json: JsonOption = False,
    accel: AccelOption = "auto",
    kernel: KernelOption = None,
    initrd: InitrdOption = None,
    runtime: RuntimeOption = "runc",
    engine: EngineOption = None,
    allow_concurrent: AllowConcurrentOption = False,
) -> None:
    """The highest Server arrival rate each scenario sustains within a latency SLO: LoadGen
    VALID and the percentile of latency (queue included) within --slo-ms. Brackets, bisects,
    and repeats the bracket on another launch; every probe is stored as a run."""
    import time

    from .capacity import Criteria, SearchSettings, default_requests, search
    from .datasets.cache import ensure_data
    from .execute import Contender, RunSettings
    from .planning import parse_duration
    from .progress import RunProgress
    from .store import Store

    # plan
    criteria = Criteria(slo_ms, percentile)
    per_probe = requests or default_requests(percentile)
    criteria.check_requests(per_probe)
    budget_s = parse_duration(budget)
    app_cls, size, backend = _workload(app_name or "ic", model_size, backend)
    workload = dict(app=app_name or "ic", model_size=size, backend=backend, requests=per_probe,
                    loadgen_scenario="Server", batch_size=batch_size, inference_only=inference_only)
    options = platform_options(runtime=runtime, engine=engine, accel=accel, kernel=kernel,
                               initrd=initrd, cpus=cpus)
    planned = _validate(scenarios, workload, options)
    store = Store(db)
    store.check_writable()  # refuse now, not after measuring
    refuse_concurrent(allow_concurrent)
    data_dir = ensure_data(app_cls(), data_count, seed)
    settings = RunSettings(timeout_s=timeout or 900.0, seed=seed)
    # execute and store
    answers = []
    began = time.monotonic()
    with RunProgress(stream=sys.stderr if as_json else sys.stdout) as progress:
        for i, (scenario, platform) in enumerate(planned):
            share = (budget_s - (time.monotonic() - began)) / (len(planned) - i)
            answers.append(search(
                Contender(scenario, platform, data_dir, settings),
                SearchSettings(criteria, per_probe, budget_s=share, precision=precision,
                               max_launches=launches, start_qps=start_qps),
                sink=store.keep, on_note=progress.note,
                # a probe has its own line (its verdict); warm-ups and failures the usual one
                on_record=lambda r: None if "capacity_probe" in r.host and r.status == "ok"
                else progress.on_run(r)))
    # summarise
    if as_json:
        typer.echo(json.dumps([a.to_json() for a in answers], indent=1))
    else:
        print_capacity_table(answers)
    failed = [a for a in answers if a.stop.startswith(("launch failed", "a probe", "the warm-up",
                                                         "no rate can fail"))]
    if failed:
        typer.echo(f"{len(failed)} of {len(answers)} searches ended on a failure (stored with the "
                   "reason; `deploybench show` lists failed runs)", err=True)
        raise typer.Exit(1)


def print_capacity_table(answers: list[Any]) -> None:
    """The capacity of each scenario, then each answer's confidence statement."""
    from rich.console import Console
    from rich.table import Table

    if not answers:
        return
    table = Table(title=f"Capacity within {answers[0].criteria.describe} (queue included), LoadGen VALID")
    for column in ("scenario", "app", "capacity (qps)", "per core", "latency at it (ms)",
                   "fails at (qps)", "status"):
        table.add_column(column, justify="left" if column in ("scenario", "app", "status") else "right")
    for a in answers:
        name = a.name + (" (TCG)" if a.emulated else "")
        table.add_row(name, a.app, _fmt(a.capacity_qps, 3), _fmt(a.capacity_per_core, 3),
                      _fmt(a.capacity_latency_ms, 1), _fmt(a.failing_qps or a.first_failure_qps, 3),
                      a.status + (" (emulated)" if a.emulated else ""))
    console = Console(width=max(120, Console().width))
    console.print(table)
    for a in answers:
        console.print(f"{a.name}: {a.statement()}", markup=False, highlight=False)


@app.command()
@friendly
def show(
    db: DbOption = Path("deploybench.db"),
    as_json: Annotated[bool, typer.Option("--json", help="a list of JSON objects")] = False,
    app_name: Annotated[Optional[str], typer.Option("--app", help="only this app")] = None,
    footprint: Annotated[bool, typer.Option(
        "--footprint", help="what each scenario costs instead: memory beyond the worker (guest "
                            "kernel, page cache, VMM, shim), CPU outside it, start and boot time, "
                            "energy")] = False,
) -> None:
    """One line per scenario: runs, mean E2E with 95% CI, percentiles, phases, warnings."""
    from .findings import failures, summarize
    from .store import Store

    from .capacity import is_probe

    store = Store(db, readonly=True)
    records = _only_app(store.runs(), app_name, db)
    if footprint:
        show_footprint(records, as_json)
        return
    probes = [r for r in records if is_probe(r)]  # capacity searches: `deploybench report`
    records = [r for r in records if not is_probe(r)]
    summaries = summarize(records)
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in summaries], indent=1))
        return
    if not summaries:
        typer.echo(f"no successful runs in {db}" + (f" for app {app_name}" if app_name else ""))
    else:
        print_table(summaries)
    if probes:
        typer.echo(f"{len(probes)} capacity probes not in the table: `deploybench report` has them "
                   "(section \"Capacity under a latency SLO\")")
    failed = failures(records)
    if failed:
        typer.echo(f"{len(failed)} failed runs: " + "; ".join(
            f"{r.scenario.name} {r.status}: {r.error}" for r in failed[-5:]))
    from .store import LOST_STATUS

    lost = [r for r in records if r.status == LOST_STATUS]
    if lost:  # measured again on another host; said, never averaged
        typer.echo(f"{len(lost)} runs lost with their host (measured again elsewhere): " + "; ".join(
            f"{r.scenario.name}: {r.error}" for r in lost[-5:]))
    _print_outliers_and_stops(summaries, store)


def show_footprint(records: list[Any], as_json: bool) -> None:
    """`show --footprint`: one line per scenario of what it costs beyond the model."""
    from rich.console import Console
    from rich.table import Table

    from .footprint import costs

    rows = costs(records)
    if as_json:
        typer.echo(json.dumps([c.to_json() for c in rows], indent=1))
        return
    if not rows:
        typer.echo("no successful runs to show the footprint of")
        return
    table = Table(title="What each scenario costs (host side; MiB, ms of CPU per request, s)")
    columns = ("scenario", "app", "runs", "worker peak", "memory", "beyond worker", "guest kernel",
               "guest cache*", "VMM", "runtime", "daemons", "CPU outside/req", "start", "boot", "J/req")
    for column in columns:
        table.add_column(column, justify="left" if column in ("scenario", "app") else "right",
                         no_wrap=column == "scenario")
    for c in rows:
        table.add_row(c.display + (" (TCG)" if c.emulated else ""), c.app, str(c.runs),
                      _fmt(c.worker_peak_rss_mib, 0), _fmt(c.memory_mib, 0), _fmt(c.memory_beyond_worker_mib, 0),
                      _fmt(c.guest_kernel_mib, 0), _fmt(c.guest_page_cache_unmapped_mib, 0),
                      _fmt(c.vmm_overhead_mib, 0), _fmt(c.runtime_mib, 1), _fmt(c.shared_mib, 0),
                      _fmt(c.outside_cpu_ms_per_request, 2), _fmt(c.start_latency_s, 2), _fmt(c.boot_s, 2),
                      _fmt(c.energy_j_per_request, 3))
    console = Console(width=max(180, Console().width))
    console.print(table)
    console.print("* the guest's page cache that the worker does not map: the copy a VM holds beside "
                  "the host's own cache. '-': not recorded (no guest, runs from before footprints, or "
                  "no RAPL for energy: see `deploybench doctor`).", markup=False, highlight=False)


def _print_outliers_and_stops(summaries: list[Any], store: Any, study: Optional[str] = None) -> None:
    """Outlier runs (MAD, reported not dropped) and why each study scenario stopped."""
    for s in summaries:
        for o in s.outlier_runs:
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
            if stop["reason"] in ("failing", "max_launches", "time_budget", "budget", "out_of_reach"):
                label = Scenario.from_json(json.loads(stop["scenario_key"])).label
                typer.echo(f"  {stop['study']}: {label} {stop['reason']}: {stop['detail']}")


@app.command()
@friendly
def sweep(
    study_path: Annotated[Path, typer.Argument(metavar="STUDY.toml", help="a study file (see studies/)")],
    db: DbOption = Path("deploybench.db"),
    plan: Annotated[bool, typer.Option("--plan", help="print the groups of compared scenarios, "
                                       "skips, the budget and an estimated duration; run nothing")] = False,
    budget: Annotated[Optional[str], typer.Option(
        "--budget", help="wall time for the whole sweep, e.g. 10m, 1h, 90s: when it runs out, "
                         "the sweep says which pairs are still undecided")] = None,
    app_name: AppOption = None,
    timeout: TimeoutOption = None,
    as_json: JsonOption = False,
    accel: AccelOption = "auto",
    kernel: KernelOption = None,
    initrd: InitrdOption = None,
    runtime: RuntimeOption = "runc",
    engine: EngineOption = None,
    allow_concurrent: AllowConcurrentOption = False,
    fleet: Annotated[Optional[str], typer.Option(
        "--fleet", help="measure on the benchmark hosts of a Dask scheduler, tcp://HOST:PORT "
                        "(`deploybench fleet worker` on each), or on local:N workers on disjoint "
                        "cores of this host; the store stays here")] = None,
) -> None:
    """Run a study: each group of compared scenarios in launch epochs of interleaved blocks,
    racing until every decision the report needs is made or the budget is spent.
    Interrupted? Run it again with the same --db: only what is missing runs."""
    import contextlib

    from .host import host_facts
    from .planning import parse_duration, plan_study, vms_native
    from .platforms import check_platform_flags
    from .scenario import PlatformName
    from .study import load_study

    say = functools.partial(typer.echo, err=as_json)  # with --json, stdout is the JSON only
    # plan (here, or on one host of each class of the fleet)
    budget_s = parse_duration(budget) if budget else None
    study = load_study(study_path)
    options = platform_options(runtime=runtime, engine=engine, accel=accel, kernel=kernel,
                               initrd=initrd)
    with contextlib.ExitStack() as stack:
        if fleet:
            from .executors import DaskExecutor
            from .fleet import FleetError, open_fleet, parse_fleet, plan_fleet

            fleet_kind, fleet_size = parse_fleet(fleet)
            local_fleet = fleet_kind == "local"
            # flag values are checked here; whether a platform runs is up to each host
            check_platform_flags(options, [PlatformName(p) for p in study.model.platforms],
                                 host_facts() if local_fleet else None)
            if local_fleet and not plan:
                refuse_concurrent(allow_concurrent)
            connection = stack.enter_context(open_fleet(fleet))
            executor = stack.enter_context(DaskExecutor(connection.client, on_note=say))
            executor.wait_for_hosts(count=int(fleet_size) if local_fleet else 1)
            classes = executor.host_classes()
            if not classes:
                why = "; ".join(executor.refused.values()) or (
                    f"no worker has joined: start `deploybench fleet worker --scheduler {fleet}` "
                    "on each benchmark host")
                raise FleetError(f"no host of the fleet at {fleet} can be used: {why}")
            for c in classes:
                say(f"fleet: host class {c.fingerprint} ({c.label}): {', '.join(c.hosts)}")
            kvm = True  # each host class plans its own guests (KVM or emulated)
            planned = plan_fleet(executor, study_path, options)
        else:
            check_platform_flags(options, [PlatformName(p) for p in study.model.platforms], host_facts())
            kvm = vms_native(host_facts(), options)
            planned = plan_study(study, host_facts(), kvm=kvm, options=options)
            executor = None
        _sweep_planned(study, planned, executor, db=db, plan=plan, budget_s=budget_s, app_name=app_name,
                       timeout=timeout, as_json=as_json, kvm=kvm, allow_concurrent=allow_concurrent,
                       local=not fleet, say=say, options=options)


def _sweep_planned(study: Any, planned: list[Any], executor: Any, *, db: Path, plan: bool,
                   budget_s: Optional[float], app_name: Optional[str], timeout: Optional[float],
                   as_json: bool, kvm: bool, allow_concurrent: bool, local: bool,
                   say: Callable[..., None], options: Any) -> None:
    """The rest of `sweep` once the study is planned (here or on the fleet): run, store,
    summarise."""
    import dataclasses
    import time

    from .apps import create_app
    from .datasets.cache import ensure_data
    from .findings import summarize
    from .capacity import capacity_plan_lines, is_probe, run_study_capacity
    from .host import host_facts
    from .planning import format_duration, plan_capacity, plan_lines
    from .progress import RunProgress
    from .store import Store
    from .sweep import (class_rows, group_state, make_groups, plan_group, run_sweep, study_family,
                        undecided_text)

    if app_name:
        apps = sorted({p.scenario.app for p in planned})
        if app_name not in apps:
            raise CliError(f"study {study.name} has no app {app_name!r}: its apps are "
                           f"{', '.join(apps)} (--app picks one of them)")
        planned = [p for p in planned if p.scenario.app == app_name]
    capacity_planned = plan_capacity(study, host_facts(), kvm=kvm, options=options)
    if capacity_planned and not local:
        say(f"capacity: the study's {len(capacity_planned)} [capacity] search(es) run with a local "
            "sweep only (a search holds one host for its whole bracket); run them without --fleet")
        capacity_planned = []
    if app_name:
        capacity_planned = [p for p in capacity_planned if p.scenario.app == app_name]
    if timeout is not None:
        planned, capacity_planned = ([dataclasses.replace(p, settings=dataclasses.replace(p.settings, timeout_s=timeout))
                                      for p in items] for items in (planned, capacity_planned))
    if plan:
        store = Store(db, readonly=True) if db.exists() else None
    else:
        store = Store(db)
        store.check_writable()  # refuse now, not after measuring
    lines, low, high = plan_lines(study, planned, store, kvm=kvm, budget_s=budget_s)
    lines[-1:-1] = capacity_plan_lines(study, capacity_planned)
    if plan:
        say("\n".join(lines))
        return
    if local:
        refuse_concurrent(allow_concurrent)
    say(lines[0])
    say(lines[-1])
    for name in sorted({p.scenario.app for p in [*planned, *capacity_planned] if p.skip_reason is None}):
        ensure_data(create_app(name), study.model.data_count, study.seed)
    skipped: dict[str, int] = {}
    for p in planned:
        if p.skip_reason is not None:
            skipped[p.skip_reason] = skipped.get(p.skip_reason, 0) + 1
    for reason, n in skipped.items():
        say(f"skip {n} scenario{'s' if n > 1 else ''}: {reason} (--plan lists them)")
    # execute and store
    began = time.time()
    with RunProgress(stream=sys.stderr if as_json else sys.stdout) as progress:
        def on_epoch(group: Any, gplan: Any, epoch: int) -> None:
            progress.note(f"epoch {epoch + 1} of {group.label}: {len(gplan.active)} scenario(s) x "
                          f"{gplan.blocks} blocks; {len(gplan.pending)} decision(s) pending")

        def on_stop(p: Any, decision: Any) -> None:
            if decision.reason != "skipped":
                progress.note(f"stop {p.scenario.label}: {decision.reason} ({decision.detail})")

        decisions = run_sweep(planned, store, study=study.name, seed=study.seed, budget_s=budget_s,
                              allow_concurrent=allow_concurrent, sink=store.keep,
                              on_run=lambda p, record: progress.on_run(record), on_epoch=on_epoch,
                              on_stop=on_stop, on_note=progress.note, executor=executor)
        # the [capacity] searches, after the groups (they need their own warm sessions)
        answers = run_study_capacity(
            study, capacity_planned, store, sink=store.keep, on_note=progress.note,
            budget_s=None if budget_s is None else budget_s - (time.time() - began),
            on_record=lambda r: None if is_probe(r) and r.status == "ok" else progress.on_run(r))
    # summarise
    records = [r for r in store.runs(study=study.name) if not is_probe(r)]
    if app_name:
        records = [r for r in records if r.scenario.app == app_name]
    summaries = summarize(records)
    if as_json:
        typer.echo(json.dumps([s.to_json() for s in summaries], indent=1))
    elif summaries:
        print_table(summaries)
    if not as_json:
        _print_outliers_and_stops(summaries, store, study.name)
        print_capacity_table(answers)
    labels = {p.key: p.scenario.label for p in planned}
    rows = store.study_runs(study.name)
    groups = make_groups(planned)
    family = study_family(groups, store, study.name)
    for group in groups:
        for line in undecided_text(plan_group(group, group_state(group, class_rows(rows, group.host_class)),
                                              family=family), labels):
            say(f"undecided: {line}" + (f" (hosts {group.host_class})" if group.host_class else ""))
    ran = [d for d in decisions.values() if d.reason != "skipped"]
    say(f"sweep {study.name}: {len(ran)} scenarios done, "
        f"{len(decisions) - len(ran)} skipped, {progress.done} runs this time, "
        f"{format_duration(time.time() - began)}")
    if ran and not any(r.status == "ok" for r in records):
        typer.echo("no run succeeded (reasons above and in `deploybench show`)", err=True)
        raise typer.Exit(1)


@app.command()
@friendly
def doctor(as_json: Annotated[bool, typer.Option("--json", help="the host facts and every check "
                                                  "as JSON (each check with a stable key)")] = False,
           clean: Annotated[bool, typer.Option("--clean", help="remove the deploybench cgroups, "
                                               "containers, guests and folders that no live "
                                               "session owns")] = False) -> None:
    """What this host can run (cgroups, KVM, runtimes, GPU) and, for what it cannot, why:
    ok, emulated (works, not for overhead figures), info (optional, or not prepared) or no;
    and what earlier runs left behind that no live session owns."""
    from .doctor import DOCTOR_SCHEMA, doctor_checks
    from .host import host_facts
    from .platforms.ledger import clean as clean_strays, strays

    checks = doctor_checks()
    found = strays()
    if as_json:
        typer.echo(json.dumps({"schema": DOCTOR_SCHEMA, "host": host_facts().to_json(),
                               "checks": [c.to_json() for c in checks], "strays": found.lines()},
                              indent=1))
    else:
        for check in checks:
            typer.echo(f"{check.status.value:<8} {check.name:<22} {check.detail}")
        if found.empty:
            typer.echo(f"{'ok':<8} {'strays':<22} nothing left by earlier runs without a live session")
        else:
            lines = found.lines()
            typer.echo(f"{'no':<8} {'strays':<22} {len(lines)} left by earlier runs: "
                       + "; ".join(lines[:6]) + (" ..." if len(lines) > 6 else "")
                       + ("" if clean else " (`deploybench doctor --clean` removes them)"))
    if clean and not found.empty:
        problems = clean_strays(found)
        left = set(strays().lines())  # count what is gone, not what was tried
        removed = [line for line in found.lines() if line not in left]
        kept = [line for line in found.lines() if line in left]
        problems = [p for p in problems if any(p.startswith(line) for line in kept)] + \
            [f"{line} (still there)" for line in kept if not any(p.startswith(line) for p in problems)]
        typer.echo(f"removed {len(removed)} of {len(found.lines())} stray(s)"
                   + (f"; could not remove: {'; '.join(problems)}" if problems else ""), err=True)
        if len(removed) < len(found.lines()):
            raise typer.Exit(1)


@app.command()
@friendly
def data(
    app_name: Annotated[str, typer.Option("--app", help="ic, sr, nlp, rs or module:Class")] = "ic",
    count: Annotated[int, typer.Option("--count", min=1, help="input files in the data set")] = DEFAULT_DATA_COUNT,
    seed: Annotated[int, typer.Option("--seed", help="seed of the generator")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", help="folder (default: the cache)")] = None,
    force: Annotated[bool, typer.Option("--force", help="generate it again, even if present")] = False,
) -> None:
    """Generate an app's input data set (real file formats), or verify the cached one
    against its manifest's checksums; print its folder."""
    from .apps import create_app
    from .datasets.cache import prepare_data

    path, check = prepare_data(create_app(app_name), count, seed, out_dir=out, force=force)
    typer.echo(str(path))
    if check is None:
        typer.echo("generated", err=True)
    elif check.note:
        typer.echo(f"cached; {check.note}", err=True)
    else:
        typer.echo(f"cached: {check.verified} files verified (sha256)", err=True)


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
    db: DbOption = Path("deploybench.db"),
    output: Annotated[Path, typer.Option("-o", "--output", help="HTML file to write")] = Path("report.html"),
    app_name: Annotated[Optional[str], typer.Option("--app", help="only this app")] = None,
    max_cores: MaxCoresOption = None,
    latency_slo_ms: LatencySloOption = None,
    slo_percentile: SloPercentileOption = 90,
    platforms: PlatformsOption = None,
    reference: Annotated[Optional[Path], typer.Option(
        "--reference", help="a reference set (a folder, see reference/README.md) to show beside "
                            "your results")] = None,
    margin: MarginOption = 5.0,
    confidence: ConfidenceOption = 0.95,
) -> None:
    """Write a self-contained HTML report: findings, figures, best practices, recommendation."""
    from .recommend import Constraints
    from .reference import load_reference
    from .report.build import write_report
    from .store import Store

    ref = load_reference(reference) if reference is not None else None
    constraints = Constraints(max_cores=max_cores, latency_slo_ms=latency_slo_ms,
                              slo_percentile=slo_percentile,
                              platforms=Constraints.parse_platforms(platforms))
    records = _only_app(Store(db, readonly=True).runs(), app_name, db)
    analysis = write_report(records, output, constraints, reference=ref, margin=margin / 100,
                            alpha=1 - confidence)
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
    scenario_a: Annotated[str, typer.Argument(metavar="A", help="e.g. BM/2/PIN/CPU")],
    scenario_b: Annotated[str, typer.Argument(metavar="B", help="the baseline, e.g. BM/2/VNL/CPU")],
    db: DbOption = Path("deploybench.db"),
    app_name: Annotated[Optional[str], typer.Option("--app", help="only this app")] = None,
    inference_only: Annotated[bool, typer.Option("--inference-only",
                                                 help="compare the --inference-only runs")] = False,
    margin: MarginOption = 5.0,
    confidence: ConfidenceOption = 0.95,
    as_json: Annotated[bool, typer.Option("--json", help="a list of JSON objects, one per workload "
                                          "and host")] = False,
) -> None:
    """A against B: the ratio of mean E2E paired over the blocks both ran in, its CI over
    launch pairs, and the verdict: faster, slower, equivalent (within the margin) or undecided."""
    from .findings import Judge, build_cells
    from .recommend import compare_scenarios
    from .store import Store

    cells = build_cells(_only_app(Store(db, readonly=True).runs(), app_name, db))
    judge = Judge(margin / 100, 1 - confidence)
    compare_scenarios(cells, scenario_a, scenario_b, judge, app=app_name, inference_only=inference_only)
    judge.decide()  # one claim per workload and host: decided together (Holm)
    comparisons = compare_scenarios(cells, scenario_a, scenario_b, judge, app=app_name,
                                    inference_only=inference_only)
    if as_json:
        rows = []
        for comp in comparisons:
            r = comp.result
            rows.append({"a": comp.cell.display, "b": comp.baseline.display, "app": comp.cell.app,
                         "workload": comp.cell.workload_label, "host": comp.cell.host,
                         "verdict": r.verdict.value, "ratio": r.ratio, "ci": list(r.ci), "margin": r.margin,
                         "confidence": 1 - r.alpha, "p_value": r.p_value, "beyond_p_value": r.beyond_p_value,
                         "tost_p_value": r.tost_p_value, "adjusted_p_value": r.adjusted_p_value,
                         "launch_pairs": r.launch_pairs, "blocks": r.blocks, "basis": r.basis,
                         "mean_a_ms": comp.cell.summary.e2e_mean_ms, "mean_b_ms": comp.baseline.summary.e2e_mean_ms,
                         "text": comp.text, "sentence": comp.sentence(len(comparisons))})
        typer.echo(json.dumps(rows, indent=1, default=lambda v: None))
        return
    for comp in comparisons:
        a, b = comp.cell, comp.baseline
        typer.echo(f"{a.display} vs {b.display} · {a.workload_label}"
                   + (f" · host {', '.join(a.summary.hosts)} ({a.host})" if a.host else ""))
        typer.echo(f"  {a.name}: {a.summary.e2e_mean_ms:.2f} ± {_fmt(a.summary.e2e_ci95_ms)} ms "
                   f"({a.summary.runs} rounds in {a.summary.launches} launches)   {b.name}: "
                   f"{b.summary.e2e_mean_ms:.2f} ± {_fmt(b.summary.e2e_ci95_ms)} ms ({b.summary.runs} "
                   f"rounds in {b.summary.launches} launches)")
        typer.echo(f"  {a.name} / {b.name} = {comp.text}")
        typer.echo(f"  -> {comp.sentence(len(comparisons))}")


@app.command()
@friendly
def recommend(
    db: DbOption = Path("deploybench.db"),
    app_name: Annotated[Optional[str], typer.Option("--app", help="only this app")] = None,
    max_cores: MaxCoresOption = None,
    latency_slo_ms: LatencySloOption = None,
    slo_percentile: SloPercentileOption = 90,
    platforms: PlatformsOption = None,
    margin: MarginOption = 5.0,
    confidence: ConfidenceOption = 0.95,
    as_json: Annotated[bool, typer.Option("--json", help="the decision as JSON")] = False,
) -> None:
    """The deployment to pick for each workload: every other is slower or within the margin of
    it (decided), or which pairs are still undecided; ties broken by cost (cores, isolation, footprint)."""
    from .findings import build_cells
    from .recommend import Constraints, recommend as recommend_cells
    from .store import Store

    constraints = Constraints(max_cores=max_cores, latency_slo_ms=latency_slo_ms,
                              slo_percentile=slo_percentile,
                              platforms=Constraints.parse_platforms(platforms))
    cells = build_cells(_only_app(Store(db, readonly=True).runs(), app_name, db))
    recs = recommend_cells(cells, constraints, margin=margin / 100, alpha=1 - confidence)
    if not recs:
        raise CliError(f"no successful E2E runs in {db}" + (f" for app {app_name}" if app_name else "")
                       + ": nothing to recommend (run `deploybench run ...` or a study first)")
    if as_json:
        # a workload where no scenario qualifies (all TCG-emulated, or none meets the
        # constraints) has nothing to decide: listed apart, not a null pick or an open decision
        chosen = [r for r in recs if r.best is not None]
        typer.echo(json.dumps({
            "app": app_name, "constraints": constraints.describe(), "margin": margin / 100,
            "confidence": confidence, "decided": bool(chosen) and all(r.decided for r in chosen),
            "best": [r.to_json()["recommended"] for r in chosen],
            "no_candidate": [r.workload for r in recs if r.best is None],
            "undecided_pairs": [p for r in recs for p in r.to_json()["undecided_pairs"]],
            "recommendations": [r.to_json() for r in recs]}, indent=1, default=lambda v: None))
        return
    for r in recs:
        typer.echo(f"{r.workload}{f' on {r.host}' if len({x.host for x in recs}) > 1 else ''}: {r.text}")


@app.command()
@friendly
def export(
    db: DbOption = Path("deploybench.db"),
    out: Annotated[Path, typer.Option("-o", "--out", help="output folder")] = Path("deploybench-export"),
    fmt: Annotated[str, typer.Option("--format", help="csv, jsonl or parquet (needs pyarrow)")] = "csv",
) -> None:
    """Export runs and raw per-request phase times (runs.* and samples.*, joined by run_id)."""
    from .export import export as export_store
    from .store import Store

    for path in export_store(Store(db, readonly=True), out, fmt):
        typer.echo(str(path))


@app.command("import")
@friendly
def import_runs(
    files: Annotated[List[Path], typer.Argument(metavar="FILE...", help="recovery files that "
                                                "deploybench wrote when a run could not be stored")],
    db: Annotated[Optional[Path], typer.Option(
        "--db", help="the store to add them to (default: the one each file was written for)")] = None,
) -> None:
    """Add runs that could not be stored (disk full, permissions) from their recovery files.
    Importing a file twice adds its runs once."""
    from .store import Store, read_recovery

    for path in files:
        records, meant_for = read_recovery(path)
        target = db or Path(meant_for or "deploybench.db")
        with Store(target) as store:
            added, already = store.import_records(records)
        typer.echo(f"{path}: {added} run{'s' if added != 1 else ''} added to {target}"
                   + (f", {already} already there" if already else "")
                   + ("; the file may be deleted" if added + already == len(records) else ""))


# -- the fleet: benchmark hosts on Dask distributed (fleet.py) ----------------------------------
fleet_app = typer.Typer(no_args_is_help=True, help="Benchmark hosts of a Dask cluster: start a worker "
                        "on each host, list them; `sweep --fleet` sends a study to them.")
app.add_typer(fleet_app, name="fleet")
SchedulerOption = Annotated[str, typer.Option(
    "--scheduler", help="the Dask scheduler, tcp://HOST:PORT (start one with `dask scheduler`)")]


@fleet_app.command("worker")
@friendly
def fleet_worker(
    scheduler: SchedulerOption,
    name: Annotated[Optional[str], typer.Option("--name", help="this host's name in the fleet "
                                                "(default: the hostname)")] = None,
    cpus: Annotated[Optional[str], typer.Option("--cpus", help="measure on these CPUs only, e.g. "
                                                "0-7 (default: every usable CPU)")] = None,
    housekeeping: Annotated[str, typer.Option(
        "--housekeeping-cpu", help="where the worker's own Dask threads run: auto (the last CPU "
                                   "when there are 4 or more), none (on the measured CPUs; "
                                   "recorded), or a CPU number")] = "auto",
    local_peers: Annotated[int, typer.Option("--local-peers", min=0, hidden=True,
                                             help="other workers of a local fleet on this machine")] = 0,
) -> None:
    """A benchmark host: a Dask worker with one thread that measures one block set at a time
    and advertises what doctor says this host can run (bench_host, BM, CN, VM..., kvm, gpu)."""
    from .fleet import FleetError, parse_fleet, serve_worker
    from .scenario import parse_cpu_list

    kind, address = parse_fleet(scheduler)
    if kind != "tcp":
        raise FleetError(f"--scheduler takes tcp://HOST:PORT, got {scheduler!r}")
    serve_worker(str(address), name=name, cpus=parse_cpu_list(cpus) if cpus else None,
                 housekeeping=housekeeping, local_peers=local_peers, say=typer.echo)


@fleet_app.command("hosts")
@friendly
def fleet_hosts(
    scheduler: SchedulerOption,
    as_json: Annotated[bool, typer.Option("--json", help="each host's card as JSON")] = False,
) -> None:
    """The hosts of a fleet: their class (host fingerprint), cores, what each can run, their
    deploybench version; a host this deploybench would refuse says why."""
    from .fleet import (FleetError, _Connection, compatibility_problem, describe_workers, host_lines,
                        parse_fleet, worker_addresses)

    kind, address = parse_fleet(scheduler)
    if kind != "tcp":
        raise FleetError(f"--scheduler takes tcp://HOST:PORT, got {scheduler!r}")
    with _Connection(str(address)) as connection:
        cards = describe_workers(connection.client, worker_addresses(connection.client))
    if as_json:
        typer.echo(json.dumps([{"address": a, "card": card.to_json() if card else None,
                                "refused": problem or (compatibility_problem(card) if card else None)}
                               for a, (card, problem) in sorted(cards.items())], indent=1))
    elif not cards:
        typer.echo(f"no hosts in the fleet at {address}: start `deploybench fleet worker --scheduler "
                   f"{address}` on each benchmark host")
    else:
        for line in host_lines(cards):
            typer.echo(line)


def main() -> None:
    app(prog_name="deploybench")


if __name__ == "__main__":
    main()
