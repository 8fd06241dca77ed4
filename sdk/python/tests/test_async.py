import pytest

import aibox
from aibox import AsyncSandbox


@pytest.mark.asyncio
async def test_async_surface(server):
    async with await AsyncSandbox.create() as sb:
        r = await sb.commands.run("echo hi; exit 2")
        assert r.stdout == "hi\n" and r.exit_code == 2
        seen = []

        async def on_out(t):
            seen.append(t)
        r = await sb.commands.run("echo a; sleep 0.1; echo b", on_stdout=on_out)
        assert "".join(seen) == "a\nb\n" and r.exit_code == 0
        h = await sb.commands.run("sleep 0.2; echo bg", background=True)
        assert (await h.wait()).stdout == "bg\n"
        await sb.files.write("/workspace/x/y.txt", "async")
        assert await sb.files.read("/workspace/x/y.txt") == "async"
        assert any(e.name == "x" for e in await sb.files.list())
        assert await sb.files.exists("/workspace/x/y.txt")
        await sb.files.remove("/workspace/x", recursive=True)
        assert not await sb.files.exists("/workspace/x")
        await sb.set_timeout(300)
        snap = await sb.snapshot()
        assert snap["id"]
        forks = await sb.fork(2)
        assert len(forks) == 2
        for f in forks:
            assert await f.commands.run("true") is not None
            await f.kill()
        h = await sb.commands.run("exit 6", background=True)
        assert (await h.wait_exit(10)).exit_code == 6
        assert (await h.info())["id"] == h.pid
        assert isinstance(await sb.commands.list(), list)
        assert "aibox_token=" in await sb.get_url(8000)
        assert (await sb.set_ports(public=True))["public"] is True
        with pytest.raises(aibox.ConflictError):
            await sb.set_network("full")
        assert any(s["id"] == sb.id for s in await AsyncSandbox.list())
        with pytest.raises(aibox.NotFoundError):
            await sb.files.read("/nope")
    with pytest.raises(aibox.NotFoundError):
        await AsyncSandbox.connect(sb.id)


@pytest.mark.asyncio
async def test_async_dirs(server, tmp_path):
    (tmp_path / "up").mkdir()
    (tmp_path / "up" / "f.txt").write_text("async dir")
    async with await AsyncSandbox.create() as sb:
        await sb.files.upload_dir(str(tmp_path / "up"), "/workspace/up")
        assert (await sb.commands.run("cat /workspace/up/f.txt")).stdout == "async dir"
        await sb.files.download_dir("/workspace/up", str(tmp_path / "down"))
        assert (tmp_path / "down" / "f.txt").read_text() == "async dir"
        with pytest.raises(aibox.InvalidArgumentError):
            await sb.files.read("/workspace/up/f.txt", format="xml")


@pytest.mark.asyncio
async def test_async_volumes(server):
    vol = await aibox.AsyncVolume.create("async-vol", size="16m")
    try:
        async with await AsyncSandbox.create(volumes=["async-vol:/v"]) as sb:
            await sb.files.write("/v/kept.txt", "kept")
            assert (await vol.refresh())["in_use_by"] == [sb.id]
        await vol.snapshot("s1")
        copy = await vol.clone("async-copy", snapshot="s1")
        async with await AsyncSandbox.create(volumes=["async-copy:/v:ro"]) as sb:
            assert await sb.files.read("/v/kept.txt") == "kept"
        await copy.delete()
        await vol.delete_snapshot("s1")
        assert [v.name for v in await aibox.AsyncVolume.list()] == ["async-vol"]
    finally:
        await vol.delete()
    with pytest.raises(aibox.NotFoundError):
        await aibox.AsyncVolume.get("async-vol")

