"""A live aibox server for the SDK tests, started by the suite."""
import os
import shutil
import subprocess
import sys
import tempfile

import pytest

# The package under test is this checkout's (not an installed one).
sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))


def aibox_bin():
    b = os.environ.get("AIBOX_BIN") or os.path.join(ROOT, "target", "x86_64-unknown-linux-gnu", "debug", "aibox")
    if not os.path.exists(b):
        pytest.skip(f"no aibox binary at {b} (cargo build, or set AIBOX_BIN)")
    return b


@pytest.fixture(scope="session")
def server():
    data = tempfile.mkdtemp(prefix="aibox-sdk-")
    os.chmod(data, 0o755)
    # A directory sandboxes may mount (read-only), for the mounts parameter.
    os.makedirs(os.path.join(data, "shared"))
    env = dict(os.environ, AIBOX_LOG="warn", AIBOX_ALLOWED_MOUNTS=os.path.join(data, "shared"))
    env.pop("AIBOX_URL", None)
    env.pop("AIBOX_KEY", None)
    p = subprocess.Popen([aibox_bin(), "serve", "--listen", "127.0.0.1:0", "--socket", "none", "--data-dir", data],
                         env=env, stderr=subprocess.PIPE, text=True)
    addr = None
    for line in p.stderr:
        if line.startswith("aibox: listening on http://"):
            addr = line.strip().split("http://", 1)[1]
            break
    assert addr, "the server did not start"
    key = open(os.path.join(data, "admin.key")).read().strip()
    url = f"http://{addr}"
    old = {k: os.environ.get(k) for k in ("AIBOX_URL", "AIBOX_KEY")}
    os.environ["AIBOX_URL"], os.environ["AIBOX_KEY"] = url, key
    yield {"url": url, "key": key, "data": data}
    for k, v in old.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    # Every sandbox goes with the server's data.
    import httpx
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}) as c:
        for s in c.get("/v1/sandboxes", params={"limit": 1000}).json()["sandboxes"]:
            c.delete(f"/v1/sandboxes/{s['id']}")
    p.terminate()
    p.wait()
    subprocess.run([aibox_bin(), "gc"], env=dict(env, AIBOX_DATA_DIR=data, AIBOX_RUN_DIR=os.path.join(data, "run"), AIBOX_LOCAL="1"),
                   capture_output=True)
    shutil.rmtree(data, ignore_errors=True)
