#!/usr/bin/env python3
"""Runs the workspace's test binaries side by side, each in its own process.

`cargo test` runs one binary after another, and most of our suites spend their time
waiting (simulators, engines, deadlines) while a few are CPU-bound (`generated`, `kit`):
run one after another they took 4.5 min on 2 cores. Here cargo builds the binaries
(`--no-run`), then up to `--jobs` of them run at once, the longest first. Each binary
still runs in a process of its own, as under `cargo test` (the hostile suite measures its
own RSS, the cache suite changes its working directory), from its package's directory,
with the same arguments.

The output of a binary is printed whole when it ends, so suites never interleave; the
run fails if any binary fails, after all have run, and lists which. Doc-tests are not
run: no crate here has a runnable example (`doctest = false` in each library).

  python3 scripts/run-tests.py [--jobs N] [-- <test binary arguments, e.g. a filter>]
"""

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

# Every crate's unit tests and the integration suites, the guest crates included: only
# their test harness is built (`--lib`, not their cdylib, which links only for
# wasm32-wasip2). One selection, so features unify as in `just build` and nothing is
# compiled twice (built apart, the guests' tests recompiled 33 crates: 56 s on 2 cores).
# The bench has no tests (`lint` still checks it).
SELECTION = ["--workspace", "--exclude", "sandbox-bench", "--lib", "--bins", "--tests"]

# Seconds each took alone on a 2-core machine (warm tree, 8 tests at a time, 2026-12-03):
# the longest start first so the run does not end on one of them alone. Unlisted
# binaries take under a second.
EXPECTED = {
    "generated": 91, "conformance": 66, "kit": 47, "hostile": 34, "reload": 22,
    "cache": 14, "e2b_sdk": 13, "bridge": 10, "engine": 9, "faults": 9,
}

# CPU-bound suites (generated inputs; the kit's compiles) run at a lower priority: they
# only need throughput, while the others assert deadlines and bounded waits, which a
# saturated CPU would stretch (hostile's "a call ends within 5 s" failed at 5.5 s).
BACKGROUND = {"generated", "kit"}


def build(args):
    """Builds the test binaries for `args`; returns (name, executable, package dir)."""
    cmd = ["cargo", "test", "--no-run", "--message-format=json-render-diagnostics", *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    found = []
    for line in proc.stdout:
        msg = json.loads(line)
        if msg.get("reason") != "compiler-artifact" or not msg.get("executable") or not msg["profile"]["test"]:
            continue
        target = msg["target"]
        name = target["name"] if "test" in target["kind"] else f"{target['name']} ({target['kind'][0]})"
        found.append((name, msg["executable"], os.path.dirname(msg["manifest_path"])))
    if proc.wait() != 0:
        sys.exit(f"error: `{' '.join(cmd)}` failed")
    return found


def run(name, exe, cwd, extra, lock):
    started = time.monotonic()
    nice = (lambda: os.nice(10)) if name in BACKGROUND else None
    out = subprocess.run(
        [exe, *extra], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, errors="replace", preexec_fn=nice
    )
    took = time.monotonic() - started
    with lock:
        status = "ok" if out.returncode == 0 else f"FAILED (exit {out.returncode})"
        print(f"\n──── {name}: {status} in {took:.1f} s ({os.path.relpath(exe)})", flush=True)
        print(out.stdout.rstrip(), flush=True)
    return name, out.returncode == 0, took


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("TEST_JOBS", "4")), help="test binaries at once (TEST_JOBS)")
    parser.add_argument("extra", nargs="*", help="passed to every test binary")
    opts = parser.parse_args()
    os.chdir(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
    os.environ.setdefault("RUST_TEST_THREADS", "8")
    started = time.monotonic()
    suites = sorted(build(SELECTION), key=lambda s: -EXPECTED.get(s[0], 0))
    print(f"running {len(suites)} test binaries, {opts.jobs} at a time (RUST_TEST_THREADS={os.environ['RUST_TEST_THREADS']})", flush=True)
    lock = threading.Lock()
    with ThreadPoolExecutor(max_workers=opts.jobs) as pool:
        results = [r.result() for r in [pool.submit(run, *s, opts.extra, lock) for s in suites]]
    failed = [name for name, ok, _ in results if not ok]
    total = sum(took for _, _, took in results)
    print(f"\n{len(results)} test binaries in {time.monotonic() - started:.0f} s ({total:.0f} s if run one after another)")
    if failed:
        sys.exit(f"failed: {', '.join(failed)}")


if __name__ == "__main__":
    main()
