#!/usr/bin/env python3
"""Remote (loopback) benchmark for Blit: R1/R2 of shared/design/benchmarks.md.

W1 (100,000 x 4 KiB files) and W2 (one 4 GiB file), pushed to and pulled from an agent on
127.0.0.1, against rsync through its daemon on 127.0.0.1 and against local references, all
in the same run. It reuses bench.py for everything that is not specific to the network:
the deterministic sources (same generators, same cache under ROOT/src/), the cache state
before each run (--cold), the timing and client peak RSS (GNU time), the verification of
every destination, the disk-space check, and the machine facts.

Per suite:

1. Starts `blitd --port 0 --no-mdns --module bench=ROOT` once and reads its port from the
   first stdout line ("blitd listening on 127.0.0.1:PORT (data port N)"), and
   `rsync --daemon --no-detach` on a free port (found by binding a socket to port 0 and
   releasing it) with a module `bench` at the same ROOT (use chroot = no, read only = no,
   uid/gid of the current user). The sources and every destination live under ROOT, so
   both daemons see them: a push writes into ROOT/runs/<suite>/<W>/dst-..., a pull reads
   the cached source ROOT/src/<W>-.../.
2. Per workload, each round runs every tool once, in an order rotated each round:
   blit push, rsync-daemon push, blit pull, rsync-daemon pull (as selected by --routes),
   then the references blit local copy and (W2) cp -a. Each run starts from a new empty
   destination; W2's destinations are removed after each verified run.
3. blitd's peak RSS per run: /proc/<pid>/clear_refs is set to 5 (reset the high-water
   mark) before each blit run and VmHWM is read from /proc/<pid>/status after it; the
   suite's peak is also read at the end. The client's peak RSS comes from GNU time.
4. Prints a Markdown summary: per workload the medians, min-max, MB/s, peak RSS, and the
   ratios with their targets (rsync daemon / blit >= 1.8x W1, >= 2x W2; blit remote /
   blit local <= 1.3x W1; cp -a / blit remote >= 0.7x W2). Both daemons are stopped by pid.

Python 3.11 standard library only (plus rsync and GNU time). Progress goes to stderr, the
summary to stdout.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import bench as B

WORKLOADS = ["W1", "W2"]
ROUTES = ["push", "pull"]
HOST = "127.0.0.1"
MODULE = "bench"

LABELS = {
    "blit-push": "blit push → blitd",
    "rsyncd-push": "rsync -a push → rsync daemon",
    "blit-pull": "blit pull ← blitd",
    "rsyncd-pull": "rsync -a pull ← rsync daemon",
    "blit-local": "blit local copy (reference)",
    "cp": "cp -a local (reference)",
}

# (workload) -> targets. rsync: rsync-daemon median / blit remote median >= x;
# local: blit remote median / blit local median <= x; cp: cp median / blit remote median >= x.
TARGETS = {
    "W1": {"rsync": 1.8, "local": 1.3},
    "W2": {"rsync": 2.0, "cp": 0.7},
}


# --------------------------------------------------------------------------------------------
# Daemons
# --------------------------------------------------------------------------------------------

def free_port() -> int:
    """A port that was free a moment ago (bind to port 0, read it, release it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def listening(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=0.5):
            return True
    except OSError:
        return False


def stop(proc: subprocess.Popen | None, name: str) -> None:
    """SIGTERM to this pid, then SIGKILL to it if it has not exited within 10 s."""
    if proc is None or proc.poll() is not None:
        return
    B.log(f"stopping {name} (pid {proc.pid})")
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@dataclass
class Agent:
    proc: subprocess.Popen
    port: int
    data_port: int
    line: str
    log: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def status_kib(self, key: str) -> int | None:
        """A field of /proc/<pid>/status in KiB (VmHWM, VmRSS)."""
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(key + ":"):
                        return int(line.split()[1])
        except (OSError, ValueError, IndexError):
            pass
        return None

    def reset_peak(self) -> bool:
        """Resets VmHWM to the current RSS (Linux >= 4.0); False if not permitted."""
        try:
            with open(f"/proc/{self.proc.pid}/clear_refs", "w") as f:
                f.write("5\n")
            return True
        except OSError:
            return False


def start_blitd(blitd: str, root: Path, logs: Path) -> Agent:
    out, err = logs / "blitd.stdout", logs / "blitd.log"
    cmd = [blitd, "--port", "0", "--no-mdns", "--module", f"{MODULE}={root}"]
    B.log("starting " + " ".join(cmd))
    with open(out, "wb") as o, open(err, "wb") as e:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=o, stderr=e)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        text = out.read_text(errors="replace")
        if "\n" in text:
            line = text.splitlines()[0]
            m = re.search(r"127\.0\.0\.1:(\d+).*data port (\d+)", line)
            if not m:
                stop(proc, "blitd")
                raise SystemExit(f"unexpected first line from blitd: {line!r}")
            return Agent(proc, int(m.group(1)), int(m.group(2)), line, err)
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop(proc, "blitd")
    raise SystemExit(f"blitd did not report its port (exit {proc.poll()}):\n{B.tail(err)}")


def start_rsyncd(root: Path, logs: Path) -> tuple[subprocess.Popen, int, Path]:
    """rsync --daemon on a free port, module `bench` at root; (process, port, config)."""
    conf = logs / "rsyncd.conf"
    conf.write_text(
        f"log file = {logs / 'rsyncd.log'}\n"
        "use chroot = no\n"
        "reverse lookup = no\n"
        f"[{MODULE}]\n"
        f"    path = {root}\n"
        "    use chroot = no\n"
        "    read only = no\n"
        f"    uid = {os.getuid()}\n"
        f"    gid = {os.getgid()}\n")
    for _ in range(5):                      # the free port may be taken in between: retry
        port = free_port()
        cmd = ["rsync", "--daemon", "--no-detach", f"--config={conf}", f"--port={port}",
               f"--address={HOST}"]
        B.log("starting " + " ".join(cmd))
        with open(logs / "rsyncd.stderr", "ab") as e:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=e, stderr=e)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and proc.poll() is None:
            if listening(port):
                return proc, port, conf
            time.sleep(0.05)
        stop(proc, "rsync daemon")
    raise SystemExit("rsync --daemon did not start:\n" + B.tail(logs / "rsyncd.stderr") +
                     "\n" + B.tail(logs / "rsyncd.log"))


# --------------------------------------------------------------------------------------------
# Commands and runs
# --------------------------------------------------------------------------------------------

@dataclass
class Setup:
    ctx: B.Context
    blit: str
    blitd: str
    agent: Agent
    rsyncd: subprocess.Popen
    rsync_port: int
    peak_reset: bool


def remote_path(ctx: B.Context, local: Path) -> str:
    """/bench/<path of `local` relative to ROOT>."""
    return f"/{MODULE}/{local.relative_to(ctx.root)}"


def command(tool: str, blit: str, agent_port: int | str, rsync_port: int | str,
            rel_src: str, rel_dst: str, src: Path, dst: Path) -> list[str]:
    """The command of one tool; rel_* are the module paths (/bench/...) of src and dst."""
    flags = ["--no-progress", "--no-history"]
    if tool == "blit-push":
        return [blit, "copy", *flags, f"{src}/", f"{HOST}:{agent_port}:{rel_dst}"]
    if tool == "blit-pull":
        return [blit, "copy", *flags, f"{HOST}:{agent_port}:{rel_src}/", f"{dst}"]
    if tool == "rsyncd-push":
        return ["rsync", "-a", f"{src}/", f"rsync://{HOST}:{rsync_port}{rel_dst}/"]
    if tool == "rsyncd-pull":
        return ["rsync", "-a", f"rsync://{HOST}:{rsync_port}{rel_src}/", f"{dst}/"]
    if tool == "blit-local":
        return B.tool_command("blit", blit, False, src, dst)
    if tool == "cp":
        return B.tool_command("cp", blit, False, src, dst)
    raise ValueError(tool)


def command_template(tool: str) -> str:
    cmd = command(tool, "blit", "PORT", "PORT", f"/{MODULE}/SRC", f"/{MODULE}/DST",
                  Path("SRC"), Path("DST"))
    return " ".join(cmd)


@dataclass
class RemoteRun(B.Run):
    agent_rss_mib: float | None = None     # blitd's peak RSS during this run (blit-push/pull)


def run_one(s: Setup, wl: B.Workload, src: B.Prepared, tool: str, rnd: int) -> RemoteRun:
    ctx = s.ctx
    dst = ctx.run_dir / wl.wid / f"dst-{tool}-{rnd}"
    B.prepare_destination(ctx, wl, dst)
    B.set_cache_state(ctx, wl)
    cmd = command(tool, s.blit, s.agent.port, s.rsync_port,
                  remote_path(ctx, wl.source.path), remote_path(ctx, dst), wl.source.path, dst)
    log_path = ctx.run_dir / wl.wid / f"{tool}.log"
    remote_blit = tool in ("blit-push", "blit-pull")
    daemon_down = None
    if remote_blit and not s.agent.alive():
        daemon_down = f"blitd is not running (exit {s.agent.proc.poll()})"
    if tool.startswith("rsyncd") and s.rsyncd.poll() is not None:
        daemon_down = f"the rsync daemon is not running (exit {s.rsyncd.poll()})"
    if daemon_down:
        B.shout(f"{wl.wid} {tool} round {rnd}: {daemon_down}")
        return RemoteRun(tool, rnd, 0.0, 0.0, [daemon_down])
    if remote_blit and s.peak_reset:
        s.agent.reset_peak()
    seconds, code, rss = B.timed(cmd, log_path, ctx.include_sync)
    agent_rss = None
    if remote_blit:
        hwm = s.agent.status_kib("VmHWM")
        agent_rss = hwm / 1024 if hwm is not None else None
    problems = [f"exit code {code}: {B.tail(log_path)}"] if code != 0 else []
    if remote_blit and not s.agent.alive():
        problems.append(f"blitd exited during the run (exit {s.agent.proc.poll()}): "
                        + B.tail(s.agent.log))
    if not problems:
        problems = B.verify(src, dst)
    status = "verified" if not problems else "INVALID"
    agent_txt = f"  blitd {agent_rss:7.1f} MiB" if agent_rss is not None else ""
    B.log(f"[{wl.wid}] round {rnd} {tool:<11} {seconds:8.2f} s  client {rss:7.1f} MiB"
          f"{agent_txt}  {status}")
    if problems:
        B.shout(f"{wl.wid} {tool} round {rnd}: VERIFICATION FAILED, figure discarded\n    "
                + "\n    ".join(problems) + f"\n    destination kept: {dst}")
    if not wl.keep_dsts and not problems:    # an invalid one stays until the suite ends
        B.remove_tree(dst)
        os.sync()
    return RemoteRun(tool, rnd, seconds, rss, problems, agent_rss)


def workload_tools(wid: str, routes: list[str]) -> list[str]:
    tools = []
    for route in routes:
        tools += [f"blit-{route}", f"rsyncd-{route}"]
    tools.append("blit-local")
    if wid == "W2":
        tools.append("cp")
    return tools


def run_workload(s: Setup, wid: str, routes: list[str]) -> B.Result:
    ctx = s.ctx
    wl = B.make_workload(ctx, wid)
    tools = workload_tools(wid, routes)
    src = B.prepare_source(wl)
    rounds, note = B.rounds_that_fit(ctx, wl, src, len(tools), ctx.runs)
    notes = [note] if note else []
    if note:
        B.shout(f"{wid}: {note}")
    (ctx.run_dir / wid).mkdir(parents=True, exist_ok=True)
    if wid == "W2" and rounds:
        B.w2_warmup(ctx, wl)
    runs: list[B.Run] = []
    for rnd in range(1, rounds + 1):
        shift = (rnd - 1) % len(tools)      # rotate who goes first (see bench.py)
        for tool in tools[shift:] + tools[:shift]:
            runs.append(run_one(s, wl, src, tool, rnd))
    return B.Result(wl, tools, runs, rounds, notes, B.tree_totals(src.index))


# --------------------------------------------------------------------------------------------
# Summary
# --------------------------------------------------------------------------------------------

def workload_table(res: B.Result, routes: list[str]) -> list[str]:
    wl = res.workload
    files, dirs, size = res.source_totals
    out = [f"## {wl.wid} — {wl.title}", "",
           f"source as generated: {B.count(files, 'file')} in "
           f"{B.count(dirs, 'subdirectory')}, {size / B.MIB:,.1f} MiB; "
           f"{B.count(res.rounds, 'interleaved round')}", ""]
    out += [f"> ⚠ {n}" for n in res.notes]
    if res.notes:
        out.append("")
    if not res.rounds:
        return out + ["Not run.", ""]
    out += ["| tool | valid runs | median s | min–max s | MB/s | client peak RSS MiB | "
            "blitd peak RSS MiB |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for tool in res.tools:
        ok = res.valid(tool)
        total = sum(1 for r in res.runs if r.tool == tool)
        if not ok:
            out.append(f"| {LABELS[tool]} | 0/{total} | — | — | — | — | — |")
            continue
        med = B.median(ok)
        lo, hi = min(r.seconds for r in ok), max(r.seconds for r in ok)
        agent = [r.agent_rss_mib for r in ok if getattr(r, "agent_rss_mib", None) is not None]
        agent_cell = f"{max(agent):.1f}" if agent else "—"
        out.append(f"| {LABELS[tool]} | {len(ok)}/{total} | {med:.2f} | {lo:.2f}–{hi:.2f} | "
                   f"{size / med / 1e6:,.0f} | {max(r.rss_mib for r in ok):.1f} | "
                   f"{agent_cell} |")
    out.append("")
    out += ratio_table(res, routes)
    per_tool = "; ".join(
        f"{t}: " + " ".join(f"{r.seconds:.2f}" + ("" if r.valid else "✗")
                            for r in res.runs if r.tool == t)
        for t in res.tools)
    out += [f"runs in order (s, ✗ = invalid): {per_tool}", ""]
    return out


def ratio_table(res: B.Result, routes: list[str]) -> list[str]:
    wid = res.workload.wid
    targets = TARGETS.get(wid, {})
    med = {t: B.median(res.valid(t)) for t in res.tools}

    def cell(num: str, den: str, target: float | None, at_least: bool) -> str:
        a, b = med.get(num), med.get(den)
        if a is None or b is None:
            return "no data"
        ratio = a / b
        if target is None:
            return f"{ratio:.2f}×"
        return f"{ratio:.2f}× {B.mark(ratio >= target if at_least else ratio <= target)}"

    def target_text(key: str, at_least: bool) -> str:
        return (f"{'≥' if at_least else '≤'} {targets[key]}×" if key in targets
                else "— (no target)")

    rows = [
        ("rsync daemon / blit (> 1: blit is faster)",
         lambda r: cell(f"rsyncd-{r}", f"blit-{r}", targets.get("rsync"), True),
         target_text("rsync", True)),
        ("blit remote / blit local (1: as fast as local)",
         lambda r: cell(f"blit-{r}", "blit-local", targets.get("local"), False),
         target_text("local", False)),
    ]
    if "cp" in res.tools:
        rows.append(("cp -a / blit remote (> 1: blit is faster)",
                     lambda r: cell("cp", f"blit-{r}", targets.get("cp"), True),
                     target_text("cp", True)))
    out = ["| ratio of medians | " + " | ".join(routes) + " | target |",
           "| --- | " + " | ".join("---:" for _ in routes) + " | --- |"]
    for label, fn, target in rows:
        out.append(f"| {label} | " + " | ".join(fn(r) for r in routes) + f" | {target} |")
    return out + [""]


def summary(s: Setup, facts: list[str], results: list[B.Result], notes: list[str],
            routes: list[str], agent_end: str) -> str:
    ctx = s.ctx
    mode = "cold page cache (sync + drop_caches before each run)" if ctx.cold else \
        "warm page cache (sync + source re-read before each run)"
    lines = ["# Blit remote (loopback) benchmark", ""]
    lines += [f"- {f}" for f in facts]
    lines += [
        f"- blitd: {s.blitd} ({B.version_of([s.blitd, '--version'])}); "
        f"`{s.agent.line.strip()}`; module {MODULE}={ctx.root}",
        f"- rsync daemon: `rsync --daemon --no-detach --port={s.rsync_port} "
        f"--address={HOST}`, module {MODULE} at {ctx.root} (use chroot = no, "
        f"read only = no, uid {os.getuid()}, gid {os.getgid()})",
        f"- blitd peak RSS: {agent_end}",
        f"- mode: {mode}; tools and routes interleaved in rounds (order rotated each round); "
        f"runs: {ctx.runs} per tool; timed: spawn to exit of the client"
        f"{' + sync' if ctx.include_sync else ''}; scale {ctx.scale:g}; routes "
        f"{','.join(routes)}",
    ]
    if ctx.scale != 1:
        lines.append("- ⚠ scaled-down smoke run: the targets do not apply to these figures")
    lines += [f"- ⚠ {n}" for n in notes]
    lines += ["", "## Commands", "", "| tool | command |", "| --- | --- |"]
    for tool in ["blit-push", "rsyncd-push", "blit-pull", "rsyncd-pull", "blit-local", "cp"]:
        if tool.split("-")[-1] in ROUTES and tool.split("-")[-1] not in routes:
            continue
        lines.append(f"| {LABELS[tool]} | `{command_template(tool)}` |")
    lines += ["", f"Sources and destinations are under {ctx.root} (= /{MODULE} in both "
              "daemons); each destination is new and empty. cp -a runs for W2 only. "
              "MB/s = source bytes / median.", ""]
    for res in results:
        lines += workload_table(res, routes)
    lines += B.invalid_section(results)
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--bin-dir", default=str(B.REPO_ROOT / "target/release"),
                   help="directory holding blit and blitd (default: %(default)s)")
    p.add_argument("--root", default="/tmp/blit-bench",
                   help="work directory shared with bench.py: cached sources and per-suite "
                        "destinations; exported as module 'bench' (default: %(default)s)")
    p.add_argument("--runs", type=int, default=5, help="runs per tool (default: 5)")
    p.add_argument("--workloads", default=",".join(WORKLOADS),
                   help="comma-separated subset of W1,W2 (default: %(default)s)")
    p.add_argument("--routes", default=",".join(ROUTES),
                   help="comma-separated subset of push,pull (default: %(default)s)")
    B.add_common_args(p)
    p.add_argument("--keep", action="store_true",
                   help="keep this suite's destinations and daemon logs")
    args = p.parse_args(argv)
    args.workload_list = [w.strip().upper() for w in args.workloads.split(",") if w.strip()]
    args.route_list = [r.strip().lower() for r in args.routes.split(",") if r.strip()]
    for w in args.workload_list:
        if w not in WORKLOADS:
            p.error(f"unknown workload {w!r} (choose from {','.join(WORKLOADS)})")
    for r in args.route_list:
        if r not in ROUTES:
            p.error(f"unknown route {r!r} (choose from {','.join(ROUTES)})")
    args.route_list = [r for r in ROUTES if r in args.route_list]     # push before pull
    if not args.route_list or not args.workload_list:
        p.error("--workloads and --routes must name at least one")
    if args.scale <= 0 or args.w2_size_gib <= 0 or args.runs < 1:
        p.error("--scale, --w2-size-gib and --runs must be positive")
    return args


def executable(path: str) -> bool:
    return os.path.isfile(path) and os.access(path, os.X_OK)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    root = Path(args.root).resolve()
    bin_dir = Path(args.bin_dir).resolve()
    blit, blitd = str(bin_dir / "blit"), str(bin_dir / "blitd")
    for exe in (blit, blitd):
        if not executable(exe):
            print(f"not found or not executable: {exe}\n"
                  "build it (cargo build --release) or pass --bin-dir DIR", file=sys.stderr)
            return 2
    if not shutil.which("rsync"):
        print("rsync is not installed (apt-get install -y rsync)", file=sys.stderr)
        return 2
    notes: list[str] = []
    suite = dt.datetime.now().strftime("%Y%m%d-%H%M%S") + "-remote"
    ctx = B.Context(blit=blit, root=root, src_root=root / "src", run_dir=root / "runs" / suite,
                    scale=args.scale,
                    w2_size=max(B.MIB, round(args.w2_size_gib * args.scale * B.GIB)),
                    runs=args.runs, cold=B.cold_permitted(args.cold, notes), settle=0.0,
                    include_sync=args.include_sync, tools=["blit", "rsync", "cp"])
    ctx.src_root.mkdir(parents=True, exist_ok=True)
    B.wait_after_removal(root, args.rm_cooldown)
    ctx.run_dir.mkdir(parents=True)
    logs = ctx.run_dir / "daemons"
    logs.mkdir()
    agent = rsyncd = None
    results: list[B.Result] = []
    try:
        facts = B.machine_facts(ctx)
        agent = start_blitd(blitd, root, logs)
        B.log(f"blitd: {agent.line.strip()} (pid {agent.proc.pid})")
        rsyncd, rsync_port, _ = start_rsyncd(root, logs)
        B.log(f"rsync daemon on {HOST}:{rsync_port} (pid {rsyncd.pid})")
        peak_reset = agent.reset_peak()
        if not peak_reset:
            msg = ("cannot reset blitd's VmHWM (/proc/<pid>/clear_refs): its per-run peak "
                   "RSS is cumulative over the suite")
            notes.append(msg)
            B.shout(msg)
        setup = Setup(ctx, blit, blitd, agent, rsyncd, rsync_port, peak_reset)
        for wid in args.workload_list:
            results.append(run_workload(setup, wid, args.route_list))
        hwm, cur = agent.status_kib("VmHWM"), agent.status_kib("VmRSS")
        per_run = [r.agent_rss_mib for res in results for r in res.runs
                   if getattr(r, "agent_rss_mib", None) is not None]
        suite_peak = max(per_run + ([hwm / 1024] if hwm is not None else []), default=None)
        agent_end = ("unknown (blitd's /proc status not readable)" if suite_peak is None else
                     f"{suite_peak:.1f} MiB over the suite (largest per-run VmHWM, "
                     f"{'reset before each blit run' if peak_reset else 'never reset'}); "
                     f"at the end VmHWM {hwm / 1024 if hwm else 0:.1f} MiB, "
                     f"VmRSS {cur / 1024 if cur else 0:.1f} MiB")
        if not agent.alive():
            msg = f"blitd exited before the end of the suite (exit {agent.proc.poll()})"
            notes.append(msg)
            B.shout(msg)
    finally:
        stop(agent.proc if agent else None, "blitd")
        stop(rsyncd, "rsync daemon")
        if args.keep:
            B.log(f"keeping destinations and daemon logs under {ctx.run_dir}")
        else:
            B.log(f"removing this suite's destinations ({ctx.run_dir}); file creation on "
                  "this filesystem may be slow for a few minutes afterwards")
            B.remove_tree(ctx.run_dir)
            B.note_removal(root)
    text = summary(setup, facts, results, notes, args.route_list, agent_end)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")
        B.log(f"summary written to {args.out}")
    invalid = any(not r.valid for res in results for r in res.runs)
    return 1 if invalid else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
