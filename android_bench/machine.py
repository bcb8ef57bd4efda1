"""Description of the host a benchmark ran on: CPU, cores, OS, Python and runtime versions."""
from __future__ import annotations

import importlib.metadata
import os
import platform

from .timing import allowed_cpus

_RUNTIME_PACKAGES = ("ai-edge-litert", "tflite-runtime", "tensorflow", "tensorflow-cpu", "tf-keras", "numpy")
_INTERESTING_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx512_bf16", "amx_int8", "asimd", "asimddp", "sve",
                      "i8mm")


def read_cpuinfo(path="/proc/cpuinfo"):
    """First value of each key in /proc/cpuinfo (x86 names the CPU in `model name`, ARM in `Hardware`/`CPU part`)."""
    info = {}
    try:
        with open(path) as f:
            for line in f:
                key, sep, value = line.partition(":")
                if sep:
                    info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return info


def cpu_model(info):
    for key in ("model name", "Hardware", "Model", "cpu model", "Processor"):
        if info.get(key):
            # Hypervisors often report only "AMD EPYC": family/model tell a 2017 Zen 1 from a Zen 4.
            if "cpu family" in info and "model" in info:
                return f"{info[key]} (family {info['cpu family']} model {info['model']})"
            return info[key]
    if "CPU implementer" in info:
        return f"ARM implementer {info['CPU implementer']} part {info.get('CPU part', '?')}"
    return platform.processor() or platform.machine()


def package_versions(names=_RUNTIME_PACKAGES):
    versions = {}
    for name in names:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            continue
    return versions


def describe(cpuinfo_path="/proc/cpuinfo"):
    info = read_cpuinfo(cpuinfo_path)
    flags = set((info.get("flags") or info.get("Features") or "").split())
    return {
        "cpu": cpu_model(info),
        "arch": platform.machine(),
        "logical_cores": os.cpu_count(),
        "usable_cores": len(allowed_cpus()),
        "cpu_flags": [f for f in _INTERESTING_FLAGS if f in flags],
        "os": platform.platform(),
        "python": platform.python_version(),
        "packages": package_versions(),
    }


def one_line(machine):
    flags = ",".join(machine.get("cpu_flags") or []) or "-"
    return (f"{machine['cpu']} ({machine['arch']}, {machine['usable_cores']}/{machine['logical_cores']} cores usable, "
            f"{flags}); {machine['os']}; Python {machine['python']}")
