"""The examples in examples/python run against the live server."""
import os
import subprocess
import sys

import pytest

EXAMPLES = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", "..", "examples", "python"))
SDK = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))


@pytest.mark.parametrize("name,expect", [
    ("code_interpreter.py", ["[cell 1] ok", "1.414", "[cell 3] ok", "6", "[cell 4] error", "ValueError: a failing cell"]),
    ("test_runner_agent.py", ["attempt 1: FAIL", "patched calc.py", "attempt 2: PASS"]),
    ("file_round_trip.py", ["a.txt: ALPHA", "notes/b.txt: BETA", "blob.bin: 256 bytes"]),
    ("streaming_output.py", ["line 5", "exit 0", "bg 3", "background exit 0"]),
])
def test_example(server, name, expect):
    env = dict(os.environ, PYTHONPATH=SDK, AIBOX_URL=server["url"], AIBOX_KEY=server["key"])
    r = subprocess.run([sys.executable, os.path.join(EXAMPLES, name)], env=env, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    for e in expect:
        assert e in r.stdout, f"{e!r} not in:\n{r.stdout}"
