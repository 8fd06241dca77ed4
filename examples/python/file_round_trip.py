"""Files both ways: upload a directory, transform it inside the sandbox,
download the result; text and bytes."""
import os
import sys
import tempfile

from aibox import Sandbox


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, Sandbox.create() as sb:
        src = os.path.join(tmp, "in")
        os.makedirs(os.path.join(src, "notes"))
        for name, text in {"a.txt": "alpha\n", "notes/b.txt": "beta\n"}.items():
            with open(os.path.join(src, name), "w") as f:
                f.write(text)
        sb.files.upload_dir(src, "/workspace/in")
        sb.commands.run("mkdir -p /workspace/out && cd /workspace/in && "
                        "for f in $(find . -type f); do mkdir -p /workspace/out/$(dirname $f); "
                        "tr a-z A-Z < $f > /workspace/out/$f; done").check()
        sb.files.write("/workspace/out/blob.bin", bytes(range(256)))
        dst = os.path.join(tmp, "out")
        sb.files.download_dir("/workspace/out", dst)
        for root, _, files in os.walk(dst):
            for name in sorted(files):
                p = os.path.join(root, name)
                data = open(p, "rb").read()
                shown = data.decode().strip() if name.endswith(".txt") else f"{len(data)} bytes"
                print(f"{os.path.relpath(p, dst)}: {shown}")
        print("listing:", ", ".join(sorted(e.name for e in sb.files.list("/workspace/out"))))
    return 0


if __name__ == "__main__":
    sys.exit(main())
