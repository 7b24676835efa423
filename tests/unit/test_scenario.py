import pytest

from deploybench.scenario import (CpuMode, LoadgenScenario, PlatformName, Processor, Scenario,
                                  ScenarioError, format_cpu_list, parse_cpu_list)


@pytest.mark.parametrize("name", ["BM/2/PIN/CPU", "VM/4/VNL/GPU", "VMCN/64/PIN/CPU", "MVM/16/VNL/CPU", "CN/1/VNL/CPU"])
def test_paper_names_round_trip(name):
    assert Scenario.parse(name).name == name


def test_parse_is_case_insensitive_and_fills_fields():
    s = Scenario.parse("vm/32/pin/gpu", app="nlp", requests=10)
    assert (s.platform, s.cores, s.cpu_mode, s.processor) == (PlatformName.VM, 32, CpuMode.PIN, Processor.GPU)
    assert s.app == "nlp" and s.requests == 10


@pytest.mark.parametrize("name, fragment", [
    ("XX/2/PIN/CPU", "unknown platform 'XX': use one of BM CN VM MVM VMCN"),
    ("BM/two/PIN/CPU", "must be a whole number"),
    ("BM/0/PIN/CPU", "cores must be a whole number >= 1"),
    ("BM/-1/PIN/CPU", "cores must be"),
    ("BM/2/PINNED/CPU", "unknown CPU mode"),
    ("BM/2/PIN/TPU", "unknown processor"),
    ("BM/2/PIN", "write PLATFORM/CORES/MODE/PROC"),
    ("", "write PLATFORM/CORES/MODE/PROC"),
])
def test_invalid_names_give_one_line_errors_naming_the_fix(name, fragment):
    with pytest.raises(ScenarioError) as info:
        Scenario.parse(name)
    message = str(info.value)
    assert fragment in message
    assert "\n" not in message


def test_more_cores_than_the_host_is_refused():
    with pytest.raises(ScenarioError, match="asks for 8 cores but this host has 2: use at most 2"):
        Scenario.parse("BM/8/PIN/CPU").check_fits(2)
    Scenario.parse("BM/2/PIN/CPU").check_fits(2)


def test_json_round_trip_and_key_identity():
    s = Scenario.parse("CN/2/VNL/CPU", app="ic", model_size="full", batch_size=4,
                       loadgen_scenario="Server", inference_only=True)
    assert s.loadgen_scenario is LoadgenScenario.SERVER
    again = Scenario.from_json(s.to_json())
    assert again == s and again.key == s.key
    assert s.with_(requests=1000).key != s.key


def test_unknown_loadgen_scenario_is_refused():
    with pytest.raises(ScenarioError, match="unknown LoadGen scenario"):
        Scenario.parse("BM/1/PIN/CPU", loadgen_scenario="Burst")


def test_label_shows_what_differs_from_defaults():
    s = Scenario.parse("BM/1/PIN/CPU", app="ic", batch_size=8, inference_only=True)
    assert s.label == "BM/1/PIN/CPU · ic (tiny, torch, b8, infer-only)"


@pytest.mark.parametrize("text, cpus", [("0-3,8,10-11", [0, 1, 2, 3, 8, 10, 11]), ("5", [5]), ("", [])])
def test_cpu_lists_parse_and_format(text, cpus):
    assert parse_cpu_list(text) == cpus
    assert format_cpu_list(cpus) == text
