"""A test-runner agent: put a project with a failing test in a sandbox, run
the tests, read the failure, patch the code, run again until green. (The
"patch" here is a fixed rule; a model would write it.)"""
import re
import sys

from aibox import Sandbox

PROJECT = {
    "/workspace/proj/calc.py": "def add(a, b):\n    return a - b\n",
    "/workspace/proj/test_calc.py": (
        "import unittest\nfrom calc import add\n\n"
        "class T(unittest.TestCase):\n    def test_add(self):\n        self.assertEqual(add(2, 3), 5)\n\n"
        "if __name__ == '__main__':\n    unittest.main()\n"),
}


def main() -> int:
    with Sandbox.create() as sb:
        for path, text in PROJECT.items():
            sb.files.write(path, text)
        for attempt in range(1, 4):
            # -B: no bytecode cache (a same-size edit within a second would go unseen).
            r = sb.commands.run("python3 -B -m unittest -v test_calc", cwd="/workspace/proj", timeout=60)
            print(f"attempt {attempt}: {'PASS' if r.ok else 'FAIL'}")
            if r.ok:
                return 0
            failure = re.search(r"AssertionError: (.*)", r.stderr)
            print(f"  failure: {failure.group(1) if failure else r.stderr[-200:]}")
            code = sb.files.read("/workspace/proj/calc.py")
            sb.files.write("/workspace/proj/calc.py", code.replace("a - b", "a + b"))
            print("  patched calc.py")
    return 1


if __name__ == "__main__":
    sys.exit(main())
