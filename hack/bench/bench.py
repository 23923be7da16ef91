#!/usr/bin/env python3
"""Benchmark harness for Blit (local workloads W1..W6 of shared/design/benchmarks.md).

What it does, in order:

1. Measures the machine once (CPUs, memory, kernel, filesystem of --root, free space, and the
   rate at which one Python thread creates 4 KiB files: a floor-level bound for every tool).
2. Builds each workload's source tree deterministically (fixed seed, fixed mtimes,
   incompressible content from SHAKE-128 in counter mode) under ROOT/src/, and caches it: a
   marker file ROOT/src/<name>.json is written last and a rerun with the same parameters
   reuses the tree.
3. Runs blit and its peers (rsync -a, tuned rsync, cp -a) interleaved (A B C A B C ...) on the
   same data. Every run gets its own new destination ROOT/runs/<suite>/<W>/dst-<tool>-<n>:
   on this machine file creation is 10-30x slower for minutes after an `rm -rf` of a big
   tree, so destinations are removed only when the suite ends (W2's single-file destinations
   are the exception: they are removed after each run to bound disk use).
4. Before each run: `sync`, then either re-reads the source (warm cache, the default) or
   drops the page cache (--cold). The timed region is spawn-to-exit of the tool (spawned
   with subprocess.Popen, reaped with os.wait4); peak RSS is the largest single process of
   the tool's process tree, read through GNU time (see timed() for why not wait4 alone).
5. Verifies every destination, untimed: the same entries with the same type, size, mode and
   file mtime (whole seconds) as the source, plus a content hash of a deterministic sample
   of 200 files, every big file in full, and for W4 every rewritten and added file. A run
   that fails verification (or exits non-zero) is reported loudly and left out of the
   figures.
6. Prints a Markdown summary (machine line, commands, one table per workload with medians,
   min-max, peak RSS, the peer/blit ratio and the targets), also to --out if given.

Python 3.11 standard library only. Progress goes to stderr, the summary to stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
import resource
import shutil
import stat
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

SCRIPT_DIR = Path(__file__).resolve().parent
REPO_ROOT = SCRIPT_DIR.parent.parent

GEN_VERSION = 1                      # bump when the generated content or layout changes
SEED = 0xB1172024
BASE_MTIME = 1_600_000_000           # 2020-09-13 12:26:40 UTC
CHANGE_MTIME = BASE_MTIME + 30 * 86400
KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
BLOCK = 8 * MIB                      # big files are written (and hashed) in 8 MiB blocks
BIG_FILE = 1 * MIB                   # files at least this big are always hashed in full
SAMPLE_FILES = 200
GNU_TIME = "/usr/bin/time"

ALL_WORKLOADS = ["W1", "W2", "W3", "W4", "W5", "W6"]
DEFAULT_WORKLOADS = ["W1", "W2", "W3", "W4", "W5"]
LONG_WORKLOADS = {"W2", "W3", "W6"}
ALL_PEERS = ["rsync", "rsync-tuned", "cp"]

TOOL_LABELS = {
    "blit": "blit",
    "rsync": "rsync -a",
    "rsync-tuned": "rsync -a --whole-file --inplace",
    "cp": "cp -a",
}

# Targets (peer median / blit median must be at least this). "rsync-best" is the faster of
# the two rsync variants. Keyed by (workload, cold).
RATIO_TARGETS: dict[tuple[str, bool], list[tuple[str, float]]] = {
    ("W1", False): [("rsync", 2.5), ("cp", 1.5)],
    ("W1", True): [("rsync", 1.3)],
    ("W2", False): [("cp", 0.95)],
    ("W3", False): [("rsync", 2.0), ("cp", 1.3)],
    ("W4", False): [("rsync-best", 1.5)],
    ("W5", False): [("rsync", 3.0)],
}
MEMORY_TARGETS_MIB = {"W1": 150, "W6": 400}


def human(size: int) -> str:
    return f"{size / GIB:g} GiB" if size >= GIB else f"{size / MIB:.1f} MiB"


def log(msg: str) -> None:
    """Progress output (stderr, so stdout carries only the summary)."""
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def shout(msg: str) -> None:
    """A loud message for something that invalidates a figure."""
    bar = "!" * 78
    print(f"{bar}\n!!! {msg}\n{bar}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------------------------
# Deterministic content
# --------------------------------------------------------------------------------------------

def content(tag: str, index: int, size: int) -> bytes:
    """Incompressible, deterministic bytes: SHAKE-128 of (seed, tag, index)."""
    return hashlib.shake_128(f"{SEED}:{tag}:{index}".encode()).digest(size)


def file_mtime(index: int) -> int:
    return BASE_MTIME + index % 86_400


def write_small(path: str, data: bytes, mtime: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        os.write(fd, data)
        os.utime(fd, (mtime, mtime))
    finally:
        os.close(fd)


def write_big(path: str, tag: str, size: int, mtime: int) -> None:
    """Writes `size` bytes in 8 MiB blocks, block i = SHAKE-128(seed, tag, i) (~450 MB/s)."""
    with open(path, "wb", buffering=0) as f:
        done, block = 0, 0
        while done < size:
            n = min(BLOCK, size - done)
            f.write(content(f"{tag}:block", block, n))
            done, block = done + n, block + 1
        os.utime(f.fileno(), (mtime, mtime))


# --------------------------------------------------------------------------------------------
# Workload layouts. Each yields (relative path, size, content tag, index) in a fixed order.
# --------------------------------------------------------------------------------------------

FileSpec = tuple[str, int, str, int]


def scaled(n: int, scale: float) -> int:
    return max(1, round(n * scale))


def w1_files(scale: float) -> Iterator[FileSpec]:
    """100 dirs x 10 subdirs x 100 files of 4 KiB (--scale shrinks dirs, then files)."""
    tops = scaled(100, scale)
    per_leaf = scaled(100_000 * scale / (tops * 10), 1.0)
    i = 0
    for d in range(tops):
        for s in range(10):
            for f in range(per_leaf):
                yield f"d{d:03d}/s{s:02d}/f{f:03d}", 4 * KIB, "W1", i
                i += 1


def w2_files(size: int) -> Iterator[FileSpec]:
    yield "big.bin", size, "W2", 0


def w3_files(scale: float) -> Iterator[FileSpec]:
    """One 512 MiB file + 50 dirs x 1,000 files of 2 KiB."""
    yield "big.bin", max(MIB, round(512 * MIB * scale)), "W3big", 0
    dirs = scaled(50, scale)
    per_dir = scaled(50_000 * scale / dirs, 1.0)
    i = 0
    for d in range(dirs):
        for f in range(per_dir):
            yield f"d{d:02d}/f{f:04d}", 2 * KIB, "W3", i
            i += 1


def w6_files(scale: float) -> Iterator[FileSpec]:
    """2,000 dirs x 1,000 one-byte files (2M entries)."""
    dirs = scaled(2_000, scale)
    per_dir = scaled(2_000_000 * scale / dirs, 1.0)
    i = 0
    for d in range(dirs):
        for f in range(per_dir):
            yield f"d{d:04d}/f{f:04d}", 1, "W6", i
            i += 1


def build_tree(dest: Path, files: Iterator[FileSpec]) -> None:
    """Creates the files, then gives every directory the fixed base mtime."""
    made: set[str] = set()
    base = str(dest)
    for rel, size, tag, index in files:
        path = os.path.join(base, rel)
        parent = os.path.dirname(path)
        if parent not in made:
            os.makedirs(parent, exist_ok=True)
            made.add(parent)
        if size >= BLOCK:
            write_big(path, tag, size, file_mtime(index))
        else:
            write_small(path, content(tag, index, size), file_mtime(index))
    for dirpath, _, _ in os.walk(base, topdown=False):
        os.utime(dirpath, (BASE_MTIME, BASE_MTIME))


# --------------------------------------------------------------------------------------------
# W4: W1 with 1,000 files touched, 1,000 rewritten, 1,000 deleted, 1,000 added
# --------------------------------------------------------------------------------------------

def w4_changes(scale: float) -> dict[str, list[str]]:
    files = [rel for rel, *_ in w1_files(scale)]
    n = min(scaled(1_000, scale), len(files) // 3)
    rng = random.Random(f"{SEED}:W4")
    picked = rng.sample(files, 3 * n)
    added = []
    for k in range(n):
        parent = os.path.dirname(files[rng.randrange(len(files))])
        added.append(f"{parent}/new{k:05d}")
    return {
        "touched": sorted(picked[:n]),
        "rewritten": sorted(picked[n:2 * n]),
        "deleted": sorted(picked[2 * n:]),
        "added": sorted(added),
    }


def apply_w4_changes(tree: Path, changes: dict[str, list[str]]) -> None:
    base = str(tree)
    dirs = set()
    for rel in changes["touched"]:
        os.utime(os.path.join(base, rel), (CHANGE_MTIME, CHANGE_MTIME))
    for i, rel in enumerate(changes["rewritten"]):
        write_small(os.path.join(base, rel), content("W4rewrite", i, 4 * KIB), CHANGE_MTIME)
    for rel in changes["deleted"]:
        os.unlink(os.path.join(base, rel))
        dirs.add(os.path.dirname(rel))
    for i, rel in enumerate(changes["added"]):
        write_small(os.path.join(base, rel), content("W4add", i, 4 * KIB), CHANGE_MTIME)
        dirs.add(os.path.dirname(rel))
    for rel in dirs:
        os.utime(os.path.join(base, rel), (CHANGE_MTIME, CHANGE_MTIME))


# --------------------------------------------------------------------------------------------
# Source cache
# --------------------------------------------------------------------------------------------

@dataclass
class Source:
    name: str
    path: Path
    params: dict
    extra: dict = field(default_factory=dict)   # e.g. W4's change lists


def ensure_source(src_root: Path, name: str, params: dict,
                  build: Callable[[Path], dict | None]) -> Source:
    """Returns the cached tree if its marker matches `params`, else (re)builds it."""
    path = src_root / name
    marker = src_root / f"{name}.json"
    params = {"gen_version": GEN_VERSION, "seed": SEED, **params}
    if marker.exists():
        saved = json.loads(marker.read_text())
        if saved.get("params") == params and path.is_dir():
            log(f"source {name}: cached at {path}")
            return Source(name, path, params, saved.get("extra") or {})
    if path.exists() or marker.exists():
        log(f"source {name}: stale or incomplete, removing it (file creation may be slow "
            "for a few minutes after removing a large tree)")
        marker.unlink(missing_ok=True)
        subprocess.run(["rm", "-rf", str(path)], check=True)
        note_removal(src_root.parent)
    log(f"source {name}: generating at {path} ...")
    t0 = time.perf_counter()
    old_umask = os.umask(0o022)
    try:
        path.mkdir(parents=True)
        extra = build(path) or {}
    finally:
        os.umask(old_umask)
    os.sync()
    log(f"source {name}: generated in {time.perf_counter() - t0:.1f} s")
    marker.write_text(json.dumps({"params": params, "extra": extra}, indent=1))
    return Source(name, path, params, extra)


def scale_tag(scale: float) -> str:
    return f"x{scale:g}"


def source_w1(ctx: "Context") -> Source:
    return ensure_source(ctx.src_root, f"W1-{scale_tag(ctx.scale)}", {"scale": ctx.scale},
                         lambda p: build_tree(p, w1_files(ctx.scale)))


def source_w2(ctx: "Context") -> Source:
    size = ctx.w2_size
    cached = (ctx.src_root / f"W2-{size}B.json").exists()
    if not cached and free_space(ctx.root)[0] < 2 * size:
        raise SystemExit(f"not enough free disk for W2 ({human(size)} source + one copy); "
                         "use --w2-size-gib 2")
    return ensure_source(ctx.src_root, f"W2-{size}B", {"size": size},
                         lambda p: build_tree(p, w2_files(size)))


def source_w3(ctx: "Context") -> Source:
    return ensure_source(ctx.src_root, f"W3-{scale_tag(ctx.scale)}", {"scale": ctx.scale},
                         lambda p: build_tree(p, w3_files(ctx.scale)))


def source_w4(ctx: "Context", w1: Source) -> Source:
    """A copy of the pristine W1 tree with the W4 changes applied."""
    def build(path: Path) -> dict:
        subprocess.run(["cp", "-a", f"{w1.path}/.", f"{path}/"], check=True)
        changes = w4_changes(ctx.scale)
        apply_w4_changes(path, changes)
        return {"changes": changes}
    return ensure_source(ctx.src_root, f"W4-{scale_tag(ctx.scale)}",
                         {"scale": ctx.scale, "w1": w1.params}, build)


def source_w6(ctx: "Context") -> Source:
    return ensure_source(ctx.src_root, f"W6-{scale_tag(ctx.scale)}", {"scale": ctx.scale},
                         lambda p: build_tree(p, w6_files(ctx.scale)))


# --------------------------------------------------------------------------------------------
# Tree index, warm-up, hashing, verification
# --------------------------------------------------------------------------------------------

Entry = tuple[str, int, int, int]   # kind ("d", "f", "l", "o"), size, mtime seconds, mode bits


def index_tree(root: Path) -> dict[str, Entry]:
    """relative path -> entry, for everything below root (not following symlinks)."""
    out: dict[str, Entry] = {}
    stack = [""]
    while stack:
        rel = stack.pop()
        with os.scandir(os.path.join(root, rel)) as it:
            for e in it:
                r = f"{rel}/{e.name}" if rel else e.name
                st = e.stat(follow_symlinks=False)
                mode = stat.S_IMODE(st.st_mode)
                if stat.S_ISDIR(st.st_mode):
                    out[r] = ("d", 0, 0, mode)
                    stack.append(r)
                elif stat.S_ISREG(st.st_mode):
                    out[r] = ("f", st.st_size, int(st.st_mtime), mode)
                elif stat.S_ISLNK(st.st_mode):
                    out[r] = ("l", 0, 0, 0)
                else:
                    out[r] = ("o", 0, 0, mode)
    return out


def tree_totals(index: dict[str, Entry]) -> tuple[int, int, int]:
    """(files, dirs, bytes)."""
    files = sum(1 for e in index.values() if e[0] == "f")
    dirs = sum(1 for e in index.values() if e[0] == "d")
    return files, dirs, sum(e[1] for e in index.values())


def read_tree(root: Path) -> None:
    """Reads every file once so the source is in the page cache."""
    buf = bytearray(BLOCK)
    for dirpath, _, filenames in os.walk(root):
        for name in filenames:
            with open(os.path.join(dirpath, name), "rb", buffering=0) as f:
                while f.readinto(buf):
                    pass


def hash_file(path: str) -> str:
    h = hashlib.blake2b(digest_size=16)
    buf = bytearray(BLOCK)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()


def sample_paths(wid: str, index: dict[str, Entry], extra: dict) -> list[str]:
    """A deterministic sample: 200 files, every big file, W4's rewritten and added files."""
    files = sorted(r for r, e in index.items() if e[0] == "f")
    rng = random.Random(f"{SEED}:{wid}:sample")
    chosen = set(rng.sample(files, min(SAMPLE_FILES, len(files))))
    chosen.update(r for r in files if index[r][1] >= BIG_FILE)
    changes = extra.get("changes") or {}
    chosen.update(changes.get("rewritten", []))
    chosen.update(changes.get("added", []))
    return sorted(chosen)


def first(items, n: int = 3) -> str:
    items = sorted(items)
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


def verify(src: "Prepared", dst: Path) -> list[str]:
    """Problems found comparing dst with the source (an empty list means verified)."""
    problems: list[str] = []
    got = index_tree(dst)
    want = src.index
    missing = want.keys() - got.keys()
    extra = got.keys() - want.keys()
    if missing:
        problems.append(f"{len(missing)} entries missing: {first(missing)}")
    if extra:
        problems.append(f"{len(extra)} unexpected entries: {first(extra)}")
    for what, pos in (("type", 0), ("size", 1), ("mtime", 2), ("mode", 3)):
        bad = [r for r in want.keys() & got.keys() if want[r][pos] != got[r][pos]]
        if bad:
            problems.append(f"{len(bad)} entries differ in {what}: {first(bad)}")
    wf, wd, wb = tree_totals(want)
    gf, gd, gb = tree_totals(got)
    if (wf, wd, wb) != (gf, gd, gb):
        problems.append(f"totals differ: source {wf} files / {wd} dirs / {wb} bytes, "
                        f"destination {gf} files / {gd} dirs / {gb} bytes")
    changes = src.extra.get("changes") or {}
    still = [r for r in changes.get("deleted", []) if r in got]
    if still:
        problems.append(f"{len(still)} files deleted in the source are still present: "
                        f"{first(still)}")
    absent = [r for r in changes.get("added", []) if r not in got]
    if absent:
        problems.append(f"{len(absent)} files added in the source are absent: {first(absent)}")
    bad_hash = [r for r, h in src.hashes.items()
                if got.get(r, ("",))[0] == "f" and hash_file(os.path.join(dst, r)) != h]
    if bad_hash:
        problems.append(f"{len(bad_hash)} of {len(src.hashes)} sampled files differ in "
                        f"content: {first(bad_hash)}")
    return problems


# --------------------------------------------------------------------------------------------
# Running the tools
# --------------------------------------------------------------------------------------------

def tool_command(tool: str, blit: str, mirror: bool, src: Path, dst: Path) -> list[str]:
    s, d = f"{src}/", f"{dst}/"
    if tool == "blit":
        verb = ["mirror", "--yes"] if mirror else ["copy"]
        return [blit, *verb, "--no-progress", "--no-history", s, d]
    delete = ["--delete"] if mirror else []
    if tool == "rsync":
        return ["rsync", "-a", *delete, s, d]
    if tool == "rsync-tuned":
        return ["rsync", "-a", "--whole-file", "--inplace", *delete, s, d]
    if tool == "cp":
        return ["cp", "-a", f"{src}/.", d]
    raise ValueError(tool)


def command_template(tool: str, mirror: bool) -> str:
    cmd = tool_command(tool, "blit", mirror, Path("SRC"), Path("DST"))
    return " ".join(cmd)


def timed(cmd: list[str], log_path: Path, include_sync: bool) -> tuple[float, int, float]:
    """Runs cmd; returns (seconds, exit code, peak RSS in MiB).

    Peak RSS comes from GNU time (`/usr/bin/time -f %M`) when it is installed. os.wait4's
    rusage alone is not enough: Linux carries the RSS high-water mark of the process that
    exec()s into the child, and subprocess spawns with vfork, so wait4 would report at least
    the harness's own peak RSS. GNU time forks from its own small process, so its figure is
    the tool's. Without it we fall back to wait4 (the summary says so).
    """
    rss_file = log_path.with_suffix(".rss")
    use_time = os.access(GNU_TIME, os.X_OK)
    full = [GNU_TIME, "-f", "%M", "-o", str(rss_file), *cmd] if use_time else cmd
    with open(log_path, "ab") as out:
        out.write(("$ " + " ".join(cmd) + "\n").encode())
        out.flush()
        t0 = time.perf_counter()
        proc = subprocess.Popen(full, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        if include_sync:
            os.sync()
        seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    rss_kib = usage.ru_maxrss                      # KiB
    if use_time:
        try:
            rss_kib = int(rss_file.read_text().split()[-1])
        except (OSError, ValueError, IndexError):
            rss_kib = 0
    return seconds, proc.returncode, rss_kib / 1024


def rss_method() -> str:
    if os.access(GNU_TIME, os.X_OK):
        return f"peak RSS: `{GNU_TIME} -f %M` (largest single process of the tool)"
    floor = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return (f"peak RSS: os.wait4 rusage ({GNU_TIME} not installed: `apt-get install -y time`); "
            f"⚠ figures include the harness's own peak RSS ({floor:.0f} MiB) as a floor")


def tail(path: Path, lines: int = 8) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def drop_caches() -> bool:
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------------------------
# Suite
# --------------------------------------------------------------------------------------------

@dataclass
class Context:
    blit: str
    root: Path
    src_root: Path
    run_dir: Path
    scale: float
    w2_size: int
    runs: int | None
    cold: bool
    settle: float
    include_sync: bool
    tools: list[str]


@dataclass
class Workload:
    wid: str
    title: str
    source: Source
    mirror: bool = False
    prep_from: Source | None = None    # W4/W5: each destination starts as a copy of this
    keep_dsts: bool = True             # False: remove each destination after its run (W2)


@dataclass
class Prepared:
    """A workload's source as indexed and hashed once per suite."""
    index: dict[str, Entry]
    hashes: dict[str, str]
    extra: dict


@dataclass
class Run:
    tool: str
    round: int
    seconds: float
    rss_mib: float
    problems: list[str]

    @property
    def valid(self) -> bool:
        return not self.problems


@dataclass
class Result:
    workload: Workload
    tools: list[str]
    runs: list[Run]
    rounds: int
    notes: list[str]
    source_totals: tuple[int, int, int]     # files, dirs, bytes

    def valid(self, tool: str) -> list[Run]:
        return [r for r in self.runs if r.tool == tool and r.valid]


def make_workload(ctx: Context, wid: str) -> Workload:
    if wid == "W1":
        return Workload("W1", "100,000 × 4 KiB files (100 dirs × 10 subdirs × 100), "
                        "copy into an empty destination", source_w1(ctx))
    if wid == "W2":
        return Workload("W2", f"one {human(ctx.w2_size)} file, copy into an empty "
                        "destination", source_w2(ctx), keep_dsts=False)
    if wid == "W3":
        return Workload("W3", "one 512 MiB file + 50,000 × 2 KiB files (50 dirs × 1,000), "
                        "copy into an empty destination", source_w3(ctx))
    if wid == "W4":
        w1 = source_w1(ctx)
        return Workload("W4", "W1 mirrored, then 1,000 touched, 1,000 rewritten, "
                        "1,000 deleted, 1,000 added; the re-mirror", source_w4(ctx, w1),
                        mirror=True, prep_from=w1)
    if wid == "W5":
        w1 = source_w1(ctx)
        return Workload("W5", "W1 mirrored, nothing changed; the re-mirror", w1,
                        mirror=True, prep_from=w1)
    if wid == "W6":
        return Workload("W6", "2,000 dirs × 1,000 one-byte files (2M entries), copy; "
                        "peak memory matters most", source_w6(ctx))
    raise ValueError(wid)


def prepare_source(wl: Workload) -> Prepared:
    log(f"[{wl.wid}] indexing and hashing the source sample ...")
    index = index_tree(wl.source.path)
    hashes = {r: hash_file(os.path.join(wl.source.path, r))
              for r in sample_paths(wl.wid, index, wl.source.extra)}
    return Prepared(index, hashes, wl.source.extra)


def footprint(index: dict[str, Entry]) -> tuple[int, int]:
    """(bytes, inodes) a copy of the indexed tree needs, rounded up to 4 KiB blocks."""
    blocks = sum(-(-e[1] // 4096) if e[0] == "f" else 1 for e in index.values())
    return blocks * 4096, len(index) + 1


def free_space(root: Path) -> tuple[int, int]:
    """(bytes, inodes) free under root, less a safety margin (5% of the filesystem)."""
    st = os.statvfs(root)
    free_bytes = st.f_bavail * st.f_frsize - max(2 * GIB, st.f_blocks * st.f_frsize // 20)
    return free_bytes, st.f_favail - st.f_files // 20


def rounds_that_fit(ctx: Context, wl: Workload, src: Prepared, n_tools: int,
                    wanted: int) -> tuple[int, str | None]:
    """How many interleaved rounds the free space and inodes allow.

    Destinations are kept until the suite ends, so a round needs one copy per tool; W2's
    destinations are removed after each run, so it needs one copy at a time.
    """
    need_bytes, need_inodes = footprint(src.index)
    copies = n_tools if wl.keep_dsts else 1
    free_bytes, free_inodes = free_space(ctx.root)
    fit = min(free_bytes // (need_bytes * copies), free_inodes // (need_inodes * copies))
    if not wl.keep_dsts and fit >= 1:
        fit = wanted
    fit = max(0, min(int(fit), wanted))
    if fit == wanted:
        return wanted, None
    return fit, (f"only {fit} of {wanted} rounds fit on the disk (a round needs "
                 f"{need_bytes * copies / GIB:.1f} GiB and {need_inodes * copies:,} inodes; "
                 f"free after a margin: {free_bytes / GIB:.1f} GiB, {free_inodes:,} inodes)")


def prepare_destination(ctx: Context, wl: Workload, dst: Path) -> None:
    """Untimed: an empty directory, or (W4/W5) a copy of the pristine tree, left to settle."""
    if wl.prep_from is None:
        dst.mkdir(parents=True)
        return
    dst.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(["cp", "-a", f"{wl.prep_from.path}/.", f"{dst}/"], check=True)
    os.sync()
    time.sleep(ctx.settle)


def set_cache_state(ctx: Context, wl: Workload) -> None:
    os.sync()
    if ctx.cold:
        drop_caches()
    else:
        read_tree(wl.source.path)


def remove_tree(path: Path) -> None:
    subprocess.run(["rm", "-rf", str(path)], check=False)


def note_removal(root: Path) -> None:
    """Remembers when a large tree was removed (see wait_after_removal)."""
    (root / ".last-removal").write_text(f"{time.time()}\n")


def wait_after_removal(root: Path, cooldown: float) -> None:
    """Waits out the slow-file-creation window that follows removing a large tree."""
    try:
        age = time.time() - float((root / ".last-removal").read_text())
    except (OSError, ValueError):
        return
    if age < cooldown:
        log(f"a large tree under {root} was removed {age:.0f} s ago; file creation is slow "
            f"for a while after that, waiting {cooldown - age:.0f} s (--rm-cooldown)")
        time.sleep(cooldown - age)


def w2_warmup(ctx: Context, wl: Workload) -> None:
    """One untimed copy so the first timed round does not pay for first-touch memory."""
    scratch = ctx.run_dir / wl.wid / "warmup"
    log(f"[{wl.wid}] untimed warm-up copy (first writes into fresh memory are slow) ...")
    scratch.mkdir(parents=True)
    subprocess.run(["cp", "-a", f"{wl.source.path}/.", f"{scratch}/"], check=True)
    remove_tree(scratch)
    os.sync()


def run_one(ctx: Context, wl: Workload, src: Prepared, tool: str, rnd: int) -> Run:
    dst = ctx.run_dir / wl.wid / f"dst-{tool}-{rnd}"
    prepare_destination(ctx, wl, dst)
    set_cache_state(ctx, wl)
    cmd = tool_command(tool, ctx.blit, wl.mirror, wl.source.path, dst)
    log_path = ctx.run_dir / wl.wid / f"{tool}.log"
    seconds, code, rss = timed(cmd, log_path, ctx.include_sync)
    problems = [f"exit code {code}: {tail(log_path)}"] if code != 0 else []
    if not problems:
        problems = verify(src, dst)
    status = "verified" if not problems else "INVALID"
    log(f"[{wl.wid}] round {rnd} {tool:<11} {seconds:8.2f} s  {rss:8.1f} MiB  {status}")
    if problems:
        shout(f"{wl.wid} {tool} round {rnd}: VERIFICATION FAILED, figure discarded\n    "
              + "\n    ".join(problems) + f"\n    destination kept: {dst}")
    if not wl.keep_dsts and not problems:    # an invalid one stays until the suite ends
        remove_tree(dst)
        os.sync()
    return Run(tool, rnd, seconds, rss, problems)


def run_workload(ctx: Context, wid: str) -> Result:
    wl = make_workload(ctx, wid)
    tools = [t for t in ctx.tools if not (wl.mirror and t == "cp")]
    wanted = ctx.runs or (3 if wid in LONG_WORKLOADS else 5)
    src = prepare_source(wl)
    rounds, note = rounds_that_fit(ctx, wl, src, len(tools), wanted)
    notes = [note] if note else []
    if note:
        shout(f"{wid}: {note}")
    (ctx.run_dir / wid).mkdir(parents=True, exist_ok=True)
    if wid == "W2" and rounds:
        w2_warmup(ctx, wl)
    runs = []
    for rnd in range(1, rounds + 1):
        # Rotate who goes first: on these machines the slot after a big delete or a
        # warm-up is measurably slower, and no tool should always draw it.
        shift = (rnd - 1) % len(tools)
        for tool in tools[shift:] + tools[:shift]:
            runs.append(run_one(ctx, wl, src, tool, rnd))
    return Result(wl, tools, runs, rounds, notes, tree_totals(src.index))


# --------------------------------------------------------------------------------------------
# Machine facts
# --------------------------------------------------------------------------------------------

def filesystem_of(path: Path) -> str:
    """'ext4 on /dev/vda (rw,relatime,...)' from the longest matching /proc/mounts entry."""
    real = os.path.realpath(path)
    best = ("", "?", "?", "")
    try:
        with open("/proc/mounts") as f:
            for line in f:
                dev, mnt, fstype, opts = line.split()[:4]
                mnt = mnt.replace("\\040", " ")
                inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
                if inside and len(mnt) >= len(best[0]):
                    best = (mnt, dev, fstype, opts)
    except OSError:
        pass
    mnt, dev, fstype, opts = best
    return f"{fstype} on {dev} mounted at {mnt} ({opts})"


def memory_gib() -> float:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return int(line.split()[1]) / (1 << 20)
    except OSError:
        pass
    return 0.0


def creation_rate(where: Path, n: int) -> tuple[float, float]:
    """(files/s, MB/s) for one Python thread creating n 4 KiB files with open/write/close."""
    data = os.urandom(4 * KIB)
    dirs = [where / f"d{i:02d}" for i in range(max(1, n // 1000))]
    for d in dirs:
        d.mkdir(parents=True)
    paths = [os.path.join(dirs[i % len(dirs)], f"f{i:06d}") for i in range(n)]
    os.sync()
    t0 = time.perf_counter()
    for p in paths:
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        os.write(fd, data)
        os.close(fd)
    seconds = time.perf_counter() - t0
    return n / seconds, n * 4 * KIB / seconds / 1e6


def version_of(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        line = (out.stdout or out.stderr).strip().splitlines()
        return line[0] if line else "unknown version"
    except (OSError, subprocess.SubprocessError):
        return "unknown version"


def machine_facts(ctx: Context) -> list[str]:
    n = max(2_000, round(20_000 * min(ctx.scale, 1.0)))
    log(f"measuring the file-creation rate ({n:,} × 4 KiB files) ...")
    rate, mbps = creation_rate(ctx.run_dir / "limits", n)
    st = os.statvfs(ctx.root)
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), "
        f"{memory_gib():.1f} GiB RAM, Linux {platform.release()}, {now}",
        f"filesystem of {ctx.root}: {filesystem_of(ctx.root)}; free "
        f"{st.f_bavail * st.f_frsize / GIB:.1f} GiB, {st.f_favail:,} inodes",
        f"limit: one Python thread creates {rate:,.0f} files/s of 4 KiB ({mbps:.0f} MB/s) "
        f"({n:,} files, open/write/close)",
        rss_method(),
        f"blit: {ctx.blit} ({version_of([ctx.blit, '--version'])})",
    ]
    if any(t.startswith("rsync") for t in ctx.tools):
        lines.append(f"rsync: {version_of(['rsync', '--version'])}")
    lines.append(f"cp: {version_of(['cp', '--version'])}")
    return lines


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------

def median(runs: list[Run]) -> float | None:
    return statistics.median(r.seconds for r in runs) if runs else None


def count(n: int, noun: str) -> str:
    if n == 1:
        return f"1 {noun}"
    return f"{n:,} {noun[:-1] + 'ies' if noun.endswith('y') else noun + 's'}"


def mark(ok: bool) -> str:
    return "✅" if ok else "❌"


def ratio_targets(res: Result, cold: bool) -> dict[str, str]:
    """tool -> 'target' cell text for the peers."""
    cells: dict[str, str] = {}
    blit = median(res.valid("blit"))
    rsyncs = [t for t in ("rsync", "rsync-tuned") if res.valid(t)]
    best = min(rsyncs, key=lambda t: median(res.valid(t))) if rsyncs else None
    for peer, target in RATIO_TARGETS.get((res.workload.wid, cold), []):
        tool, suffix = (best, " (faster rsync)") if peer == "rsync-best" else (peer, "")
        if tool is None or tool not in res.tools:
            continue
        peer_med = median(res.valid(tool))
        if blit is None or peer_med is None:
            cells[tool] = f"≥ {target}×{suffix} (no data)"
            continue
        cells[tool] = f"≥ {target}×{suffix} {mark(peer_med / blit >= target)}"
    return cells


def memory_cell(res: Result) -> str:
    limit = MEMORY_TARGETS_MIB.get(res.workload.wid)
    runs = res.valid("blit")
    if limit is None:
        return ""
    if not runs:
        return f"RSS < {limit} MiB (no data)"
    return f"RSS < {limit} MiB {mark(max(r.rss_mib for r in runs) < limit)}"


def workload_table(res: Result, cold: bool) -> list[str]:
    wl = res.workload
    files, dirs, size = res.source_totals
    out = [f"## {wl.wid} — {wl.title}{' (cold cache)' if cold else ''}", "",
           f"source as generated: {count(files, 'file')} in {count(dirs, 'subdirectory')}, "
           f"{size / MIB:,.1f} MiB; {count(res.rounds, 'interleaved round')}", ""]
    out += [f"> ⚠ {n}" for n in res.notes]
    if res.notes:
        out.append("")
    if not res.rounds:
        return out + ["Not run.", ""]
    blit = median(res.valid("blit"))
    targets = ratio_targets(res, cold)
    out += ["| tool | valid runs | median s | min–max s | peak RSS MiB | peer/blit | target |",
            "| --- | ---: | ---: | ---: | ---: | ---: | --- |"]
    for tool in res.tools:
        ok = res.valid(tool)
        total = sum(1 for r in res.runs if r.tool == tool)
        if not ok:
            out.append(f"| {TOOL_LABELS[tool]} | 0/{total} | — | — | — | — | "
                       f"{targets.get(tool, '')} |")
            continue
        med = median(ok)
        lo, hi = min(r.seconds for r in ok), max(r.seconds for r in ok)
        rss = max(r.rss_mib for r in ok)
        if tool == "blit":
            ratio, target = "—", memory_cell(res)
        else:
            ratio = f"{med / blit:.2f}×" if blit else "—"
            target = targets.get(tool, "")
        out.append(f"| {TOOL_LABELS[tool]} | {len(ok)}/{total} | {med:.2f} | "
                   f"{lo:.2f}–{hi:.2f} | {rss:.1f} | {ratio} | {target} |")
    out.append("")
    per_tool = "; ".join(
        f"{t}: " + " ".join(f"{r.seconds:.2f}" + ("" if r.valid else "✗")
                            for r in res.runs if r.tool == t)
        for t in res.tools)
    out += [f"runs in order (s, ✗ = invalid): {per_tool}", ""]
    return out


def invalid_section(results: list[Result]) -> list[str]:
    bad = [(res.workload.wid, r) for res in results for r in res.runs if not r.valid]
    if not bad:
        return ["All runs verified (entries, sizes, modes, mtimes, sampled content).", ""]
    out = ["## ⚠ INVALID RUNS (left out of every figure above)", ""]
    for wid, r in bad:
        out.append(f"- {wid} {r.tool} round {r.round}: " + "; ".join(p.replace("\n", " ")
                                                                      for p in r.problems))
    return out + [""]


def summary(ctx: Context, facts: list[str], results: list[Result], notes: list[str]) -> str:
    mode = "cold page cache (sync + drop_caches before each run)" if ctx.cold else \
        "warm page cache (sync + source re-read before each run)"
    runs = f"{ctx.runs} per tool" if ctx.runs else "5 per tool (W1, W4, W5), 3 (W2, W3, W6)"
    lines = ["# Blit local benchmark", ""]
    lines += [f"- {f}" for f in facts]
    lines += [f"- mode: {mode}; tools interleaved in rounds (order rotated each round); runs: {runs}; "
              f"timed: spawn to exit{' + sync' if ctx.include_sync else ''}; "
              f"scale {ctx.scale:g}"]
    if ctx.scale != 1:
        lines.append("- ⚠ scaled-down smoke run: the targets do not apply to these figures")
    lines += [f"- ⚠ {n}" for n in notes]
    lines += ["", "## Commands", "", "| tool | copy (W1, W2, W3, W6) | mirror (W4, W5) |",
              "| --- | --- | --- |"]
    for tool in ctx.tools:
        mirror = "(not run)" if tool == "cp" else f"`{command_template(tool, True)}`"
        lines.append(f"| {TOOL_LABELS[tool]} | `{command_template(tool, False)}` | {mirror} |")
    lines += ["", "W4/W5: each destination is a fresh `cp -a` of the pristine W1 tree "
              "(untimed). Ratio = peer median / blit median (> 1: blit is faster).", ""]
    for res in results:
        lines += workload_table(res, ctx.cold)
    lines += invalid_section(results)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def add_common_args(p):
    """The options bench.py and remote.py share (work area, cache mode, sizes, output)."""
    p.add_argument("--cold", action="store_true",
                   help="drop the page cache before each run instead of warming the source")
    p.add_argument("--w2-size-gib", type=float, default=4.0,
                   help="size of W2's file in GiB (default: %(default)s)")
    p.add_argument("--out", help="also write the Markdown summary to this file")
    p.add_argument("--scale", type=float, default=1.0,
                   help="multiply file counts and big-file sizes (e.g. 0.01 for a smoke run)")
    p.add_argument("--rm-cooldown", type=float, default=300.0,
                   help="at start, wait until this many seconds have passed since the "
                        "harness last removed a large tree under --root (default: 300; "
                        "0 disables)")
    p.add_argument("--include-sync", action="store_true",
                   help="include a sync after the tool exits in the timed region")


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--blit", default=str(REPO_ROOT / "target/release/blit"),
                   help="blit binary (default: %(default)s)")
    p.add_argument("--root", default="/tmp/blit-bench",
                   help="work directory: cached sources and per-suite destinations "
                        "(default: %(default)s)")
    p.add_argument("--runs", type=int, help="runs per tool (default: 5 for W1/W4/W5, "
                                            "3 for W2/W3/W6)")
    p.add_argument("--workloads", default=",".join(DEFAULT_WORKLOADS),
                   help="comma-separated subset of W1..W6 (default: %(default)s)")
    add_common_args(p)
    p.add_argument("--peers", default=",".join(ALL_PEERS),
                   help="comma-separated subset of rsync,rsync-tuned,cp (default: %(default)s)")
    p.add_argument("--settle", type=float, default=3.0,
                   help="seconds to wait after preparing a W4/W5 destination (default: 3)")
    p.add_argument("--keep", action="store_true",
                   help="keep this suite's destinations instead of deleting them at the end")
    p.add_argument("--clean", action="store_true",
                   help="delete --root entirely (cached sources too) and exit")
    args = p.parse_args(argv)
    args.workload_list = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    args.peer_list = [t.strip() for t in args.peers.split(",") if t.strip()]
    for w in args.workload_list:
        if w not in ALL_WORKLOADS:
            p.error(f"unknown workload {w!r} (choose from {','.join(ALL_WORKLOADS)})")
    for t in args.peer_list:
        if t not in ALL_PEERS:
            p.error(f"unknown peer {t!r} (choose from {','.join(ALL_PEERS)})")
    if args.scale <= 0 or args.w2_size_gib <= 0 or (args.runs is not None and args.runs < 1):
        p.error("--scale, --w2-size-gib and --runs must be positive")
    return args


def available_tools(peers: list[str]) -> tuple[list[str], list[str]]:
    """(tools to run, notes about skipped peers)."""
    tools, notes = ["blit"], []
    for peer in peers:
        exe = "cp" if peer == "cp" else "rsync"
        if shutil.which(exe):
            tools.append(peer)
        else:
            msg = f"{exe} is not installed: skipping peer {peer}"
            if exe == "rsync":
                msg += " (install it with: apt-get install -y rsync)"
            notes.append(msg)
            shout(msg)
    return tools, notes


def cold_permitted(cold: bool, notes: list[str]) -> bool:
    if not cold:
        return False
    if drop_caches():
        return True
    msg = ("--cold: writing /proc/sys/vm/drop_caches is not permitted here; "
           "running with a warm cache instead")
    notes.append(msg)
    shout(msg)
    return False


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    root = Path(args.root).resolve()
    if args.clean:
        log(f"removing {root}")
        remove_tree(root)
        return 0
    blit = str(Path(args.blit).resolve())
    if not (os.path.isfile(blit) and os.access(blit, os.X_OK)):
        print(f"blit binary not found or not executable: {blit}\n"
              "build it (cargo build --release) or pass --blit PATH", file=sys.stderr)
        return 2
    notes: list[str] = []
    tools, skipped = available_tools(args.peer_list)
    notes += skipped
    suite = dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    ctx = Context(blit=blit, root=root, src_root=root / "src", run_dir=root / "runs" / suite,
                  scale=args.scale, w2_size=max(MIB, round(args.w2_size_gib * args.scale * GIB)),
                  runs=args.runs, cold=cold_permitted(args.cold, notes), settle=args.settle,
                  include_sync=args.include_sync, tools=tools)
    ctx.src_root.mkdir(parents=True, exist_ok=True)
    wait_after_removal(root, args.rm_cooldown)
    ctx.run_dir.mkdir(parents=True)
    results: list[Result] = []
    try:
        facts = machine_facts(ctx)
        for wid in args.workload_list:
            results.append(run_workload(ctx, wid))
    finally:
        if args.keep:
            log(f"keeping destinations under {ctx.run_dir}")
        else:
            log(f"removing this suite's destinations ({ctx.run_dir}); file creation on this "
                "filesystem may be slow for a few minutes afterwards")
            remove_tree(ctx.run_dir)
            note_removal(root)
    text = summary(ctx, facts, results, notes)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        log(f"summary written to {args.out}")
    invalid = any(not r.valid for res in results for r in res.runs)
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
