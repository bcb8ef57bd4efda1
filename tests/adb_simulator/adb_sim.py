"""ADB DEVICE SIMULATOR -- a test double, not the real adb client.

Installed by the test fixture as an executable named `adb` in a temporary directory placed first on
PATH. It implements the adb subcommands android_bench uses -- `version`, `devices [-l]`, `push`, `pull`,
`shell`, `start-server`, `kill-server` (with the global `-s SERIAL` and `-P PORT` options) -- against
simulated devices described in `$ADB_SIM_ROOT/devices.json`:

    {"devices": [{"serial": "SIM-A", "state": "device",
                  "props": {"ro.product.model": "...", ...},
                  "max_freq_khz": [1800000, ...], "governor": "schedutil", "thermal_status": 0,
                  "recorded_output": "/path/to/benchmark_model-output.txt",
                  "faults": {"transient_run_failures": 1, "vanish_on_run": 2, "noexec": true,
                             "perf_mode": false, "run_seconds": 0.3}}]}

Each device's storage is the directory `$ADB_SIM_ROOT/fs/SERIAL/`. `adb shell` works like the real
thing: its arguments are joined with spaces into one string that a real POSIX shell (`/bin/sh -c`)
executes, so quoting mistakes in the caller are real mistakes here. Before that, the device path
prefixes /data/local/tmp and /sys/devices/system/cpu are redirected into the device's directory, and
fake device tools (getprop, dumpsys, cmd, taskset, chmod) come first on the shell's PATH. The
benchmark binary that the caller pushes runs as it is (tests push tests/adb_simulator/
fake_benchmark_model, which replays the device's `recorded_output`). Every call is appended to
`$ADB_SIM_ROOT/calls.jsonl`, and each device's fault counters live in `$ADB_SIM_ROOT/state/SERIAL.json`.
"""
import json
import os
import shutil
import subprocess
import sys
import time

ROOT = os.environ.get("ADB_SIM_ROOT")
DEVICE_PREFIXES = ("/data/local/tmp", "/sys/devices/system/cpu")

FAKE_TOOLS = {
    # getprop with no argument dumps "[key]: [value]" lines, with one prints the value
    "getprop": '#!/bin/sh\nif [ -z "$1" ]; then cat "$ADB_SIM_FS/props.txt"; '
               'else sed -n "s/^\\[$1\\]: \\[\\(.*\\)\\]$/\\1/p" "$ADB_SIM_FS/props.txt"; fi\n',
    "dumpsys": '#!/bin/sh\nif [ "$1" = thermalservice ]; then cat "$ADB_SIM_FS/thermal.txt"; '
               'else echo "Can\'t find service: $1"; fi\n',
    "cmd": '#!/bin/sh\nif [ "$1 $2" = "power set-fixed-performance-mode-enabled" ] && [ -f "$ADB_SIM_FS/perf_mode_ok" ]; '
           'then echo "$3" > "$ADB_SIM_FS/perf_mode"; exit 0; fi\n'
           'echo "cmd: Failure calling service $1: Unknown command"; exit 255\n',
    # record the mask, then run the command (the host's taskset would apply a phone's mask to this host)
    "taskset": '#!/bin/sh\necho "$1" >> "$ADB_SIM_FS/taskset.log"\nshift\nexec "$@"\n',
    "chmod": '#!/bin/sh\nif [ -f "$ADB_SIM_FS/noexec" ]; then exit 0; fi\nexec /bin/chmod "$@"\n',
}


def load_config():
    with open(os.path.join(ROOT, "devices.json")) as f:
        return {device["serial"]: device for device in json.load(f)["devices"]}


def log_call(argv, serial, extra=None):
    entry = {"argv": argv, "serial": serial, "time": time.time()}
    entry.update(extra or {})
    with open(os.path.join(ROOT, "calls.jsonl"), "a") as f:
        f.write(json.dumps(entry) + "\n")


def load_state(serial):
    path = os.path.join(ROOT, "state", serial + ".json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    return {"runs": 0, "gone": False}


def save_state(serial, state):
    os.makedirs(os.path.join(ROOT, "state"), exist_ok=True)
    path = os.path.join(ROOT, "state", serial + ".json")
    with open(path + ".tmp", "w") as f:
        json.dump(state, f)
    os.replace(path + ".tmp", path)


def device_fs(device):
    """Create (once) and return the device's storage directory."""
    fs = os.path.join(ROOT, "fs", device["serial"])
    if os.path.isdir(fs):
        return fs
    os.makedirs(os.path.join(fs, "data/local/tmp"))
    os.makedirs(os.path.join(fs, "bin"))
    for name, text in FAKE_TOOLS.items():
        path = os.path.join(fs, "bin", name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, 0o755)
    with open(os.path.join(fs, "props.txt"), "w") as f:
        for key, value in sorted(device.get("props", {}).items()):
            f.write(f"[{key}]: [{value}]\n")
    with open(os.path.join(fs, "thermal.txt"), "w") as f:
        f.write(f"IsStatusOverride: false\nThermal Status: {device.get('thermal_status', 0)}\n")
    freqs = device.get("max_freq_khz", [])
    cpu = os.path.join(fs, "sys/devices/system/cpu")
    os.makedirs(cpu)
    with open(os.path.join(cpu, "possible"), "w") as f:
        f.write(f"0-{len(freqs) - 1}\n" if freqs else "")
    for index, freq in enumerate(freqs):
        os.makedirs(os.path.join(cpu, f"cpu{index}/cpufreq"))
        with open(os.path.join(cpu, f"cpu{index}/cpufreq/cpuinfo_max_freq"), "w") as f:
            f.write(f"{freq}\n")
        with open(os.path.join(cpu, f"cpu{index}/cpufreq/scaling_governor"), "w") as f:
            f.write(device.get("governor", "schedutil") + "\n")
    faults = device.get("faults", {})
    if faults.get("noexec"):
        open(os.path.join(fs, "noexec"), "w").close()
    if faults.get("perf_mode", True):
        open(os.path.join(fs, "perf_mode_ok"), "w").close()
    return fs


def local_path(fs, remote):
    for prefix in DEVICE_PREFIXES:
        if remote == prefix or remote.startswith(prefix + "/"):
            return fs + remote
    return None


def fail(message, code=1):
    sys.stderr.write(message + "\n")
    sys.exit(code)


def cmd_devices(config, long_format):
    print("List of devices attached")
    for transport, (serial, device) in enumerate(config.items(), start=1):
        if load_state(serial)["gone"]:
            continue
        line = f"{serial}\t{device.get('state', 'device')}"
        if long_format:
            model = device.get("props", {}).get("ro.product.model", "SIM").replace(" ", "_")
            line = f"{serial:<22} {device.get('state', 'device')} product:sim model:{model} device:sim " \
                   f"transport_id:{transport}"
        print(line)
    print()


def pick_device(config, serial):
    present = {s: d for s, d in config.items() if not load_state(s)["gone"]}
    if serial is None:
        if not present:
            fail("adb: no devices/emulators found")
        if len(present) > 1:
            fail("adb: error: more than one device/emulator")
        serial = next(iter(present))
    if serial not in present:
        fail(f"adb: error: device '{serial}' not found")
    device = present[serial]
    state = device.get("state", "device")
    if state == "unauthorized":
        fail("adb: error: device unauthorized.\nThis adb server's $ADB_VENDOR_KEYS is not set\n"
             "Try 'adb kill-server' if that seems wrong.\n"
             "Otherwise check for a confirmation dialog on your device.")
    if state == "offline":
        fail("adb: error: device offline")
    return device


def cmd_push(device, local, remote):
    fs = device_fs(device)
    target = local_path(fs, remote)
    if target is None:
        fail(f"adb: error: failed to copy '{local}' to '{remote}': remote Read-only file system")
    if not os.path.isfile(local):
        fail(f"adb: error: cannot stat '{local}': No such file or directory")
    if os.path.isdir(target):
        target = os.path.join(target, os.path.basename(local))
    shutil.copyfile(local, target)  # like adb push to /data/local/tmp, the file lands without exec permission
    size = os.path.getsize(local)
    print(f"{local}: 1 file pushed, 0 skipped. 10.0 MB/s ({size} bytes in 0.001s)")


def cmd_pull(device, remote, local):
    fs = device_fs(device)
    source = local_path(fs, remote)
    if source is None or not os.path.isfile(source):
        fail(f"adb: error: failed to stat remote object '{remote}': No such file or directory")
    shutil.copyfile(source, local)
    print(f"{remote}: 1 file pulled, 0 skipped. 10.0 MB/s ({os.path.getsize(local)} bytes in 0.001s)")


def cmd_shell(device, words):
    fs = device_fs(device)
    command = " ".join(words)  # what the real client does with several shell arguments
    serial = device["serial"]
    faults = device.get("faults", {})
    is_run = "benchmark_model" in command and "--graph=" in command
    if is_run:
        state = load_state(serial)
        state["runs"] += 1
        save_state(serial, state)
        if state["runs"] <= faults.get("transient_run_failures", 0):
            fail("adb: error: protocol fault (couldn't read status): Connection reset by peer")
        if state["runs"] == faults.get("vanish_on_run"):
            state["gone"] = True
            save_state(serial, state)
            fail("adb: error: closed")
    for prefix in DEVICE_PREFIXES:
        command = command.replace(prefix, fs + prefix)
    env = {
        "PATH": os.path.join(fs, "bin") + ":/usr/bin:/bin",
        "ADB_SIM_FS": fs,
        "ADB_SIM_RECORDED_OUTPUT": device.get("recorded_output", ""),
        "ADB_SIM_RUN_SECONDS": str(faults.get("run_seconds", 0)),
        "ADB_SIM_DEVICE_PREFIX": fs,
    }
    started = time.time()
    proc = subprocess.run(["/bin/sh", "-c", command], cwd=fs, env=env, capture_output=True)
    if is_run:
        log_call(["run"], serial, {"start": started, "end": time.time()})
    text_out = proc.stdout.decode(errors="replace").replace(fs, "")
    text_err = proc.stderr.decode(errors="replace").replace(fs, "")
    sys.stdout.write(text_out)
    sys.stderr.write(text_err)
    sys.exit(proc.returncode)


def main(argv):
    if not ROOT:
        fail("adb simulator: ADB_SIM_ROOT is not set (this is the test simulator, not the real adb)")
    log_call(argv, None)
    serial = os.environ.get("ANDROID_SERIAL")
    args = list(argv)
    while args and args[0] in ("-s", "-P", "-H", "-d", "-e"):
        option = args.pop(0)
        if option in ("-s", "-P", "-H"):
            value = args.pop(0)
            if option == "-s":
                serial = value
    if not args:
        fail("adb: usage: no command specified")
    command, rest = args[0], args[1:]
    config = load_config()
    if command == "version":
        print("Android Debug Bridge version 1.0.41 (SIMULATOR: tests/adb_simulator)")
        print("Version 0.0.0-simulator")
    elif command == "devices":
        cmd_devices(config, "-l" in rest)
    elif command in ("start-server", "kill-server"):
        pass
    elif command == "push":
        cmd_push(pick_device(config, serial), rest[0], rest[1])
    elif command == "pull":
        cmd_pull(pick_device(config, serial), rest[0], rest[1])
    elif command == "shell":
        cmd_shell(pick_device(config, serial), rest)
    else:
        fail(f"adb: unknown command {command} (the simulator implements version, devices, push, pull, shell)")


if __name__ == "__main__":
    main(sys.argv[1:])
