"""Drives an E2B-compatible API with the unmodified official E2B Python SDK (e2b==2.63.0).

Run by tests/e2b_sdk/main.rs against sandbox-host's E2B facade; it can also be pointed at
any E2B-shaped endpoint by hand. Plain script, no pytest: one line per step passed, exit 0
on success, exit 1 with the failing step and why on the first failure. Every sandbox it
created is killed on the way out, whatever happened.

Environment:
  E2B_API_URL, E2B_SANDBOX_URL  the facade (one origin serves the control plane and envd)
  E2B_API_KEY                   alice's key (an unlimited key)
  FLOW_BOB_KEY                  a second unlimited key (isolation from alice)
  FLOW_CAPPED_KEY               a key with max_sandboxes = 1 and a low rate per minute
  FLOW_CAPPED_RATE              that key's requests per minute
  FLOW_TEMPLATE                 the template to create, e.g. `morph/snapshot_base`

Paths in the file steps are relative on purpose: the simulators behind the facade map
absolute paths into a per-sandbox folder for their file APIs but run commands on the real
machine, so only paths relative to the sandbox's home agree between files and commands.
"""

import os
import sys
import time
import traceback
from datetime import datetime, timezone

try:
    from e2b import (
        AuthenticationException,
        CommandExitException,
        FileNotFoundException,
        FileType,
        RateLimitException,
        Sandbox,
        SandboxNotFoundException,
        SandboxNotRunningException,
        SandboxState,
        SandboxUnreachableException,
        TimeoutException,
    )
    import importlib.metadata

    SDK_VERSION = importlib.metadata.version("e2b")
except ImportError as e:  # pragma: no cover - the Rust test checks this first
    print(f"FAIL: the e2b SDK is not installed ({e}); run `bash scripts/just python-deps`", flush=True)
    sys.exit(2)


class StepFailed(Exception):
    pass


def env(name):
    value = os.environ.get(name)
    if not value:
        print(f"FAIL: environment variable {name} is not set", flush=True)
        sys.exit(2)
    return value


TEMPLATE = env("FLOW_TEMPLATE")
ALICE = env("E2B_API_KEY")
BOB = env("FLOW_BOB_KEY")
CAPPED = env("FLOW_CAPPED_KEY")
CAPPED_RATE = int(env("FLOW_CAPPED_RATE"))
env("E2B_API_URL")
env("E2B_SANDBOX_URL")

METADATA = {"suite": "e2b-sdk-flow", "owner": "alice"}

# (sandbox id, api key) of everything created, killed in `finally`.
created = []


def check(cond, what):
    if not cond:
        raise StepFailed(what)


def expect_raises(exc_type, fn, what):
    """Calls fn(); it must raise exc_type. Returns the exception."""
    try:
        got = fn()
    except exc_type as e:
        return e
    except Exception as e:
        raise StepFailed(f"{what}: expected {exc_type.__name__}, got {type(e).__name__}: {e}") from e
    raise StepFailed(f"{what}: expected {exc_type.__name__}, got a return value {got!r}")


def list_all(api_key, **kw):
    """Every sandbox the key sees, over all pages (bounded)."""
    paginator = Sandbox.list(api_key=api_key, **kw)
    items = []
    for _ in range(50):
        if not paginator.has_next:
            return items
        items.extend(paginator.next_items())
    raise StepFailed("Sandbox.list() still had more pages after 50")


def create(api_key, **kw):
    sbx = Sandbox.create(TEMPLATE, api_key=api_key, **kw)
    created.append((sbx.sandbox_id, api_key))
    return sbx


def forget(sandbox_id):
    created[:] = [(i, k) for (i, k) in created if i != sandbox_id]


STEPS = []


def step(title):
    def register(fn):
        STEPS.append((title, fn))
        return fn

    return register


# State shared by the steps, in order.
S = {}


@step("create a sandbox (template, timeout, metadata, envs)")
def create_main():
    sbx = create(ALICE, timeout=120, metadata=METADATA, envs={"SBX_ENV": "from-create"})
    check(isinstance(sbx.sandbox_id, str) and sbx.sandbox_id, f"sandbox_id: {sbx.sandbox_id!r}")
    S["sbx"] = sbx
    return f"id {sbx.sandbox_id}"


@step("commands.run echo")
def run_echo():
    r = S["sbx"].commands.run("echo hello")
    check(r.stdout == "hello\n", f"stdout {r.stdout!r}, expected 'hello\\n'")
    check(r.exit_code == 0, f"exit_code {r.exit_code!r}")
    check(r.stderr == "", f"stderr {r.stderr!r}")


@step("a non-zero exit raises CommandExitException")
def run_exit_3():
    e = expect_raises(
        CommandExitException,
        lambda: S["sbx"].commands.run("echo out; echo err >&2; exit 3"),
        "commands.run('exit 3')",
    )
    check(e.exit_code == 3, f"exit_code {e.exit_code!r}, expected 3")
    check(e.stdout == "out\n", f"stdout {e.stdout!r}, expected 'out\\n'")
    check(e.stderr == "err\n", f"stderr {e.stderr!r}, expected 'err\\n'")


@step("envs, cwd and the sandbox-level env from create")
def run_env_cwd():
    r = S["sbx"].commands.run('pwd; echo "A=$A"; echo "SBX_ENV=$SBX_ENV"', envs={"A": "1"}, cwd="/tmp")
    lines = r.stdout.splitlines()
    check(lines == ["/tmp", "A=1", "SBX_ENV=from-create"], f"stdout {r.stdout!r}")
    # A command's envs override the sandbox's.
    r = S["sbx"].commands.run('echo "$SBX_ENV"', envs={"SBX_ENV": "from-run"})
    check(r.stdout == "from-run\n", f"run envs should override create envs: stdout {r.stdout!r}")


@step("on_stdout receives chunks while the command runs")
def run_streaming():
    chunks = []
    t0 = time.monotonic()
    r = S["sbx"].commands.run(
        "for i in 1 2 3; do echo $i; sleep 1; done",
        on_stdout=lambda c: chunks.append((time.monotonic(), c)),
    )
    done = time.monotonic()
    check(r.stdout == "1\n2\n3\n", f"stdout {r.stdout!r}")
    check(chunks, "on_stdout was never called")
    check("".join(c for _, c in chunks) == r.stdout, f"chunks {chunks!r} do not add up to stdout {r.stdout!r}")
    first = chunks[0][0]
    check(
        done - first >= 1.0,
        f"the first chunk came {done - first:.2f}s before run() returned (expected >= 1s): output was not "
        f"streamed; chunks at {[round(t - t0, 2) for t, _ in chunks]}s, run() took {done - t0:.2f}s",
    )
    return f"{len(chunks)} chunks, first {first - t0:.2f}s, returned {done - t0:.2f}s"


@step("a command timeout raises TimeoutException")
def run_timeout():
    # A duration no other process has, so the check below finds only this command.
    duration = f"30.{os.getpid() % 10000:04d}1"
    t0 = time.monotonic()
    sleep = lambda: S["sbx"].commands.run(f"sleep {duration}", timeout=2)  # noqa: E731
    e = expect_raises(TimeoutException, sleep, f"run('sleep {duration}', timeout=2)")
    took = time.monotonic() - t0
    check(took < 10, f"TimeoutException came after {took:.1f}s (timeout=2)")
    check(
        not isinstance(e, (SandboxNotRunningException, SandboxUnreachableException)),
        f"a command deadline should be a plain TimeoutException, got {type(e).__name__}: {e}",
    )
    # The deadline stopped the command in the sandbox too, not only the SDK's wait. The
    # pattern is a regex that does not match its own text (nor this shell's command line).
    pattern = duration.replace(".", "[.]")
    probe = f"grep -las '{pattern}' /proc/[0-9]*/cmdline || true"
    for _ in range(20):
        left = S["sbx"].commands.run(probe).stdout.split()
        if not left:
            break
        time.sleep(0.25)
    check(not left, f"`sleep {duration}` still runs {time.monotonic() - t0:.1f}s after its 2 s deadline: {left}")
    # The sandbox still works afterwards.
    r = S["sbx"].commands.run("echo after-timeout")
    check(r.stdout == "after-timeout\n", f"after the timeout: stdout {r.stdout!r}")
    return f"{type(e).__name__} after {took:.1f}s"


@step("files: make_dir, write, read (text, bytes), list, exists, remove")
def files():
    f = S["sbx"].files
    check(f.make_dir("sdkdata") is True, "make_dir('sdkdata') on a new dir should return True")
    check(f.make_dir("sdkdata") is False, "make_dir('sdkdata') on an existing dir should return False")

    text = "hello file\nhéllo ✓\n"
    info = f.write("sdkdata/a.txt", text)
    check(info.name == "a.txt", f"write() WriteInfo.name {info.name!r}")
    check(info.type == FileType.FILE, f"write() WriteInfo.type {info.type!r}")
    check(info.path.endswith("sdkdata/a.txt"), f"write() WriteInfo.path {info.path!r}")
    got = f.read("sdkdata/a.txt")
    check(got == text, f"read(text) {got!r}, expected {text!r}")
    got = f.read("sdkdata/a.txt", format="bytes")
    check(bytes(got) == text.encode(), f"read(bytes) {bytes(got)!r}")

    blob = bytes(range(256)) + b"\xff\xfe\x80\x00 not utf-8 \xc3\x28\n"
    f.write("sdkdata/b.bin", blob)
    got = f.read("sdkdata/b.bin", format="bytes")
    check(bytes(got) == blob, f"read(bytes) of non-UTF-8 data: {len(got)} bytes back, {len(blob)} written, differ")

    # files and commands see the same tree (relative paths resolve against the same home).
    r = S["sbx"].commands.run("cat sdkdata/a.txt; wc -c < sdkdata/b.bin; echo made-by-cmd > sdkdata/c.txt")
    check(r.stdout.splitlines() == ["hello file", "héllo ✓", str(len(blob))], f"commands see {r.stdout!r}")
    got = f.read("sdkdata/c.txt")
    check(got == "made-by-cmd\n", f"a file written by a command reads back {got!r}")

    # write creates missing parent directories (as envd does).
    f.write("sdkdata/deeper/d.txt", "deep")
    check(f.read("sdkdata/deeper/d.txt") == "deep", "a write into a new directory did not read back")

    entries = {e.name: e for e in f.list("sdkdata")}
    check(set(entries) == {"a.txt", "b.bin", "c.txt", "deeper"}, f"list('sdkdata') names {sorted(entries)}")
    check(entries["a.txt"].type == FileType.FILE, f"a.txt type {entries['a.txt'].type!r}")
    check(entries["deeper"].type == FileType.DIR, f"deeper type {entries['deeper'].type!r}")
    check(entries["b.bin"].size == len(blob), f"b.bin size {entries['b.bin'].size!r}, expected {len(blob)}")

    check(f.exists("sdkdata/a.txt") is True, "exists('sdkdata/a.txt') should be True")
    check(f.exists("sdkdata") is True, "exists('sdkdata') should be True")
    check(f.exists("sdkdata/missing.txt") is False, "exists('sdkdata/missing.txt') should be False")
    expect_raises(FileNotFoundException, lambda: f.read("sdkdata/missing.txt"), "read('sdkdata/missing.txt')")

    f.remove("sdkdata/a.txt")
    check(f.exists("sdkdata/a.txt") is False, "exists('sdkdata/a.txt') after remove should be False")
    check(f.exists("sdkdata/b.bin") is True, "remove('sdkdata/a.txt') removed b.bin too")
    f.remove("sdkdata/deeper")
    check(f.exists("sdkdata/deeper") is False, "remove('sdkdata/deeper') (a directory) left it there")


@step("Sandbox.list sees the sandbox with its metadata; limit=1 pages through two")
def listing():
    sbx = S["sbx"]
    mine = [s for s in list_all(ALICE) if s.sandbox_id == sbx.sandbox_id]
    check(len(mine) == 1, f"Sandbox.list() shows {len(mine)} entries for {sbx.sandbox_id}")
    check(mine[0].metadata == METADATA, f"listed metadata {mine[0].metadata!r}, expected {METADATA!r}")
    check(mine[0].state == SandboxState.RUNNING, f"listed state {mine[0].state!r}")
    check(mine[0].template_id == TEMPLATE, f"listed template_id {mine[0].template_id!r}, expected {TEMPLATE!r}")

    second = create(ALICE, timeout=120, metadata={"suite": "e2b-sdk-flow", "n": "2"})
    S["second"] = second
    paginator = Sandbox.list(limit=1)
    check(paginator.has_next, "a fresh paginator has_next")
    page1 = paginator.next_items()
    check(len(page1) == 1, f"page 1 with limit=1 has {len(page1)} items")
    check(paginator.has_next, "after page 1 of 2 (limit=1) has_next is False: no x-next-token header")
    page2 = paginator.next_items()
    check(len(page2) == 1, f"page 2 with limit=1 has {len(page2)} items")
    ids = {page1[0].sandbox_id, page2[0].sandbox_id}
    expected = {sbx.sandbox_id, second.sandbox_id}
    check(ids == expected, f"the two pages gave {sorted(ids)}, expected {sorted(expected)}")
    if paginator.has_next:
        rest = paginator.next_items()
        check(rest == [], f"a third page after both sandboxes has {[s.sandbox_id for s in rest]}")
    check(second.kill() is True, "killing the second sandbox")
    forget(second.sandbox_id)
    return "2 pages"


@step("get_info: template, state running, metadata")
def get_info():
    info = S["sbx"].get_info()
    check(info.sandbox_id == S["sbx"].sandbox_id, f"sandbox_id {info.sandbox_id!r}")
    check(info.template_id == TEMPLATE, f"template_id {info.template_id!r}, expected {TEMPLATE!r}")
    check(info.state == SandboxState.RUNNING, f"state {info.state!r}, expected running")
    check(info.metadata == METADATA, f"metadata {info.metadata!r}, expected {METADATA!r}")
    # create(timeout=120): E2B's timeout is the sandbox's lifetime, so end_at is about 2 min away.
    left = (info.end_at - datetime.now(timezone.utc)).total_seconds()
    check(30 < left <= 200, f"end_at {info.end_at.isoformat()} is {left:.0f}s away; create(timeout=120) wants ~120s")
    # Also through the static form, by id.
    again = Sandbox.get_info(S["sbx"].sandbox_id)
    check(again.sandbox_id == info.sandbox_id, f"Sandbox.get_info(id) gave {again.sandbox_id!r}")
    S["info"] = info
    return f"ends {info.end_at.isoformat()}"


@step("set_timeout(300) moves end_at later")
def set_timeout():
    before = S["info"].end_at
    S["sbx"].set_timeout(300)
    after = S["sbx"].get_info().end_at
    check(after > before, f"end_at {after.isoformat()} is not later than {before.isoformat()} (timeout 120 -> 300)")
    left = (after - datetime.now(timezone.utc)).total_seconds()
    check(200 < left <= 360, f"after set_timeout(300) end_at {after.isoformat()} is {left:.0f}s away")
    return f"+{(after - before).total_seconds():.0f}s"


@step("pause, state paused, connect resumes, commands run again")
def pause_resume():
    sbx = S["sbx"]
    check(sbx.pause() is True, "pause() should return True")
    info = sbx.get_info()
    check(info.state == SandboxState.PAUSED, f"state after pause {info.state!r}, expected paused")
    listed = [s for s in list_all(ALICE) if s.sandbox_id == sbx.sandbox_id]
    check(len(listed) == 1 and listed[0].state == SandboxState.PAUSED, f"Sandbox.list() after pause: {listed!r}")
    check(Sandbox.pause(sbx.sandbox_id) is False, "a second pause of a paused sandbox should return False (409)")
    resumed = Sandbox.connect(sbx.sandbox_id)
    check(resumed.sandbox_id == sbx.sandbox_id, f"connect() gave {resumed.sandbox_id!r}")
    state = resumed.get_info().state
    check(state == SandboxState.RUNNING, f"state after connect {state!r}, expected running")
    r = resumed.commands.run("echo resumed; cat sdkdata/c.txt")
    check(r.stdout == "resumed\nmade-by-cmd\n", f"after resume: stdout {r.stdout!r}")
    # The original object keeps working too (same id, same envd route).
    r = sbx.commands.run("echo again")
    check(r.stdout == "again\n", f"the original Sandbox object after resume: stdout {r.stdout!r}")
    S["sbx"] = resumed


@step("a wrong API key raises AuthenticationException")
def wrong_key():
    expect_raises(AuthenticationException, lambda: Sandbox.list(api_key="wrong").next_items(), "list(api_key='wrong')")
    expect_raises(
        AuthenticationException, lambda: Sandbox.create(TEMPLATE, api_key="wrong"), "create(api_key='wrong')"
    )
    expect_raises(
        AuthenticationException,
        lambda: Sandbox.get_info(S["sbx"].sandbox_id, api_key="wrong"),
        "get_info(alice's sandbox, api_key='wrong')",
    )
    expect_raises(
        AuthenticationException,
        lambda: Sandbox.kill(S["sbx"].sandbox_id, api_key="wrong"),
        "kill(alice's sandbox, api_key='wrong')",
    )


@step("bob cannot see, connect to, change or kill alice's sandbox")
def isolation():
    alice_id = S["sbx"].sandbox_id
    bob_sees = [s.sandbox_id for s in list_all(BOB)]
    check(alice_id not in bob_sees, f"bob's Sandbox.list() shows alice's sandbox: {bob_sees}")
    expect_raises(SandboxNotFoundException, lambda: Sandbox.connect(alice_id, api_key=BOB), "connect as bob")
    expect_raises(SandboxNotFoundException, lambda: Sandbox.get_info(alice_id, api_key=BOB), "get_info as bob")
    expect_raises(
        SandboxNotFoundException, lambda: Sandbox.set_timeout(alice_id, 10, api_key=BOB), "set_timeout as bob"
    )
    expect_raises(SandboxNotFoundException, lambda: Sandbox.pause(alice_id, api_key=BOB), "pause as bob")
    check(Sandbox.kill(alice_id, api_key=BOB) is False, "Sandbox.kill(alice's id, api_key=bob) should return False")
    # Bob's own sandbox is his alone, and alice's is untouched.
    bobs = create(BOB, timeout=60)
    check(bobs.commands.run("echo bob").stdout == "bob\n", "bob's own sandbox runs commands")
    alice_sees = [s.sandbox_id for s in list_all(ALICE)]
    check(bobs.sandbox_id not in alice_sees, f"alice's Sandbox.list() shows bob's sandbox: {alice_sees}")
    check(Sandbox.kill(bobs.sandbox_id, api_key=ALICE) is False, "alice could kill bob's sandbox")
    check(bobs.kill() is True, "bob kills his own sandbox")
    forget(bobs.sandbox_id)
    info = S["sbx"].get_info()
    check(info.state == SandboxState.RUNNING, f"alice's sandbox after bob's attempts: {info.state!r}")
    check(S["sbx"].commands.run("echo still-here").stdout == "still-here\n", "alice's sandbox after bob's attempts")


@step("kill() returns True, a second kill returns False")
def kill():
    sbx = S["sbx"]
    check(sbx.kill() is True, "kill() should return True")
    forget(sbx.sandbox_id)
    check(Sandbox.kill(sbx.sandbox_id) is False, "a second Sandbox.kill(id) should return False (404)")
    expect_raises(SandboxNotFoundException, lambda: Sandbox.get_info(sbx.sandbox_id), "get_info of a killed sandbox")
    listed = [s.sandbox_id for s in list_all(ALICE)]
    check(sbx.sandbox_id not in listed, f"Sandbox.list() still shows the killed sandbox: {listed}")


@step("capped key: a second concurrent sandbox is refused with RateLimitException")
def capped_concurrency():
    first = create(CAPPED, timeout=60)
    # retries=0: the SDK would otherwise re-send a 429 up to 3 times with backoff.
    expect_raises(
        RateLimitException, lambda: create(CAPPED, timeout=60, retries=0), "a second create with max_sandboxes=1"
    )
    check(first.kill() is True, "killing the capped key's sandbox")
    forget(first.sandbox_id)
    # The slot is free again.
    again = create(CAPPED, timeout=60, retries=0)
    check(again.kill() is True, "killing the capped key's second sandbox")
    forget(again.sandbox_id)


@step("capped key: calls beyond its rate raise RateLimitException")
def capped_rate():
    # request_timeout bounds the SDK's own 429 retries: a Retry-After longer than that is
    # not waited for, so the exception comes at once.
    t0 = time.monotonic()
    for n in range(1, CAPPED_RATE + 4):
        try:
            Sandbox.list(api_key=CAPPED, request_timeout=5).next_items()
        except RateLimitException:
            took = time.monotonic() - t0
            check(took < 30, f"the rate limit took {took:.1f}s to show")
            break
    else:
        raise StepFailed(f"{CAPPED_RATE + 3} rapid list calls (rate {CAPPED_RATE}/min) were all accepted")
    # Per key: bob is not limited by capped's rate.
    list_all(BOB)
    return f"refused at call {n} of this step, {took:.1f}s"


def main():
    print(f"e2b SDK {SDK_VERSION}, template {TEMPLATE}, api {os.environ['E2B_API_URL']}", flush=True)
    failed = None
    try:
        for n, (title, fn) in enumerate(STEPS, 1):
            t0 = time.monotonic()
            try:
                note = fn()
            except StepFailed as e:
                failed = f"step {n} ({title}): {e}"
                break
            except Exception as e:
                failed = f"step {n} ({title}): unexpected {type(e).__name__}: {e}\n{traceback.format_exc()}"
                break
            extra = f" [{note}]" if note else ""
            print(f"ok {n:2} {title} ({time.monotonic() - t0:.1f}s){extra}", flush=True)
    finally:
        for sandbox_id, key in list(created):
            try:
                Sandbox.kill(sandbox_id, api_key=key, request_timeout=10)
            except Exception as e:
                print(f"warning: cleanup kill of {sandbox_id} failed: {type(e).__name__}: {e}", flush=True)
    if failed:
        print(f"FAIL {failed}", flush=True)
        sys.exit(1)
    print(f"all {len(STEPS)} steps passed", flush=True)


if __name__ == "__main__":
    main()
