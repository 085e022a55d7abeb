"""`commands.run("true")` through the E2B SDK, timed per call; prints the seconds as JSON.

Run by `sandbox-bench e2b-api` against sandbox-host's E2B-compatible API:
    python bench/e2b_sdk_roundtrip.py N TEMPLATE   (E2B_API_URL / E2B_SANDBOX_URL / E2B_API_KEY set)
"""

import json
import sys
import time

from e2b import Sandbox

n, template = int(sys.argv[1]), sys.argv[2]
sbx = Sandbox.create(template, timeout=300)
try:
    for _ in range(5):
        sbx.commands.run("true")
    samples = []
    for _ in range(n):
        started = time.perf_counter()
        sbx.commands.run("true")
        samples.append(time.perf_counter() - started)
    print(json.dumps(samples))
finally:
    sbx.kill()
