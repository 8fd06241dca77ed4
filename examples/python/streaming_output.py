"""Streaming output: print a long command's lines as they come, then the same
for a background process attached later."""
import sys
import time

from aibox import Sandbox


def main() -> int:
    with Sandbox.create() as sb:
        t0 = time.monotonic()
        r = sb.commands.run("for i in 1 2 3 4 5; do echo line $i; sleep 0.2; done",
                            on_stdout=lambda s: print(f"[{time.monotonic() - t0:4.1f}s] {s}", end=""))
        print(f"exit {r.exit_code}")
        h = sb.commands.run("for i in 1 2 3; do echo bg $i; sleep 0.1; done", background=True)
        print(f"started background process {h.pid}")
        r = h.wait(on_stdout=lambda s: print(f"  {s}", end=""))
        print(f"background exit {r.exit_code}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
