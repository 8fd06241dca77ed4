"""The security review's M11: a sandbox's tar cannot write outside the
destination on the client (no server needed)."""
import io
import os
import tarfile

import pytest

from aibox import InvalidArgumentError
from aibox._core import extract_tar


def tar_of(entries):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as t:
        for name, kind, arg in entries:
            i = tarfile.TarInfo(name)
            if kind == "link":
                i.type, i.linkname = tarfile.SYMTYPE, arg
                t.addfile(i)
            elif kind == "dir":
                i.type = tarfile.DIRTYPE
                t.addfile(i)
            else:
                i.size = len(arg)
                t.addfile(i, io.BytesIO(arg))
    return buf.getvalue()


@pytest.mark.parametrize("entries", [
    [("a", "link", "VICTIM"), ("a/pwned", "file", b"x")],
    [("b", "link", "../victim")],
    [("../victim/pwned", "file", b"x")],
    [("/abs", "file", b"x")],
])
def test_nothing_lands_outside(tmp_path, entries):
    victim = tmp_path / "victim"
    victim.mkdir()
    entries = [(n, k, str(victim) if a == "VICTIM" else a) for n, k, a in entries]
    with pytest.raises(InvalidArgumentError):
        extract_tar(tar_of(entries), str(tmp_path / "out"))
    assert not (victim / "pwned").exists()


def test_ordinary_trees_arrive(tmp_path):
    extract_tar(tar_of([("d", "dir", None), ("d/f", "file", b"hello"), ("d/l", "link", "f")]),
                str(tmp_path / "ok"))
    assert (tmp_path / "ok" / "d" / "l").read_text() == "hello"
    assert os.path.islink(tmp_path / "ok" / "d" / "l")
