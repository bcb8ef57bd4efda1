"""Benchmark .tflite models on Android devices over adb with a user-supplied `benchmark_model` binary.

Per device: read its facts (model, SoC, ABI, Android version, per-core max frequency, governor, thermal
status), push the models and the binary into a private directory under /data/local/tmp, pin the run to
the big cores with `taskset`, optionally enable fixed performance mode, run each variant with its output
redirected to a device file, pull and parse that file, and always clean up. Devices run in parallel; a
device that disappears is reported and the others carry on.
"""
from __future__ import annotations

import concurrent.futures
import os
import posixpath
import re
import tempfile
import uuid
from dataclasses import dataclass, field

from export.loading import file_sha256

from . import parser
from .adb import AdbError, DeviceGone, DeviceUnauthorized

THERMAL_STATUS = {0: "none", 1: "light", 2: "moderate", 3: "severe", 4: "critical", 5: "emergency", 6: "shutdown"}
ELF_MACHINE = {3: "x86", 40: "arm", 62: "x86_64", 183: "arm64"}
ABI_MACHINE = {"arm64-v8a": "arm64", "armeabi-v7a": "arm", "armeabi": "arm", "x86": "x86", "x86_64": "x86_64"}
DELEGATE_FLAGS = {
    "xnnpack": ["--use_xnnpack=true"],
    "cpu": ["--use_xnnpack=false"],      # built-in kernels only
    "gpu": ["--use_gpu=true"],
    "nnapi": ["--use_nnapi=true"],
}
_CPU_SYSFS = "/sys/devices/system/cpu"
_GETPROP = re.compile(r"^\[([^\]]+)\]: \[(.*)\]$")
_THERMAL = re.compile(r"Thermal Status:\s*(\d+)")
_CMD_FAILURE = re.compile(r"error|exception|failure|unknown command", re.IGNORECASE)


class BenchSetupError(ValueError):
    """Bad input found before any device is touched (missing binary, wrong architecture)."""


@dataclass(frozen=True)
class AndroidOptions:
    benchmark_binary: str
    threads: tuple = (1,)
    delegates: tuple = ("xnnpack",)
    num_runs: int = 50
    warmup_runs: int = 10
    min_secs: float = 1.0
    warmup_min_secs: float = 0.5
    fixed_performance: bool = False
    taskset: bool = True
    remote_base: str = "/data/local/tmp"
    extra_flags: tuple = ()

    def __post_init__(self):
        unknown = set(self.delegates) - set(DELEGATE_FLAGS)
        if unknown:
            raise BenchSetupError(f"--delegate: unknown {sorted(unknown)}; expected one of {sorted(DELEGATE_FLAGS)}")


@dataclass
class ModelInfo:
    """A model to benchmark as the host knows it (mode is read on the host, see runtimes.infer_mode)."""
    path: str
    mode: str = "unknown"
    name: str = None
    size_bytes: int = None
    sha256: str = None

    def __post_init__(self):
        self.name = self.name or os.path.basename(self.path).rsplit(".", 1)[0]
        if self.size_bytes is None and os.path.isfile(self.path):
            self.size_bytes = os.path.getsize(self.path)


@dataclass
class DeviceReport:
    serial: str
    rows: list = field(default_factory=list)
    error: str = None          # why this device stopped early, if it did
    status: str = "ok"         # ok | device_lost | unauthorized | failed


# -- parsing device answers ------------------------------------------------------------------------------
def parse_getprop(text):
    props = {}
    for line in text.splitlines():
        match = _GETPROP.match(line.strip())
        if match:
            props[match.group(1)] = match.group(2)
    return props


def parse_cpu_list(text):
    """'0-3,6' -> [0, 1, 2, 3, 6] (the format of /sys/devices/system/cpu/possible)."""
    cpus = []
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        cpus.extend(range(int(lo), int(hi or lo) + 1))
    return cpus


def parse_grep_h(text):
    """`grep -H . FILES` -> {path: first line}; unreadable files (offline cores) are simply absent."""
    values = {}
    for line in text.splitlines():
        path, sep, value = line.partition(":")
        if sep and path not in values:
            values[path] = value.strip()
    return values


def parse_thermal(text):
    match = _THERMAL.search(text)
    if not match:
        return None
    level = int(match.group(1))
    return {"level": level, "name": THERMAL_STATUS.get(level, f"level {level}")}


def big_cores(max_freq_khz, threads):
    """Cores at least as fast as the `threads`-th fastest one (all of a cluster, so the OS can balance).

    With 4 little + 3 big + 1 prime cores: 1 thread -> the prime core; 2 to 4 threads -> prime + big.
    """
    if not max_freq_khz:
        return []
    ranked = sorted(max_freq_khz.items(), key=lambda item: (-item[1], item[0]))
    cutoff = ranked[min(threads, len(ranked)) - 1][1]
    return sorted(core for core, freq in max_freq_khz.items() if freq >= cutoff)


def cpu_mask(cores):
    return format(sum(1 << core for core in cores), "x")


def elf_machine(path):
    """Architecture of an ELF executable, or None for anything else (e.g. a shell script)."""
    with open(path, "rb") as f:
        header = f.read(20)
    if len(header) < 20 or header[:4] != b"\x7fELF":
        return None
    little = header[5] == 1
    return ELF_MACHINE.get(int.from_bytes(header[18:20], "little" if little else "big"), "unknown")


# -- device discovery -------------------------------------------------------------------------------------
def select_devices(adb, serials=()):
    """(ready serials, problems): problems name each requested/attached device that cannot be used, and why."""
    entries = {entry.serial: entry for entry in adb.devices()}
    problems = []
    wanted = list(serials) or list(entries)
    if not entries:
        return [], ["no Android device attached (`adb devices` lists none)"]
    ready = []
    for serial in wanted:
        entry = entries.get(serial)
        if entry is None:
            problems.append(f"{serial}: not attached (attached: {', '.join(entries) or 'none'})")
        elif not entry.ready:
            problems.append(f"{serial}: {entry.state_help}")
        else:
            ready.append(serial)
    return ready, problems


def device_facts(device):
    """Model, SoC, ABI, Android version, per-core max frequency and governor, thermal status."""
    props = parse_getprop(device.shell(["getprop"]).stdout)
    possible = device.shell(["cat", f"{_CPU_SYSFS}/possible"], check=False).stdout
    cores = parse_cpu_list(possible) if possible.strip() else []
    paths = []
    for core in cores:
        paths += [f"{_CPU_SYSFS}/cpu{core}/cpufreq/cpuinfo_max_freq", f"{_CPU_SYSFS}/cpu{core}/cpufreq/scaling_governor"]
    values = parse_grep_h(device.shell(["grep", "-H", "."] + paths, check=False).stdout) if paths else {}
    max_freq, governor = {}, {}
    for core in cores:
        freq = values.get(f"{_CPU_SYSFS}/cpu{core}/cpufreq/cpuinfo_max_freq")
        if freq and freq.isdigit():
            max_freq[core] = int(freq)
        gov = values.get(f"{_CPU_SYSFS}/cpu{core}/cpufreq/scaling_governor")
        if gov:
            governor[core] = gov
    return {
        "serial": device.serial,
        "manufacturer": props.get("ro.product.manufacturer"),
        "model": props.get("ro.product.model"),
        "soc": props.get("ro.soc.model") or props.get("ro.board.platform") or props.get("ro.hardware"),
        "soc_manufacturer": props.get("ro.soc.manufacturer"),
        "abi": props.get("ro.product.cpu.abi"),
        "android": props.get("ro.build.version.release"),
        "sdk": props.get("ro.build.version.sdk"),
        "cores": len(cores),
        "max_freq_khz": max_freq,
        "governor": governor,
        "thermal": thermal_status(device),
    }


def thermal_status(device):
    return parse_thermal(device.shell(["dumpsys", "thermalservice"], check=False).stdout)


# -- one device -------------------------------------------------------------------------------------------
def check_binary(path, abis=None):
    """Fail early on a missing binary, or one built for an architecture none of the devices runs."""
    if not path:
        raise BenchSetupError("--benchmark-binary is required for --target android: build or download "
                              "benchmark_model for the device's ABI elsewhere and pass its path")
    if not os.path.isfile(path):
        raise BenchSetupError(f"--benchmark-binary {path}: file not found")
    machine = elf_machine(path)
    if machine is not None and abis:
        wanted = {ABI_MACHINE.get(abi) for abi in abis}
        if machine not in wanted:
            raise BenchSetupError(f"--benchmark-binary {path}: built for {machine}, but the device ABI is "
                                  f"{', '.join(sorted(a for a in abis if a))}")
    return machine


def run_flags(model_remote, threads, delegate, options):
    return ([f"--graph={model_remote}", f"--num_threads={threads}"] + DELEGATE_FLAGS[delegate] +
            [f"--num_runs={options.num_runs}", f"--warmup_runs={options.warmup_runs}",
             f"--min_secs={options.min_secs:g}", f"--warmup_min_secs={options.warmup_min_secs:g}"] +
            list(options.extra_flags))


def _row(model, facts, threads, delegate, cores, result, binary_sha, thermal_after, rc):
    stats = result.inference
    warnings = []
    if result.unconsumed_flags:
        warnings.append("unconsumed cmdline flags: " + " ".join(result.unconsumed_flags))
    warnings += [f"delegate failed: {line}" for line in result.delegate_failures]
    warnings += [f"partial delegation: {line}" for line in result.partial_delegation]
    status = "ok"
    if not result.ok or rc != 0:
        status = "failed"
    elif delegate in ("gpu", "nnapi") and (result.delegate_failures or not result.delegations):
        status = "delegate_failed"  # the figures are then CPU figures, not the delegate's
    return {
        "target": f"android:{facts['serial']}",
        "model": model.name, "model_path": model.path, "mode": model.mode, "size_bytes": model.size_bytes,
        "runtime": "benchmark_model", "runtime_version": f"{result.dialect or 'unknown'} sha256:{binary_sha[:12]}",
        "backend": delegate, "threads": threads, "cpus": cores, "cpu_mask": cpu_mask(cores) if cores else None,
        "partitions": result.partitions, "delegations": [vars(d) for d in result.delegations],
        "init_ms": result.init_ms, "first_ms": result.first_ms,
        "mean_ms": result.avg_ms,
        "median_ms": stats.median_ms if stats else None,
        "p90_ms": None, "p99_ms": None,  # benchmark_model prints no such percentiles
        "p5_ms": stats.p5_ms if stats else None, "p95_ms": stats.p95_ms if stats else None,
        "std_ms": stats.std_ms if stats else None, "min_ms": stats.min_ms if stats else None,
        "max_ms": stats.max_ms if stats else None, "runs": stats.count if stats else None,
        "memory": result.memory, "thermal_before": facts.get("thermal"), "thermal_after": thermal_after,
        "status": status, "exit_code": rc, "warnings": warnings, "errors": result.errors,
        "machine": {k: v for k, v in facts.items() if k != "thermal"},
    }


class DeviceSession:
    """Everything done on one device, with its private remote directory."""

    def __init__(self, device, options, log):
        self.device = device
        self.options = options
        self.log = lambda message: log(f"[{device.serial}] {message}")
        self.remote_dir = posixpath.join(options.remote_base, f"mobilecnn-bench-{uuid.uuid4().hex[:8]}")
        self.binary_remote = posixpath.join(self.remote_dir, "benchmark_model")
        self.performance_mode = False

    def prepare(self, models):
        self.device.shell(["mkdir", "-p", self.remote_dir])
        self.device.push(self.options.benchmark_binary, self.binary_remote)
        self.device.shell(["chmod", "755", self.binary_remote])
        remote = {}
        for model in models:
            remote[model.path] = posixpath.join(self.remote_dir, os.path.basename(model.path))
            self.device.push(model.path, remote[model.path])
        if self.options.fixed_performance:
            proc = self.device.shell(["cmd", "power", "set-fixed-performance-mode-enabled", "true"], check=False)
            self.performance_mode = proc.returncode == 0 and not _CMD_FAILURE.search(proc.stdout + proc.stderr)
            if not self.performance_mode:
                self.log("fixed performance mode not available (needs Android 12+ and permission); running without")
        return remote

    def run(self, model, model_remote, threads, delegate, facts, binary_sha, workdir):
        cores = big_cores(facts["max_freq_khz"], threads) if self.options.taskset else []
        argv = [self.binary_remote] + run_flags(model_remote, threads, delegate, self.options)
        if cores:
            argv = ["taskset", cpu_mask(cores)] + argv
        output_remote = posixpath.join(self.remote_dir, f"out-{uuid.uuid4().hex[:8]}.txt")
        self.log(f"{model.name} threads={threads} {delegate}" + (f" mask={cpu_mask(cores)}" if cores else ""))
        rc = self.device.shell(argv, check=False, output_file=output_remote).returncode
        local = os.path.join(workdir, os.path.basename(output_remote))
        self.device.pull(output_remote, local)
        with open(local, encoding="utf-8", errors="replace") as f:
            text = f.read()
        result = parser.parse(text)
        row = _row(model, facts, threads, delegate, cores, result, binary_sha, thermal_status(self.device), rc)
        row["output_tail"] = text.splitlines()[-15:]
        return row

    def cleanup(self):
        if self.performance_mode:
            self.device.shell(["cmd", "power", "set-fixed-performance-mode-enabled", "false"], check=False)
        self.device.shell(["rm", "-rf", self.remote_dir], check=False)


def benchmark_device(adb, serial, models, options, log=print):
    """All variants of all models on one device; never raises for device trouble (see DeviceReport)."""
    report = DeviceReport(serial)
    session = DeviceSession(adb.device(serial), options, log)
    prepared = False
    try:
        binary_sha = file_sha256(options.benchmark_binary)
        facts = device_facts(session.device)
        check_binary(options.benchmark_binary, [facts["abi"]] if facts["abi"] else None)
        prepared = True
        remote = session.prepare(models)
        with tempfile.TemporaryDirectory(prefix="mobilecnn-bench-") as workdir:
            for model in models:
                for threads in options.threads:
                    for delegate in options.delegates:
                        report.rows.append(session.run(model, remote[model.path], threads, delegate, facts,
                                                       binary_sha, workdir))
    except DeviceGone as exc:
        report.status, report.error, prepared = "device_lost", str(exc), False
        session.log(f"device lost after {len(report.rows)} run(s): {exc}")
    except DeviceUnauthorized as exc:
        report.status, report.error, prepared = "unauthorized", str(exc), False
    except (AdbError, BenchSetupError, OSError) as exc:
        report.status, report.error = "failed", str(exc)
        session.log(str(exc))
    finally:
        if prepared:
            try:
                session.cleanup()
            except AdbError as exc:  # cleanup must not hide the run's own outcome
                session.log(f"cleanup failed: {exc}")
    return report


def benchmark_devices(adb, serials, models, options, log=print):
    """Run every device in parallel; returns one DeviceReport per serial, in the given order."""
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, len(serials))) as pool:
        futures = [pool.submit(benchmark_device, adb, serial, models, options, log) for serial in serials]
        return [future.result() for future in futures]
