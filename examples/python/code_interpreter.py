"""A code-interpreter loop: each snippet runs in the same sandbox, so state
(files, installed things) carries over, as a model's successive cells would.
Usage: python code_interpreter.py [FILE_OF_SNIPPETS_SEPARATED_BY_---]"""
import sys

from aibox import Sandbox

DEFAULT = [
    "import math\nprint(math.sqrt(2))",
    "open('/workspace/data.csv', 'w').write('a,b\\n1,2\\n3,4\\n')",
    "import csv\nrows = list(csv.DictReader(open('/workspace/data.csv')))\nprint(sum(int(r['b']) for r in rows))",
    "raise ValueError('a failing cell')",
]


def main() -> int:
    cells = open(sys.argv[1]).read().split("\n---\n") if len(sys.argv) > 1 else DEFAULT
    with Sandbox.create() as sb:
        for i, code in enumerate(cells, 1):
            sb.files.write(f"/workspace/cell{i}.py", code)
            r = sb.commands.run(f"python3 /workspace/cell{i}.py", timeout=30)
            status = "ok" if r.ok else f"error (exit {r.exit_code})"
            print(f"[cell {i}] {status}")
            if r.stdout:
                print(r.stdout, end="")
            if not r.ok:
                print(r.stderr.strip().splitlines()[-1])
    return 0


if __name__ == "__main__":
    sys.exit(main())
