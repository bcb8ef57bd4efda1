"""Test helper that installs the ADB DEVICE SIMULATOR (adb_sim.py) as `adb` first on PATH.

It is a simulator for tests only: the real client is Debian's `adb` package (see the README). Use:

    sim = AdbSimulator(tmp_path)
    sim.add_device("SIM-A", recorded_output=path)
    sim.install(monkeypatch)        # PATH and ADB_SIM_ROOT for this test only
"""
import json
import os
import stat
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
FAKE_BENCHMARK_MODEL = os.path.join(HERE, "fake_benchmark_model")

# A phone-like layout: 4 little cores, 3 big, 1 prime (as on recent Snapdragon SoCs).
DEFAULT_FREQS = [1804800] * 4 + [2419200] * 3 + [3187200]


class AdbSimulator:
    def __init__(self, tmp_path):
        self.root = os.path.join(os.fspath(tmp_path), "adb_sim")
        self.bin = os.path.join(self.root, "bin")
        os.makedirs(self.bin, exist_ok=True)
        self.devices = []

    def add_device(self, serial, *, state="device", recorded_output="", faults=None, props=None,
                   max_freq_khz=DEFAULT_FREQS, thermal_status=0):
        base_props = {
            "ro.product.manufacturer": "SimCorp", "ro.product.model": f"Simulated Phone {serial}",
            "ro.soc.model": "SM8550", "ro.product.cpu.abi": "arm64-v8a",
            "ro.build.version.release": "14", "ro.build.version.sdk": "34",
        }
        base_props.update(props or {})
        self.devices.append({"serial": serial, "state": state, "props": base_props,
                             "max_freq_khz": list(max_freq_khz), "governor": "schedutil",
                             "thermal_status": thermal_status, "recorded_output": os.fspath(recorded_output),
                             "faults": faults or {}})

    def install(self, monkeypatch):
        with open(os.path.join(self.root, "devices.json"), "w") as f:
            json.dump({"devices": self.devices}, f)
        wrapper = os.path.join(self.bin, "adb")
        with open(os.path.join(HERE, "adb_sim.py")) as f:
            source = f.read()
        with open(wrapper, "w") as f:
            f.write(f"#!{sys.executable}\n" + source)
        os.chmod(wrapper, os.stat(wrapper).st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        monkeypatch.setenv("PATH", self.bin + os.pathsep + os.environ.get("PATH", ""))
        monkeypatch.setenv("ADB_SIM_ROOT", self.root)
        monkeypatch.delenv("ADB", raising=False)
        monkeypatch.delenv("ANDROID_SERIAL", raising=False)
        return wrapper

    def calls(self):
        path = os.path.join(self.root, "calls.jsonl")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return [json.loads(line) for line in f]

    def fs(self, serial):
        return os.path.join(self.root, "fs", serial)

    def device_files(self, serial):
        """Every file under the device's /data/local/tmp, relative to it."""
        top = os.path.join(self.fs(serial), "data/local/tmp")
        found = []
        for dirpath, _, files in os.walk(top):
            found += [os.path.relpath(os.path.join(dirpath, name), top) for name in files]
        return found

    def taskset_masks(self, serial):
        path = os.path.join(self.fs(serial), "taskset.log")
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return f.read().split()
