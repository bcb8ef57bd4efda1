"""A thin, careful wrapper around the `adb` client.

Every device-side command is given as an argument list and joined with `shlex.join`, because
`adb shell` hands its arguments to the device's shell as one string: an unquoted model name with a
space, a quote or a `;` would be split or executed. adb's own failures are sorted into: the device is
gone, unauthorized, offline, or a transient transport failure (retried); anything else is the device
command's own exit status, returned to the caller.
"""
from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass, field

INSTALL_HINT = ("install the Android platform tools (Debian/Ubuntu: `apt-get install adb`; otherwise the SDK "
                "platform-tools from developer.android.com) or pass --adb PATH")

# adb prints its own errors as "error: ..." or "adb: error: ..." at the start of a line.
_ADB_ERROR = re.compile(r"^(?:adb: )?error: (.*)$", re.MULTILINE)
_GONE = re.compile(r"device '.*' not found|no devices/emulators found|device not found|device still connecting")
_UNAUTHORIZED = re.compile(r"unauthorized")
_OFFLINE = re.compile(r"device offline")
_TRANSIENT = re.compile(r"closed|protocol fault|connection reset|broken pipe|failed to read|failed to get feature set"
                        r"|cannot connect to daemon", re.IGNORECASE)

STATE_HELP = {
    "device": "ready",
    "unauthorized": "unauthorized: accept the 'Allow USB debugging' prompt on the device, then retry",
    "offline": "offline: the device is not responding to adb (replug it or restart adbd)",
    "no permissions": "no permissions: the host user may not open the USB device (udev rules / plugdev group)",
    "recovery": "in recovery mode, not booted",
    "sideload": "in sideload mode, not booted",
    "bootloader": "in the bootloader, not booted",
    "authorizing": "authorizing: wait for the device to finish the USB debugging handshake",
    "connecting": "connecting: the transport is not up yet",
}


class AdbError(RuntimeError):
    """An adb failure; `serial` names the device when one was addressed."""

    def __init__(self, message, serial=None):
        super().__init__(f"{serial}: {message}" if serial else message)
        self.serial = serial


class AdbNotFound(AdbError):
    pass


class DeviceGone(AdbError):
    """The device is not (or no longer) attached."""


class DeviceUnauthorized(AdbError):
    pass


class TransientAdbError(AdbError):
    """A transport hiccup ("error: closed", an offline blip): the call may succeed when repeated."""


@dataclass
class DeviceEntry:
    serial: str
    state: str
    details: dict = field(default_factory=dict)  # product/model/device/transport_id from `adb devices -l`

    @property
    def ready(self):
        return self.state == "device"

    @property
    def state_help(self):
        return STATE_HELP.get(self.state, f"state '{self.state}'")


def find_adb(adb=None):
    """Path of the adb client: `adb` argument, else $ADB, else `adb` on PATH."""
    name = adb or os.environ.get("ADB") or "adb"
    path = shutil.which(name)
    if path is None:
        raise AdbNotFound(f"adb client {name!r} not found: {INSTALL_HINT}")
    return path


def parse_devices(text):
    """Parse `adb devices -l` output; daemon start-up chatter ("* daemon ...") is ignored."""
    entries = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("*") or line.startswith("List of devices") or line.startswith("adb "):
            continue
        serial, _, rest = line.partition("\t") if "\t" in line else line.partition(" ")
        fields = rest.split()
        if not fields:
            continue
        # states can be two words ("no permissions ..."); details are key:value tokens
        state_words = [w for w in fields if ":" not in w or w.startswith("(")]
        details = dict(w.split(":", 1) for w in fields if ":" in w and not w.startswith("("))
        state = "no permissions" if fields[:2] == ["no", "permissions"] else (state_words[0] if state_words else "")
        entries.append(DeviceEntry(serial.strip(), state, details))
    return entries


def classify(output, serial=None):
    """The AdbError for adb's own error message in `output`, or None when adb reported none."""
    messages = _ADB_ERROR.findall(output)
    if not messages:
        return None
    message = messages[-1].strip()
    if _GONE.search(message):
        return DeviceGone(f"device not found ({message})", serial)
    if _UNAUTHORIZED.search(message):
        return DeviceUnauthorized(f"device unauthorized: {STATE_HELP['unauthorized'].split(': ', 1)[1]}", serial)
    if _OFFLINE.search(message) or _TRANSIENT.search(message):
        return TransientAdbError(f"adb transport failure: {message}", serial)
    return AdbError(f"adb failed: {message}", serial)


class Adb:
    """Run adb commands with retries on transient failures.

    `retries` is the number of extra attempts after a transient failure; `retry_delay` seconds grows
    linearly between attempts. `port` selects the adb server (`-P`), which tests use to keep a private one.
    """

    def __init__(self, adb=None, *, timeout=900.0, retries=2, retry_delay=1.0, port=None, log=None):
        self.path = find_adb(adb)
        self.timeout = timeout
        self.retries = retries
        self.retry_delay = retry_delay
        self.port = port
        self.log = log or (lambda message: None)

    def _argv(self, args, serial=None):
        argv = [self.path]
        if self.port is not None:
            argv += ["-P", str(self.port)]
        if serial is not None:
            argv += ["-s", serial]
        return argv + list(args)

    def _once(self, args, serial, timeout):
        try:
            proc = subprocess.run(self._argv(args, serial), capture_output=True, text=True, errors="replace",
                                  timeout=timeout or self.timeout, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as exc:
            raise AdbError(f"adb {args[0]} timed out after {exc.timeout:.0f} s", serial) from None
        if proc.returncode != 0:
            error = classify(proc.stderr + "\n" + proc.stdout, serial)
            if error is not None:
                raise error
        return proc

    def call(self, args, serial=None, timeout=None):
        """Run `adb [-s serial] ARGS...`; returns the CompletedProcess (the device command's rc is not checked)."""
        attempt = 0
        while True:
            try:
                return self._once(args, serial, timeout)
            except TransientAdbError as exc:
                if attempt >= self.retries:
                    raise
                attempt += 1
                self.log(f"{exc}; retrying ({attempt}/{self.retries})")
                time.sleep(self.retry_delay * attempt)

    def version(self):
        first = self.call(["version"]).stdout.splitlines()
        return first[0].strip() if first else ""

    def devices(self):
        return parse_devices(self.call(["devices", "-l"]).stdout)

    def device(self, serial):
        return Device(self, serial)


class CommandFailed(AdbError):
    def __init__(self, argv, proc, serial):
        text = (proc.stderr or proc.stdout or "").strip().splitlines()
        super().__init__(f"`{shlex.join(argv)}` exited {proc.returncode}: {text[-1] if text else 'no output'}", serial)
        self.returncode = proc.returncode
        self.output = (proc.stdout or "") + (proc.stderr or "")


class Device:
    """One attached device, addressed by serial."""

    def __init__(self, adb, serial):
        self.adb = adb
        self.serial = serial

    def shell(self, argv, *, check=True, output_file=None, timeout=None):
        """Run one device command given as an argument list; every element is quoted.

        `output_file` redirects the command's stdout and stderr to that device path (also quoted).
        """
        if isinstance(argv, str):
            raise TypeError("Device.shell takes an argument list, not a command string")
        command = shlex.join(str(a) for a in argv)
        if output_file is not None:
            command += f" > {shlex.quote(output_file)} 2>&1"
        proc = self.adb.call(["shell", command], self.serial, timeout)
        if check and proc.returncode != 0:
            raise CommandFailed(argv, proc, self.serial)
        return proc

    def push(self, local, remote):
        proc = self.adb.call(["push", os.fspath(local), remote], self.serial)
        if proc.returncode != 0:
            raise AdbError(f"push {local} -> {remote} failed: {(proc.stderr or proc.stdout).strip()}", self.serial)

    def pull(self, remote, local):
        proc = self.adb.call(["pull", remote, os.fspath(local)], self.serial)
        if proc.returncode != 0:
            raise AdbError(f"pull {remote} failed: {(proc.stderr or proc.stdout).strip()}", self.serial)
