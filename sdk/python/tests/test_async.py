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
        with pytest.raises(aibox.NotFoundError):
            await sb.files.read("/nope")
    with pytest.raises(aibox.NotFoundError):
        await AsyncSandbox.connect(sb.id)
