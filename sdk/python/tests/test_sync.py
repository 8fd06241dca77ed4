import os
import subprocess
import sys
import tempfile
import time

import httpx
import pytest

import aibox
from aibox import Sandbox


def test_contract(server):
    with Sandbox.create() as sb:
        assert sb.commands.run("echo hi").stdout == "hi\n"
        assert sb.is_running()
    with pytest.raises(aibox.NotFoundError):
        Sandbox.connect(sb.id)


def test_commands(server):
    with Sandbox.create(env={"GREETING": "hello"}) as sb:
        r = sb.commands.run("echo $GREETING; echo oops >&2; exit 3")
        assert (r.stdout, r.stderr, r.exit_code, r.ok) == ("hello\n", "oops\n", 3, False)
        with pytest.raises(aibox.CommandExitError) as e:
            r.check()
        assert e.value.result.exit_code == 3
        assert sb.commands.run(["printf", "%s-%s", "a b", "c"]).stdout == "a b-c"
        assert sb.commands.run("pwd", cwd="/tmp").stdout == "/tmp\n"
        assert sb.commands.run("cat", stdin="from stdin").stdout == "from stdin"
        assert sb.commands.run("id -u", user="root").stdout == "0\n"
        r = sb.commands.run("sleep 5", timeout=0.5)
        assert r.timed_out and r.duration_ms < 4000


def test_streaming(server):
    with Sandbox.create() as sb:
        out, err = [], []
        r = sb.commands.run("for i in 1 2 3; do echo $i; sleep 0.1; done; echo e >&2",
                            on_stdout=out.append, on_stderr=err.append)
        assert "".join(out) == "1\n2\n3\n" and len(out) >= 2, out
        assert "".join(err) == "e\n"
        assert r.exit_code == 0 and r.stdout == "1\n2\n3\n"
        r = sb.commands.run("cat", stdin="piped", on_stdout=out.append)
        assert r.stdout == "piped"


def test_background(server):
    with Sandbox.create() as sb:
        h = sb.commands.run("sleep 0.3; echo done", background=True)
        assert isinstance(h, aibox.CommandHandle)
        assert h.wait().stdout == "done\n"
        h = sb.commands.run("sleep 60", background=True)
        h.kill(9)
        r = h.wait()
        assert r.signal == 9 and not r.ok
        h = sb.commands.run("cat", background=True, stdin="via stdin")
        assert h.wait().stdout == "via stdin"
        h = sb.commands.run("read x; echo got $x", background=True, stdin="")
        # stdin already closed: read gets EOF
        assert h.wait().stdout == "got\n"
        assert isinstance(sb.commands.list(), list)


def test_files(server, tmp_path):
    with Sandbox.create() as sb:
        sb.files.write("/workspace/a/b.txt", "text ✓")
        assert sb.files.read("/workspace/a/b.txt") == "text ✓"
        sb.files.write("/workspace/bin.dat", bytes(range(256)), mode=0o600)
        assert sb.files.read("/workspace/bin.dat", format="bytes") == bytes(range(256))
        st = sb.files.stat("/workspace/bin.dat")
        assert st.size == 256 and st.mode & 0o777 == 0o600
        names = {e.name for e in sb.files.list("/workspace")}
        assert {"a", "bin.dat"} <= names
        assert any(e.path.endswith("a/b.txt") for e in sb.files.list("/workspace", recursive=True))
        sb.files.rename("/workspace/bin.dat", "/workspace/moved.dat")
        assert sb.files.exists("/workspace/moved.dat") and not sb.files.exists("/workspace/bin.dat")
        sb.files.remove("/workspace/a", recursive=True)
        assert not sb.files.exists("/workspace/a")
        with pytest.raises(aibox.NotFoundError):
            sb.files.read("/no/such")
        with pytest.raises(aibox.InvalidArgumentError):
            sb.files.read("/workspace/moved.dat", format="yaml")
        (tmp_path / "up" / "sub").mkdir(parents=True)
        (tmp_path / "up" / "sub" / "f.txt").write_text("uploaded")
        sb.files.upload_dir(str(tmp_path / "up"), "/workspace/up")
        assert sb.commands.run("cat /workspace/up/sub/f.txt").stdout == "uploaded"
        sb.files.download_dir("/workspace/up", str(tmp_path / "down"))
        assert (tmp_path / "down" / "sub" / "f.txt").read_text() == "uploaded"


def test_lifecycle(server):
    with Sandbox.create(timeout=120, labels={"suite": "sdk"}) as sb:
        assert any(s["id"] == sb.id for s in Sandbox.list(labels={"suite": "sdk"}))
        sb.set_timeout(600)
        assert sb.refresh()["remaining_ms"] > 500_000 or sb.info["expires_at_ms"]
        if os.geteuid() == 0:
            sb.pause()
            assert sb.refresh()["state"] == "paused"
            sb.resume()
        sb.files.write("/workspace/state.txt", "v1")
        snap = sb.snapshot(name="sdk")
        restored = snap.restore()
        assert restored.commands.run("cat /workspace/state.txt").stdout == "v1"
        forks = sb.fork(2)
        assert len(forks) == 2 and all(f.files.read("/workspace/state.txt") == "v1" for f in forks)
        for s in [restored, *forks]:
            s.kill()
        other = Sandbox.connect(sb.id)
        assert other.id == sb.id
        other._http.close()


def test_volumes(server):
    """A volume outlives its sandbox, is shared by two at once, keeps
    snapshots, clones, and is not removed while mounted."""
    vol = aibox.Volume.create("sdk-data", size="32m", labels={"suite": "sdk"})
    try:
        assert vol.info["quota"]["bytes"] == 32 << 20
        assert vol.info["quota"]["enforced"] == (os.geteuid() == 0)
        assert [v.name for v in aibox.Volume.list(label="suite=sdk")] == ["sdk-data"]
        with Sandbox.create(volumes=["sdk-data:/data"]) as a:
            a.files.write("/data/note.txt", "kept")
            with Sandbox.create(volumes=["sdk-data:/data:ro"]) as b:
                assert b.commands.run("cat /data/note.txt").stdout == "kept"
                assert sorted(vol.refresh()["in_use_by"]) == sorted([a.id, b.id])
            with pytest.raises(aibox.ConflictError):
                vol.delete()
        vol.snapshot("v1")
        with Sandbox.create(volumes=["sdk-data:/data"]) as c:
            c.files.write("/data/note.txt", "changed")
        copy = vol.clone("sdk-copy", snapshot="v1")
        with Sandbox.create(volumes=["sdk-copy:/data"]) as d:
            assert d.files.read("/data/note.txt") == "kept"
        copy.delete()
        vol.delete_snapshot("v1")
        with pytest.raises(aibox.NotFoundError):
            aibox.Volume.get("no-such-volume")
    finally:
        try:
            vol.delete()
        except aibox.NotFoundError:
            pass
    with pytest.raises(aibox.NotFoundError):
        Sandbox.create(volumes=["sdk-data:/data"])


def test_workspaces(server):
    """A sandbox made in a workspace gets its files and env; the next one
    gets them back; the history shows both."""
    ws = aibox.Workspace.create("sdk-ws", size="16m", env={"WS": "yes"})
    try:
        with Sandbox.create(workspace="sdk-ws") as a:
            a.files.write("/workspace/kept.txt", "kept")
            assert a.commands.run("echo $WS").stdout == "yes\n"
        with Sandbox.create(workspace="sdk-ws") as b:
            assert b.files.read("/workspace/kept.txt") == "kept"
            assert ws.refresh()["sandboxes"] == [b.id]
        ws.snapshot("v1")
        events = [e["event"] for e in ws.refresh()["history"]]
        assert events == ["created", "sandbox_created", "sandbox_ended", "sandbox_created",
                          "sandbox_ended", "snapshot"], events
        assert [w.name for w in aibox.Workspace.list()] == ["sdk-ws"]
    finally:
        ws.delete()
    with pytest.raises(aibox.NotFoundError):
        aibox.Workspace.get("sdk-ws")


def test_get_url(server):
    with Sandbox.create() as sb:
        sb.commands.run("cd /workspace && echo served > index.html && (setsid python3 -m http.server 8123 >/dev/null 2>&1 &); sleep 1")
        url = sb.get_url(8123)
        assert f"8123-{sb.id}." in url and "aibox_token=" in url
        host = url.split("://", 1)[1].split("/", 1)[0]
        base = server["url"]
        r = httpx.get(base + "/" + url.split("/", 3)[3], headers={"Host": host.split(":")[0] + ":" + base.rsplit(":", 1)[1]},
                      follow_redirects=True)
        assert r.status_code == 200 and "served" in r.text


def test_errors(server):
    with pytest.raises(aibox.NotFoundError):
        Sandbox.connect("ffffffffffff")
    with pytest.raises(aibox.AuthenticationError):
        Sandbox.create(key="wrong")
    with pytest.raises(aibox.InvalidArgumentError) as e:
        Sandbox.create(memory="1k")
    assert e.value.code == "invalid_argument" and "memory" in e.value.message
    with pytest.raises(aibox.TemplateNotFoundError):
        Sandbox.create("no/such:template")
    with pytest.raises(aibox.ConnectionError):
        Sandbox.create(url="http://127.0.0.1:1")
    with pytest.raises(aibox.InvalidArgumentError):
        Sandbox.create(url="ftp://x")
    # The backend reaches the server (a microVM needs more memory).
    with pytest.raises(aibox.InvalidArgumentError) as e:
        Sandbox.create(backend="microvm", memory="64m")
    assert "microVM" in e.value.message
    with pytest.raises(aibox.InvalidArgumentError):
        Sandbox.create(backend="warp")
    sb = Sandbox.create()
    sb.kill()
    sb.kill()  # idempotent
    with pytest.raises(aibox.NotFoundError):
        sb.commands.run("true")
    sb.close()


def test_templates(server):
    t = aibox.Templates()
    assert any(x["name"] == "host" for x in t.list())
    with pytest.raises(aibox.NotFoundError):
        t.get("no/such:1")
    t.close()


def test_package_builds(tmp_path):
    import shutil
    # A copy, so the build leaves nothing in the source tree.
    root = tmp_path / "src"
    shutil.copytree(os.path.join(os.path.dirname(__file__), ".."), root,
                    ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__", "tests"))
    out = tmp_path / "dist"
    r = subprocess.run([sys.executable, "-m", "build", "--no-isolation", "--sdist", "--wheel", "--outdir", str(out), str(root)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr
    names = os.listdir(out)
    assert any(n.endswith(".whl") for n in names) and any(n.endswith(".tar.gz") for n in names), names
    import zipfile
    whl = next(n for n in names if n.endswith(".whl"))
    assert "aibox/py.typed" in zipfile.ZipFile(out / whl).namelist()


def test_more_of_the_surface(server, tmp_path):
    with Sandbox.create() as sb:
        h = sb.commands.run("sleep 0.2; exit 4", background=True)
        assert h.wait_exit(timeout=10).exit_code == 4
        assert h.info()["id"] == h.pid
        assert sb.ports()["ports"] == []
        tok = sb.ports()["token"]
        assert sb.set_ports(rotate_token=True)["token"] != tok
        assert sb.set_ports(public=True)["public"] is True
        with pytest.raises(aibox.ConflictError):
            sb.set_network("allowlist", ["example.com"])
        snap = sb.snapshot(name="listed")
        assert any(s.id == snap.id for s in aibox.Snapshot.list(sandbox_id=sb.id))
        assert aibox.Snapshot.get(snap.id).info["name"] == "listed"
        t = snap.to_template(f"sdk/from-snapshot:{snap.id}")
        assert t["name"].startswith("sdk/from-snapshot")
        tm = aibox.Templates()
        tm.delete(t["name"])
        snap.delete()
        (tmp_path / "ctx").mkdir()
        (tmp_path / "ctx" / "Dockerfile").write_text("FROM host\nRUN echo built > /opt/sdk-built\n")
        events = []
        built = tm.build(str(tmp_path / "ctx"), "sdk/built:1", no_cache=True, on_event=events.append)
        assert built["name"] == "sdk/built:1" and any(e["type"] == "step" for e in events)
        with Sandbox.create("sdk/built:1") as b:
            assert b.files.read("/opt/sdk-built") == "built\n"
        (tmp_path / "ctx" / "Dockerfile").write_text("FROM host\nRUN exit 5\n")
        with pytest.raises(aibox.BuildFailedError) as e:
            tm.build(str(tmp_path / "ctx"), "sdk/bad:1")
        assert "exit code 5" in e.value.message
        tm.delete("sdk/built:1")
        assert "layers" in tm.prune()
        tm.close()
