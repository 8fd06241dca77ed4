"""The Python SDK's overhead over raw HTTP for a small exec, on one warm
sandbox: prints JSON {"sdk": [ms...], "raw": [ms...]}.
Usage: sdk_overhead.py URL KEY N (with sdk/python on PYTHONPATH)"""
import json
import sys
import time

import httpx

from aibox import Sandbox

url, key, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
sdk, raw = [], []
with Sandbox.create(url=url, key=key) as sb, httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as c:
    for _ in range(20):
        sb.commands.run("/bin/true")
    for _ in range(n):
        t = time.perf_counter()
        sb.commands.run("/bin/true")
        sdk.append((time.perf_counter() - t) * 1000)
        t = time.perf_counter()
        r = c.post(f"/v1/sandboxes/{sb.id}/exec", json={"cmd": "/bin/true"})
        r.json()
        raw.append((time.perf_counter() - t) * 1000)
print(json.dumps({"sdk": sdk, "raw": raw}))
