"""Android over adb, against the ADB DEVICE SIMULATOR in tests/adb_simulator (not a real device).

The simulator is an executable named `adb` put first on PATH; `adb shell` runs the joined command through
a real /bin/sh, so quoting mistakes would show. The recorded benchmark_model output it replays is the
verbatim sample ../shared/fixtures/benchmark_model/android_taskset_2021.txt. The last tests use the real
adb client (Debian's `adb` package) and skip where it is not installed.
"""
import json
import os
import shutil
import subprocess
import sys

import pytest
from click.testing import CliRunner

from android_bench import adb as adb_module
from android_bench import android
from android_bench.commands import bench_command

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from adb_simulator import FAKE_BENCHMARK_MODEL, AdbSimulator  # noqa: E402

TRICKY_NAME = "my model; touch PWNED 'quoted' $(id).tflite"


@pytest.fixture
def recorded(shared_dir):
    path = shared_dir / "fixtures/benchmark_model/android_taskset_2021.txt"
    if not path.is_file():
        pytest.skip(f"{path} not found: the recorded benchmark_model output lives in ../shared")
    return path


@pytest.fixture
def sim(tmp_path, monkeypatch):
    simulator = AdbSimulator(tmp_path)
    simulator.monkeypatch = monkeypatch
    return simulator


@pytest.fixture
def model_file(tmp_path):
    # benchmark_model is simulated, so the bytes need not be a model; the name is what is under test.
    path = tmp_path / "models" / TRICKY_NAME
    path.parent.mkdir()
    path.write_bytes(b"TFL3 simulated model bytes")
    return str(path)


def options(**kwargs):
    kwargs.setdefault("benchmark_binary", FAKE_BENCHMARK_MODEL)
    return android.AndroidOptions(**kwargs)


def client(**kwargs):
    kwargs.setdefault("retry_delay", 0.01)
    return adb_module.Adb(**kwargs)


def bench(args):
    return CliRunner().invoke(bench_command, [str(a) for a in args])


# -- pure helpers -------------------------------------------------------------------------------------
def test_big_cores_pick_the_fastest_cluster():
    freqs = {i: f for i, f in enumerate([1804800] * 4 + [2419200] * 3 + [3187200])}
    assert android.big_cores(freqs, 1) == [7]
    assert android.big_cores(freqs, 2) == [4, 5, 6, 7]
    assert android.big_cores(freqs, 4) == [4, 5, 6, 7]
    assert android.big_cores(freqs, 6) == list(range(8))
    assert android.cpu_mask([4, 5, 6, 7]) == "f0" and android.cpu_mask([7]) == "80"


def test_parse_devices_names_states():
    text = ("* daemon not running; starting now at tcp:5037\n* daemon started successfully\n"
            "List of devices attached\n"
            "R58M123ABC             device usb:1-1 product:beyond1 model:SM_G973F device:beyond1 transport_id:1\n"
            "emulator-5554\tunauthorized\n"
            "0123456789\toffline\n"
            "ZY22\tno permissions (user in plugdev group; are your udev rules wrong?); see [http://x]\n\n")
    entries = adb_module.parse_devices(text)
    assert [(e.serial, e.state) for e in entries] == [
        ("R58M123ABC", "device"), ("emulator-5554", "unauthorized"), ("0123456789", "offline"),
        ("ZY22", "no permissions")]
    assert entries[0].details["model"] == "SM_G973F" and entries[0].ready
    assert "Allow USB debugging" in entries[1].state_help and "offline" in entries[2].state_help


def test_classify_adb_errors():
    assert isinstance(adb_module.classify("adb: error: device 'X' not found", "X"), adb_module.DeviceGone)
    assert isinstance(adb_module.classify("error: device unauthorized.\nThis adb server..."),
                      adb_module.DeviceUnauthorized)
    assert isinstance(adb_module.classify("error: closed"), adb_module.TransientAdbError)
    assert isinstance(adb_module.classify("adb: error: device offline"), adb_module.TransientAdbError)
    assert adb_module.classify("sh: benchmark_model: not found") is None  # the device command's own failure


def test_shell_refuses_a_command_string(sim, recorded):
    sim.add_device("SIM-A", recorded_output=recorded)
    sim.install(sim.monkeypatch)
    with pytest.raises(TypeError):
        client().device("SIM-A").shell("ls /data/local/tmp")


# -- simulated devices --------------------------------------------------------------------------------
def test_simulator_is_a_real_shell_so_unquoted_commands_would_inject(sim, recorded):
    """Control for the quoting test: the simulator does execute what an unquoted name would inject."""
    sim.add_device("SIM-A", recorded_output=recorded)
    sim.install(sim.monkeypatch)
    device = client().device("SIM-A")
    device.adb.call(["shell", "ls /data/local/tmp/x; touch /data/local/tmp/INJECTED"], "SIM-A")
    assert "INJECTED" in sim.device_files("SIM-A")


def test_device_facts(sim, recorded):
    sim.add_device("SIM-A", recorded_output=recorded, thermal_status=2)
    sim.install(sim.monkeypatch)
    facts = android.device_facts(client().device("SIM-A"))
    assert facts["model"] == "Simulated Phone SIM-A" and facts["soc"] == "SM8550"
    assert facts["abi"] == "arm64-v8a" and facts["android"] == "14" and facts["cores"] == 8
    assert facts["max_freq_khz"][7] == 3187200 and facts["max_freq_khz"][0] == 1804800
    assert set(facts["governor"].values()) == {"schedutil"}
    assert facts["thermal"] == {"level": 2, "name": "moderate"}


def test_quoted_paths_run_and_clean_up(sim, recorded, model_file):
    sim.add_device("SIM-A", recorded_output=recorded)
    sim.install(sim.monkeypatch)
    report = android.benchmark_device(client(), "SIM-A", [android.ModelInfo(model_file, mode="fp32")],
                                      options(threads=(1, 4), fixed_performance=True), log=lambda m: None)
    assert report.status == "ok", report.error
    assert [row["status"] for row in report.rows] == ["ok", "ok"]
    row = report.rows[0]
    assert row["mean_ms"] == pytest.approx(266.473) and row["runs"] == 50 and row["init_ms"] == pytest.approx(20.283)
    assert row["model"] == TRICKY_NAME.rsplit(".", 1)[0]
    # the model reached the binary as one argument, with its name intact
    assert any(TRICKY_NAME in line for line in row["output_tail"])
    assert row["machine"]["model"] == "Simulated Phone SIM-A" and row["thermal_after"]["name"] == "none"
    assert sim.taskset_masks("SIM-A") == ["80", "f0"]  # prime core for 1 thread, big cluster for 4
    assert [r["cpu_mask"] for r in report.rows] == ["80", "f0"]
    assert not any("PWNED" in name for name in os.listdir(sim.fs("SIM-A")))
    assert sim.device_files("SIM-A") == []  # everything removed from /data/local/tmp
    with open(os.path.join(sim.fs("SIM-A"), "perf_mode")) as f:
        assert f.read().strip() == "false"  # fixed performance mode switched on, then back off


def test_transient_failure_is_retried(sim, recorded, model_file):
    sim.add_device("SIM-A", recorded_output=recorded, faults={"transient_run_failures": 2})
    sim.install(sim.monkeypatch)
    messages = []
    report = android.benchmark_device(client(retries=2, log=messages.append), "SIM-A",
                                      [android.ModelInfo(model_file)], options(), log=messages.append)
    assert report.status == "ok" and report.rows[0]["status"] == "ok"
    assert sum("retrying" in m for m in messages) == 2
    assert len([c for c in sim.calls() if c["argv"] == ["run"]]) == 1  # two failed before running, one ran


def test_transient_failure_beyond_retries_is_reported(sim, recorded, model_file):
    sim.add_device("SIM-A", recorded_output=recorded, faults={"transient_run_failures": 5})
    sim.install(sim.monkeypatch)
    report = android.benchmark_device(client(retries=1), "SIM-A", [android.ModelInfo(model_file)], options(),
                                      log=lambda m: None)
    assert report.status == "failed" and "protocol fault" in report.error
    assert sim.device_files("SIM-A") == []  # still cleaned up


def test_unknown_flag_is_reported(sim, recorded, model_file):
    sim.add_device("SIM-A", recorded_output=recorded)
    sim.install(sim.monkeypatch)
    report = android.benchmark_device(client(), "SIM-A", [android.ModelInfo(model_file)],
                                      options(extra_flags=("--use_hexagon=true",)), log=lambda m: None)
    row = report.rows[0]
    assert row["status"] == "ok"
    assert row["warnings"] == ["unconsumed cmdline flags: --use_hexagon=true"]


def test_partial_and_failed_delegation_are_reported(sim, recorded, model_file, tmp_path):
    output = tmp_path / "gpu_output.txt"
    output.write_text("INFO: Replacing 60 out of 66 node(s) with delegate (TfLiteGpuDelegateV2) node, "
                      "yielding 3 partitions.\n" + recorded.read_text())
    failed = tmp_path / "nnapi_output.txt"
    failed.write_text("ERROR: Failed to apply NNAPI delegate.\n" + recorded.read_text())
    sim.add_device("SIM-GPU", recorded_output=output)
    sim.add_device("SIM-NN", recorded_output=failed)
    sim.install(sim.monkeypatch)
    gpu = android.benchmark_device(client(), "SIM-GPU", [android.ModelInfo(model_file)],
                                   options(delegates=("gpu",)), log=lambda m: None).rows[0]
    assert gpu["status"] == "ok" and gpu["partitions"] == 3
    assert any(w.startswith("partial delegation") for w in gpu["warnings"])
    nnapi = android.benchmark_device(client(), "SIM-NN", [android.ModelInfo(model_file)],
                                     options(delegates=("nnapi",)), log=lambda m: None).rows[0]
    assert nnapi["status"] == "delegate_failed"
    assert nnapi["warnings"] == ["delegate failed: Failed to apply NNAPI delegate."]


def test_binary_that_cannot_execute_on_the_device(sim, recorded, model_file):
    sim.add_device("SIM-A", recorded_output=recorded, faults={"noexec": True})
    sim.install(sim.monkeypatch)
    report = android.benchmark_device(client(), "SIM-A", [android.ModelInfo(model_file)], options(),
                                      log=lambda m: None)
    row = report.rows[0]
    assert row["status"] == "failed" and row["exit_code"] != 0 and row["mean_ms"] is None
    assert any("Permission denied" in e for e in row["errors"])


def test_binary_for_the_wrong_architecture_is_refused(tmp_path):
    elf = tmp_path / "benchmark_model"
    # ELF header of an x86-64 executable: magic, 64-bit, little endian, e_machine = 62 at offset 18
    elf.write_bytes(b"\x7fELF\x02\x01\x01" + b"\0" * 11 + (62).to_bytes(2, "little") + b"\0" * 40)
    assert android.elf_machine(str(elf)) == "x86_64"
    with pytest.raises(android.BenchSetupError, match="built for x86_64, but the device ABI is arm64-v8a"):
        android.check_binary(str(elf), ["arm64-v8a"])


def test_two_devices_in_parallel(sim, recorded, model_file):
    for serial in ("SIM-A", "SIM-B"):
        sim.add_device(serial, recorded_output=recorded, faults={"run_seconds": 0.6})
    sim.install(sim.monkeypatch)
    reports = android.benchmark_devices(client(), ["SIM-A", "SIM-B"], [android.ModelInfo(model_file)], options(),
                                        log=lambda m: None)
    assert [(r.serial, r.status, len(r.rows)) for r in reports] == [("SIM-A", "ok", 1), ("SIM-B", "ok", 1)]
    runs = {c["serial"]: (c["start"], c["end"]) for c in sim.calls() if c["argv"] == ["run"]}
    (a_start, a_end), (b_start, b_end) = runs["SIM-A"], runs["SIM-B"]
    assert a_start < b_end and b_start < a_end  # the two benchmark runs overlapped in time


def test_device_vanishing_mid_run_is_reported_and_others_continue(sim, recorded, model_file):
    sim.add_device("SIM-A", recorded_output=recorded, faults={"vanish_on_run": 2})
    sim.add_device("SIM-B", recorded_output=recorded)
    sim.install(sim.monkeypatch)
    reports = android.benchmark_devices(client(), ["SIM-A", "SIM-B"], [android.ModelInfo(model_file)],
                                        options(threads=(1, 2, 4)), log=lambda m: None)
    lost, other = reports
    assert lost.status == "device_lost" and "not found" in lost.error
    assert len(lost.rows) == 1  # the run before it vanished is kept
    assert other.status == "ok" and len(other.rows) == 3


# -- the CLI over the simulator ---------------------------------------------------------------------------
def test_cli_no_device(sim, model_file, tmp_path):
    sim.install(sim.monkeypatch)
    result = bench([model_file, "--target", "android", "--benchmark-binary", FAKE_BENCHMARK_MODEL,
                    "--out", tmp_path / "r.json"])
    assert result.exit_code == 1
    assert "no Android device attached" in result.stderr
    assert not (tmp_path / "r.json").exists()


def test_cli_unauthorized_device_is_named_and_ready_one_runs(sim, recorded, model_file, tmp_path):
    sim.add_device("SIM-LOCKED", state="unauthorized")
    sim.add_device("SIM-A", recorded_output=recorded)
    sim.install(sim.monkeypatch)
    out = tmp_path / "r.json"
    result = bench([model_file, "--target", "android", "--benchmark-binary", FAKE_BENCHMARK_MODEL, "--out", out,
                    "--quiet"])
    assert result.exit_code == 1
    assert "SIM-LOCKED: unauthorized: accept the 'Allow USB debugging' prompt" in result.stderr
    data = json.loads(out.read_text())
    assert [row["target"] for row in data["rows"]] == ["android:SIM-A"]
    assert "android:SIM-A" in result.stdout and "266.5*" in result.stdout  # mean, marked: no median printed
    assert any("unauthorized" in f["error"] for f in data["failures"])


def test_unauthorized_device_raises_a_clear_error(sim):
    sim.add_device("SIM-LOCKED", state="unauthorized")
    sim.install(sim.monkeypatch)
    with pytest.raises(adb_module.DeviceUnauthorized, match="Allow USB debugging"):
        client().device("SIM-LOCKED").shell(["true"])


def test_cli_binary_missing(sim, model_file, tmp_path):
    sim.install(sim.monkeypatch)
    result = bench([model_file, "--target", "android", "--out", tmp_path / "r.json"])
    assert result.exit_code == 2 and "--benchmark-binary PATH" in result.stderr
    result = bench([model_file, "--target", "android", "--benchmark-binary", tmp_path / "nope",
                    "--out", tmp_path / "r.json"])
    assert result.exit_code == 2 and "nope: file not found" in result.stderr
    assert sim.calls() == []  # refused before talking to adb


def test_adb_missing_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("ADB", raising=False)
    with pytest.raises(adb_module.AdbNotFound, match="apt-get install adb"):
        adb_module.find_adb()


# -- the real adb client ---------------------------------------------------------------------------------
@pytest.fixture
def real_adb(monkeypatch):
    path = shutil.which("adb")
    if path is None:
        pytest.skip("the real adb client is not installed (Debian/Ubuntu: apt-get install adb)")
    with open(path, "rb") as f:
        if b"ADB DEVICE SIMULATOR" in f.read(4096):
            pytest.skip("`adb` on PATH is the test simulator, not the real client")
    port = 15037 + os.getpid() % 1000  # a private adb server, so a developer's server is left alone
    yield adb_module.Adb(path, port=port, timeout=60)
    subprocess.run([path, "-P", str(port), "kill-server"], capture_output=True, timeout=30)


def test_real_adb_client_no_devices(real_adb):
    assert "Android Debug Bridge" in real_adb.version()
    assert real_adb.devices() == []
    ready, problems = android.select_devices(real_adb)
    assert ready == [] and problems == ["no Android device attached (`adb devices` lists none)"]
    with pytest.raises(adb_module.DeviceGone, match="not found"):
        real_adb.device("no-such-serial").shell(["true"])


def test_fixed_performance_mode_unsupported_is_logged_and_run_continues(sim, recorded, model_file):
    sim.add_device("SIM-OLD", recorded_output=recorded, faults={"perf_mode": False}, props={
        "ro.build.version.release": "11"})
    sim.install(sim.monkeypatch)
    messages = []
    report = android.benchmark_device(client(), "SIM-OLD", [android.ModelInfo(model_file)],
                                      options(fixed_performance=True), log=messages.append)
    assert report.status == "ok" and report.rows[0]["machine"]["android"] == "11"
    assert any("fixed performance mode not available" in m for m in messages)
    assert not os.path.exists(os.path.join(sim.fs("SIM-OLD"), "perf_mode"))


def test_offline_device_is_named(sim, recorded):
    sim.add_device("SIM-OFF", state="offline")
    sim.add_device("SIM-A", recorded_output=recorded)
    sim.install(sim.monkeypatch)
    ready, problems = android.select_devices(client())
    assert ready == ["SIM-A"]
    assert problems == ["SIM-OFF: offline: the device is not responding to adb (replug it or restart adbd)"]
    ready, problems = android.select_devices(client(), ["SIM-GONE"])
    assert ready == [] and problems == ["SIM-GONE: not attached (attached: SIM-OFF, SIM-A)"]
