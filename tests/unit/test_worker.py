import json
import sys

import pytest

from deploybench.worker.__main__ import Loaded, load, main as worker_main, run_round
from deploybench.worker.driver import LoadgenDriver, parse_loadgen_detail
from deploybench.worker.job import SchemaError, WorkerJob, WorkerResult

from .fakes import SleepApp


@pytest.fixture()
def sleep_app(tmp_path):
    app = SleepApp()
    app.generate_data(tmp_path / "d", 6, 0)
    app.load(tmp_path / "d", "tiny", "torch", 1)
    return app


@pytest.mark.parametrize("scenario", ["Offline", "SingleStream", "Server"])
def test_every_request_is_timed_in_each_loadgen_scenario(sleep_app, tmp_path, scenario):
    driver = LoadgenDriver(sleep_app, batch_size=1, inference_only=False)
    loadgen = driver.run(scenario=scenario, requests=10, log_dir=tmp_path / "lg", server_target_qps=200)
    log = driver.log
    assert len(log.preprocess_ns) == 10
    assert loadgen["effective_scenario"] == scenario
    # busy-wait phases: each timer sees at least the designed time
    assert min(log.preprocess_ns) >= 2e6 and min(log.infer_ns) >= 3e6 and min(log.postprocess_ns) >= 1e6
    assert "50.00_percentile_latency_ns" in loadgen and loadgen["query_count"] >= 1


def test_batches_share_inference_time_equally(sleep_app, tmp_path):
    driver = LoadgenDriver(sleep_app, batch_size=4, inference_only=False)
    driver.run(scenario="Offline", requests=8, log_dir=tmp_path / "lg", server_target_qps=1)
    log = driver.log
    assert sorted(set(log.batch)) == [0, 1]
    for batch in (0, 1):
        shares = [t for b, t in zip(log.batch, log.infer_ns) if b == batch]
        assert len(shares) == 4 and len(set(shares)) == 1  # one inference, split in four
        assert shares[0] * 4 >= 3e6  # together they are at least the 3 ms inference


def test_inference_only_takes_preprocessing_off_the_clock(sleep_app, tmp_path):
    driver = LoadgenDriver(sleep_app, batch_size=1, inference_only=True)
    driver.run(scenario="Offline", requests=6, log_dir=tmp_path / "lg", server_target_qps=1)
    # each loaded sample was pre-processed once, in LoadGen's untimed load phase
    assert sleep_app.pre_calls == 6
    assert len(driver.log.preprocess_ns) == 6 and min(driver.log.infer_ns) >= 3e6


def test_an_app_error_fails_the_run_without_hanging_loadgen(sleep_app, tmp_path):
    def broken(batch):
        raise ValueError("model exploded")
    sleep_app.infer = broken
    driver = LoadgenDriver(sleep_app, batch_size=1, inference_only=False)
    with pytest.raises(ValueError, match="model exploded"):
        driver.run(scenario="Offline", requests=4, log_dir=tmp_path / "lg", server_target_qps=1)


def _job(tmp_path, **fields):
    values = dict(app="tests.unit.fakes:SleepApp", data_dir=str(tmp_path / "d"),
                  result_path=str(tmp_path / "r.json"), requests=5, threads=1, cores=1,
                  host_cores=4, git_revision="abc")
    values.update(fields)
    return WorkerJob(**values)


def test_a_round_records_budget_environment_metadata_and_its_own_counters(tmp_path):
    SleepApp().generate_data(tmp_path / "d", 4, 0)
    job = _job(tmp_path)
    loaded = load(job, 0.0)
    assert loaded.timings["load_s"] >= 0 and "ready_wall" in loaded.timings
    result = run_round(loaded, job)
    assert result.status == "ok", result.error
    env = result.environment
    assert env["affinity"] and env["cpu_budget"] >= 1 and env["omp_num_threads"] == "1"
    assert env["voluntary_ctx_switches"] >= 0 and env["io_read_bytes"] is not None
    assert result.metadata["chr"] == 0.25 and result.metadata["git_revision"] == "abc"
    assert result.metadata["loadgen_version"]
    assert len(result.samples["preprocess_ns"]) == 5
    assert result.samples["sample_id"][0].startswith("s")
    assert any(w["code"] == "few_samples" for w in result.warnings)
    second = run_round(loaded, job.with_(requests=3))  # the same warm app, another round
    assert second.status == "ok" and len(second.samples["preprocess_ns"]) == 3


def test_the_worker_freezes_its_start_up_heap_before_the_first_round(tmp_path):
    import gc

    SleepApp().generate_data(tmp_path / "d", 4, 0)
    job = _job(tmp_path)
    try:
        loaded = load(job, 0.0)
        frozen = gc.get_freeze_count()
        # everything alive at "ready" (this interpreter's modules, the app) is out of the
        # collector's generations, so no timed round pays a full pass over it
        assert frozen > 1000 and loaded.environment["gc_frozen_objects"] == frozen
        result = run_round(loaded, job)
        assert result.status == "ok" and result.environment["gc_frozen_objects"] == frozen
    finally:
        gc.unfreeze()


def test_a_round_may_not_change_what_the_worker_loaded(tmp_path):
    SleepApp().generate_data(tmp_path / "d", 4, 0)
    job = _job(tmp_path)
    loaded = load(job, 0.0)
    result = run_round(loaded, job.with_(model_size="full"))
    assert result.status == "error" and "may not change model_size" in result.error


def test_an_app_that_cannot_load_fails_the_launch_with_its_reason(tmp_path):
    job = _job(tmp_path, data_dir=str(tmp_path / "missing"))
    with pytest.raises(Exception):
        load(job, 0.0)


def test_the_worker_serves_rounds_over_files_and_stops_on_request(tmp_path):
    import threading

    from deploybench.worker.channel import FileChannel, message

    SleepApp().generate_data(tmp_path / "d", 4, 0)
    job = _job(tmp_path)
    job.write(tmp_path / "job.json")
    host = FileChannel(tmp_path, side="host")
    codes = []
    worker = threading.Thread(target=lambda: codes.append(worker_main(
        ["--serve", "files", "--channel-dir", str(tmp_path), "--job", str(tmp_path / "job.json")])))
    worker.start()
    assert host.receive(60)["type"] == "ready"
    host.send(message("job", seq=1, job=job.with_(result_path=str(tmp_path / "r1.json")).to_json()))
    reply = host.receive(60)
    assert reply["type"] == "result" and reply["status"] == "ok" and reply["seq"] == 1
    assert WorkerResult.read(tmp_path / "r1.json").status == "ok"
    host.send(message("stop"))
    worker.join(30)
    assert codes == [0]


def test_a_stopped_worker_process_ends_with_status_0_and_what_the_app_printed(tmp_path):
    """The worker process skips the interpreter's shutdown after ``stop`` (os._exit: 0.5-0.7 s
    with torch loaded, paid by every closed session); it still ends with status 0, and what
    the app printed, the last words without a newline too, is on the console."""
    import os
    import subprocess
    from pathlib import Path

    from deploybench.worker.channel import FileChannel, message

    SleepApp().generate_data(tmp_path / "d", 4, 0)
    job = _job(tmp_path, app="tests.unit.fakes:ChattyApp")
    job.write(tmp_path / "job.json")
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(root), str(root / "src"),
                                                         os.environ.get("PYTHONPATH", "")])}
    with open(tmp_path / "stderr.txt", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "deploybench.worker", "--serve", "files",
                                 "--channel-dir", str(tmp_path), "--job", str(tmp_path / "job.json")],
                                stdout=err, stderr=err, env=env)
        try:
            host = FileChannel(tmp_path, side="host")
            assert host.receive(60)["type"] == "ready"
            host.send(message("stop"))
            assert proc.wait(30) == 0
        finally:
            proc.kill()
            proc.wait()
    printed = (tmp_path / "stderr.txt").read_text()
    assert "chatty: loaded" in printed and "chatty: still in the buffer" in printed, printed


def test_worker_cli_refuses_unusable_job_files(tmp_path, capsys):
    bad = tmp_path / "job.json"
    bad.write_text(json.dumps({"schema": 99, "app": "ic"}))
    assert worker_main(["--serve", "files", "--channel-dir", str(tmp_path), "--job", str(bad)]) == 2
    assert "unusable job file" in capsys.readouterr().err


def test_schemas_are_versioned_and_checked(tmp_path):
    job = WorkerJob(app="ic", data_dir="/d", result_path="/r")
    assert job.to_json()["schema"] == 1
    assert WorkerJob.from_json(job.to_json()) == job
    with pytest.raises(SchemaError, match="unknown job fields"):
        WorkerJob.from_json({**job.to_json(), "surprise": 1})
    result = WorkerResult(status="ok", job=job.to_json())
    result.write(tmp_path / "r.json")
    assert WorkerResult.read(tmp_path / "r.json").status == "ok"
    with pytest.raises(SchemaError):
        WorkerResult.from_json({"schema": 2})


def test_loadgen_detail_parser_keeps_results_and_errors(tmp_path):
    path = tmp_path / "detail.txt"
    path.write_text(
        ':::MLLOG {"key": "result_validity", "value": "VALID"}\n'
        ':::MLLOG {"key": "result_90.00_percentile_latency_ns", "value": 123}\n'
        ':::MLLOG {"key": "error_invalid_config", "value": "bad"}\n'
        "garbage line\n:::MLLOG {not json\n")
    parsed = parse_loadgen_detail(path)
    assert parsed["validity"] == "VALID" and parsed["90.00_percentile_latency_ns"] == 123
    assert parsed["errors"] == ["error_invalid_config: bad"]


def test_a_server_latency_bound_reaches_loadgens_validity(sleep_app, tmp_path):
    driver = LoadgenDriver(sleep_app, batch_size=1, inference_only=False)
    loadgen = driver.run(scenario="Server", requests=50, log_dir=tmp_path / "lg", server_target_qps=20,
                         server_target_latency_ms=250, server_latency_percentile=90)
    assert loadgen["effective_target_latency_ns"] == 250_000_000
    assert loadgen["effective_target_latency_percentile"] == pytest.approx(0.9)
    # 50 requests of ~6 ms at 20 qps: all within 250 ms, enough for early stopping at p90
    assert loadgen["validity"] == "VALID" and loadgen["early_stopping_met"] is True


def test_meminfo_keeps_what_the_kernels_memory_is_made_of():
    from deploybench.worker.environment import meminfo

    text = "MemTotal:  2000 kB\nMemFree:   500 kB\nCached:  300 kB\nHugePages_Total: 0\nMapped: 10 kB\n"
    assert meminfo(text) == {"MemTotal": 2000, "MemFree": 500, "Cached": 300, "Mapped": 10}
    assert meminfo()["MemTotal"] > 0  # this kernel's


def test_a_ctrl_c_taken_by_another_thread_still_interrupts_a_waiting_receive():
    """The kernel may hand a process's SIGINT to any thread that does not block it; Python
    then only flags the main thread, which acts on it when its wait returns. A receive
    waiting for a hung round must not hold the Ctrl-C back until the round's timeout (seen
    once in a full run: a Ctrl-C 2 s into a 60 s hang came back as an ``ok`` round)."""
    import os
    import signal
    import threading
    import time

    from deploybench.worker.channel import StreamChannel

    signal.signal(signal.SIGINT, signal.default_int_handler)  # whatever an earlier test left
    read_fd, write_fd = os.pipe()
    channel = StreamChannel(read_fd, os.dup(write_fd))
    # main blocks SIGINT, so the kernel must deliver it to the timer's thread
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    timer = threading.Timer(0.2, lambda: os.kill(os.getpid(), signal.SIGINT))
    started = time.monotonic()
    try:
        timer.start()
        with pytest.raises(KeyboardInterrupt):
            channel.receive(30)
    finally:
        timer.cancel()
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        os.close(write_fd)
        channel.close()
    assert time.monotonic() - started < 20  # acted on, not held until the 30 s timeout
