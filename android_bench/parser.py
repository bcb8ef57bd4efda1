"""Parser for the output of TFLite / LiteRT `benchmark_model`.

Two dialects exist:

* classic TFLite (`tensorflow/lite/tools/benchmark`): `count=N first=.. curr=.. min=.. max=.. avg=.. std=..`
  stat lines in microseconds (the first one is the warm-up, the last one the measured run), an
  `Inference timings in us: Init: ..` summary, and memory lines that changed over the years;
* LiteRT 2.x (`benchmark_litert_model`): a `========== BENCHMARK RESULTS ==========` block in milliseconds.

Output reaches us through many pipes (plain stdout, `adb shell` ptys with `\\r`, logcat in several
formats, absl/`INFO:` prefixes), so every line is first stripped of the known prefixes. All times in the
result are milliseconds, all memory figures megabytes.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field

_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"

# Prefixes a line may carry, tried in order and repeatedly (logcat + "INFO: " can stack).
_PREFIXES = [
    # logcat threadtime: "07-17 12:07:28.122 22646 22646 I tag: msg"
    re.compile(r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\d+\s+[VDIWEFA]\s+[^:]*?:\s?"),
    # logcat time: "07-17 12:07:28.122 I/tag( 1234): msg"
    re.compile(r"^\d\d-\d\d\s+\d\d:\d\d:\d\d\.\d+\s+[VDIWEFA]/[^(]*\(\s*\d+\):\s?"),
    # logcat brief: "I/tflite  ( 1234): msg"
    re.compile(r"^[VDIWEFA]/[^(:]*\(\s*\d+\):\s?"),
    # logcat tag: "tflite  : msg" (only the tool's own tags, so "Graph: [x]" stays intact)
    re.compile(r"^(?:tflite\w*|litert\w*|TfLite\w*|LiteRT\w*)\s*:\s"),
    # absl: "I0717 12:07:28.122345  1234 benchmark.cc:42] msg"
    re.compile(r"^[IWEF]\d{4}\s+\d\d:\d\d:\d\d\.\d+\s+\d+\s+\S+:\d+\]\s?"),
    # TFLite logging: "INFO: msg", "WARNING: msg"
    re.compile(r"^(?:INFO|WARN|WARNING|ERROR|VERBOSE|DEBUG):\s?"),
]

_STAT_KEYS = ("count", "first", "curr", "min", "max", "avg", "std", "p5", "median", "p95")
_STAT_LINE = re.compile(r"(?:^|\s|:)count=(\d+)")
_KV = re.compile(r"\b(\w+)=(" + _NUMBER + r")")
_SUMMARY = re.compile(r"Inference timings in us:\s*(.*)$")
_SUMMARY_ITEM = re.compile(r"([A-Za-z][A-Za-z ()]*?):\s*(" + _NUMBER + ")")
_PARAM = re.compile(r"^([A-Za-z#][^:\[\]]*?):\s*\[(.*)\]\s*$")
_MODEL_SIZE = re.compile(r"The input model file size \(MB\):\s*(" + _NUMBER + ")")
_INIT_SESSION = re.compile(r"Initialized session in\s*(" + _NUMBER + r")\s*ms")
_MEM_OLD = re.compile(r"Peak memory footprint \(MB\):\s*init=(" + _NUMBER + r")\s+overall=(" + _NUMBER + ")")
_MEM_DELTA = re.compile(
    r"Memory footprint delta from the start of the tool \(MB\):\s*init=(" + _NUMBER + r")\s+overall=(" + _NUMBER + ")")
_MEM_PEAK_MONITOR = re.compile(r"Overall peak memory footprint \(MB\) via periodic monitoring:\s*(" + _NUMBER + ")")
_VMRSS = re.compile(r"VmRSS\s*:\s*(" + _NUMBER + r")\s*MB")
_UNCONSUMED = re.compile(r"Unconsumed cmdline flags:\s*(.*)$")
_REPLACING = re.compile(
    r"Replacing (\d+) out of (\d+) node\(s\) with delegate \(([^)]*)\) node, yielding (\d+) partitions")
_EXPLICIT = re.compile(r"Explicitly applied (\S+) delegate, and the model graph will be (completely|partially) "
                       r"executed by the delegate(?: w/ (\d+) delegate kernels)?")
_NOT_EXECUTED = re.compile(r"Though (\S+) delegate is explicitly applied, the model graph will not be executed")
_DELEGATE_FAIL = re.compile(
    r"(Failed to (?:apply|create|initialize|modify graph with) (?:the )?(\S+)? ?delegate[^\n]*"
    r"|(\S+) delegate (?:creation|application) failed[^\n]*"
    r"|Could not (?:apply|create) (?:the )?(\S+) delegate[^\n]*)", re.IGNORECASE)
_FAILURE = re.compile(r"(Benchmarking failed\.|Failed to (?:mmap|load|read|construct|allocate|initialize)[^\n]*"
                      r"|Error: [^\n]*|Model file (?:doesn't|does not) exist[^\n]*|Aborted|Segmentation fault[^\n]*"
                      r"|[^\n]*(?:not found|inaccessible or not found|Permission denied|Exec format error)$)")
_ARGS = re.compile(r"benchmark with args:\s*(.*)$")
_LOADED = re.compile(r"^Loaded model\s+(.*)$")
_LITERT_HEADER = re.compile(r"=+\s*BENCHMARK RESULTS\s*=+")
_LITERT_MS = {
    "init_ms": re.compile(r"^Model initialization:\s*(" + _NUMBER + r")\s*ms"),
    "first_ms": re.compile(r"^Warmup \(first\):\s*(" + _NUMBER + r")\s*ms"),
    "warmup_avg_ms": re.compile(r"^Warmup \(avg\):\s*(" + _NUMBER + r")\s*ms(?:\s*\((\d+) runs\))?"),
    "avg_ms": re.compile(r"^Inference \(avg\):\s*(" + _NUMBER + r")\s*ms(?:\s*\((\d+) runs\))?"),
    "min_ms": re.compile(r"^Inference \(min\):\s*(" + _NUMBER + r")\s*ms"),
    "max_ms": re.compile(r"^Inference \(max\):\s*(" + _NUMBER + r")\s*ms"),
    "std_ms": re.compile(r"^Inference \(std\):\s*(" + _NUMBER + ")"),
    "throughput_mb_s": re.compile(r"^Throughput:\s*(" + _NUMBER + r")\s*MB/s"),
    "init_footprint_mb": re.compile(r"^Init footprint:\s*(" + _NUMBER + r")\s*MB"),
    "overall_footprint_mb": re.compile(r"^Overall footprint:\s*(" + _NUMBER + r")\s*MB"),
    "peak_mb": re.compile(r"^Peak memory:\s*(" + _NUMBER + r")\s*MB"),
}
_LITERT_NO_PEAK = re.compile(r"^Peak memory usage not available")
_CLOSING = re.compile(r"^=+\s*$")


@dataclass
class RunStats:
    """One `count=` line, converted from microseconds to milliseconds."""
    count: int
    first_ms: float | None = None
    curr_ms: float | None = None
    min_ms: float | None = None
    max_ms: float | None = None
    avg_ms: float | None = None
    std_ms: float | None = None
    p5_ms: float | None = None
    median_ms: float | None = None
    p95_ms: float | None = None
    all_same: bool = False


@dataclass
class Delegation:
    delegate: str
    replaced_nodes: int
    total_nodes: int
    partitions: int

    @property
    def complete(self):
        return self.replaced_nodes == self.total_nodes and self.partitions == 1


@dataclass
class BenchmarkOutput:
    """Everything the parser understood from one run's output."""
    dialect: str | None = None                  # "classic", "litert" or None when no result was found
    params: dict = field(default_factory=dict)  # "Num threads" -> "4", from "Name: [value]" lines
    args: list = field(default_factory=list)    # command line echoed by the Android benchmark APK
    model_path: str | None = None               # from "Loaded model PATH"
    model_size_mb: float | None = None
    init_ms: float | None = None
    first_ms: float | None = None
    warmup: RunStats | None = None
    inference: RunStats | None = None
    warmup_avg_ms: float | None = None
    avg_ms: float | None = None                 # the headline mean of the measured run
    op_profile: RunStats | None = None          # "Timings (microseconds): count=..." of an op-profiling report
    memory: dict = field(default_factory=dict)  # e.g. {"init_mb":.., "overall_mb":.., "kind": "footprint_delta"}
    throughput_mb_s: float | None = None
    unconsumed_flags: list = field(default_factory=list)
    delegations: list = field(default_factory=list)
    delegate_failures: list = field(default_factory=list)
    partial_delegation: list = field(default_factory=list)  # one message per partially applied delegate
    errors: list = field(default_factory=list)

    @property
    def ok(self):
        return self.avg_ms is not None

    @property
    def partitions(self):
        return self.delegations[-1].partitions if self.delegations else None

    def to_dict(self):
        out = asdict(self)
        out["ok"] = self.ok
        out["partitions"] = self.partitions
        return out


def strip_prefixes(line):
    """Remove `\\r`, logcat/absl/`INFO:` prefixes from one line."""
    line = line.replace("\r", "").rstrip()
    changed = True
    while changed:
        changed = False
        for pattern in _PREFIXES:
            stripped = pattern.sub("", line, count=1)
            if stripped != line:
                line, changed = stripped, True
    return line.strip()


def parse_stats_line(text):
    """Parse `count=N first=.. curr=.. ...` (microseconds) into RunStats (milliseconds).

    Handles `count=0`, exponent-form numbers and `curr=V(all same)`, where first/min/max/avg equal
    `curr` and std is 0. A single run (`count=1 curr=V`) is the same case without the marker.
    """
    values = {k: float(v) for k, v in _KV.findall(text) if k in _STAT_KEYS}
    count = int(values.pop("count", 0))
    stats = RunStats(count=count)
    for key, value in values.items():
        setattr(stats, key + "_ms", value / 1000.0)
    all_same = "(all same)" in text
    if count > 0 and stats.curr_ms is not None and (all_same or count == 1) and stats.avg_ms is None:
        for key in ("first_ms", "min_ms", "max_ms", "avg_ms"):
            setattr(stats, key, stats.curr_ms)
        stats.std_ms = 0.0
        stats.all_same = all_same
    return stats


def _parse_summary(text, out):
    # "Init: 17187, First inference: 3512391, Warmup (avg): 3.51239e+06, Inference (avg): 2.95034e+06"
    for name, value in _SUMMARY_ITEM.findall(text):
        ms = float(value) / 1000.0
        name = name.strip()
        if name == "Init":
            out.init_ms = ms
        elif name == "First inference":
            out.first_ms = ms
        elif name == "Warmup (avg)":
            out.warmup_avg_ms = ms
        elif name == "Inference (avg)":
            out.avg_ms = ms


def _parse_litert_line(line, out):
    """One line inside the LiteRT 2.x results block; returns True when it was consumed."""
    if _LITERT_NO_PEAK.match(line):
        out.memory["peak_mb"] = None
        out.memory.setdefault("kind", "litert")
        return True
    for key, pattern in _LITERT_MS.items():
        match = pattern.match(line)
        if not match:
            continue
        value = float(match.group(1))
        if key in ("init_footprint_mb", "overall_footprint_mb", "peak_mb"):
            out.memory[key] = value
            out.memory["kind"] = "litert"
        elif key == "throughput_mb_s":
            out.throughput_mb_s = value
        elif key in ("avg_ms", "min_ms", "max_ms", "std_ms"):
            if out.dialect != "litert":
                # The block is the authority for the measured run; count= lines only add percentiles later.
                out.inference, out.dialect = RunStats(count=0), "litert"
            setattr(out.inference, key, value)
            if key == "avg_ms":
                out.avg_ms = value
                if match.group(2):
                    out.inference.count = int(match.group(2))
        elif key == "warmup_avg_ms":
            out.warmup_avg_ms = value
            if match.group(2):
                out.warmup = RunStats(count=int(match.group(2)), avg_ms=value)
        else:
            setattr(out, key, value)
        return True
    return False


def _parse_diagnostics(line, out):
    """Flags, delegation and failure messages; they can appear in any dialect."""
    match = _UNCONSUMED.search(line)
    if match:
        out.unconsumed_flags.extend(match.group(1).split())
        return
    match = _REPLACING.search(line)
    if match:
        delegation = Delegation(match.group(3), int(match.group(1)), int(match.group(2)), int(match.group(4)))
        out.delegations.append(delegation)
        if not delegation.complete:
            out.partial_delegation.append(line)
        return
    match = _EXPLICIT.search(line)
    if match:
        if match.group(2) == "partially":
            out.partial_delegation.append(line)
        return
    if _NOT_EXECUTED.search(line) or _DELEGATE_FAIL.search(line):
        out.delegate_failures.append(line)
        return
    if _FAILURE.search(line):
        out.errors.append(line)


def parse(text):
    """Parse the complete output of one `benchmark_model` run."""
    out = BenchmarkOutput()
    stat_lines = []
    in_litert_block = False
    for raw in text.splitlines():
        line = strip_prefixes(raw)
        if not line:
            continue
        if _LITERT_HEADER.search(line):
            in_litert_block = True
            continue
        if in_litert_block:
            if _CLOSING.match(line):
                in_litert_block = False
                continue
            if _parse_litert_line(line, out) or line.startswith("Memory Usage"):
                continue
        summary = _SUMMARY.search(line)
        if summary:
            _parse_summary(summary.group(1), out)
            out.dialect = out.dialect or "classic"
            continue
        if line.startswith("Timings (microseconds):"):
            out.op_profile = parse_stats_line(line)
            continue
        if line.startswith("Memory (bytes):"):
            continue  # op-profiling memory summary, not the model's footprint
        if _STAT_LINE.search(line) and not line.startswith(("Running", "Min num")):
            stat_lines.append(parse_stats_line(line))
            continue
        if _parse_memory(line, out):
            continue
        match = _MODEL_SIZE.search(line)
        if match:
            out.model_size_mb = float(match.group(1))
            continue
        match = _INIT_SESSION.search(line)
        if match:
            out.init_ms = out.init_ms if out.init_ms is not None else float(match.group(1))
            continue
        match = _ARGS.search(line)
        if match:
            out.args = match.group(1).split()
            continue
        match = _LOADED.match(line)
        if match:
            out.model_path = match.group(1).strip()
            continue
        match = _PARAM.match(line)
        if match:
            out.params[match.group(1).strip()] = match.group(2)
            continue
        _parse_diagnostics(line, out)
    _assign_stat_lines(stat_lines, out)
    return out


def _parse_memory(line, out):
    for pattern, kind in ((_MEM_OLD, "peak_footprint"), (_MEM_DELTA, "footprint_delta")):
        match = pattern.search(line)
        if match:
            out.memory.update(init_mb=float(match.group(1)), overall_mb=float(match.group(2)), kind=kind)
            return True
    match = _MEM_PEAK_MONITOR.search(line)
    if match:
        out.memory["peak_mb"] = float(match.group(1))
        return True
    match = _VMRSS.search(line)
    if match:
        out.memory["vmrss_end_mb"] = float(match.group(1))
        return True
    return False


def _assign_stat_lines(stat_lines, out):
    """First count= line is the warm-up, the last one the measured run (when there are two or more).

    A lone line is the measured run if its count matches the summary's run, else it is the warm-up
    (a warm-up-only log) -- decided by comparing its average with the summary's.
    """
    if not stat_lines:
        return
    if len(stat_lines) >= 2:
        warmup, measured = stat_lines[0], stat_lines[-1]
    else:
        (only,) = stat_lines
        is_warmup = (out.warmup_avg_ms is not None and only.avg_ms is not None
                     and abs(only.avg_ms - out.warmup_avg_ms) < 1e-9
                     and (out.avg_ms is None or abs(out.avg_ms - out.warmup_avg_ms) > 1e-9))
        warmup, measured = (only, None) if is_warmup else (None, only)
    if warmup is not None and (out.warmup is None or out.dialect != "litert"):
        out.warmup = warmup
    if measured is None:
        return
    if out.dialect == "litert" and out.inference is not None:
        for key in ("p5_ms", "median_ms", "p95_ms"):
            if getattr(out.inference, key) is None:
                setattr(out.inference, key, getattr(measured, key))
        return
    out.inference = measured
    if out.avg_ms is None and measured.avg_ms is not None:
        out.avg_ms = measured.avg_ms
    out.dialect = out.dialect or "classic"
