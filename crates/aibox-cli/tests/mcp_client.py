"""Drive aibox's MCP server with the official Python MCP SDK (PyPI `mcp`).
Usage: mcp_client.py stdio AIBOX_BIN | http URL
Env: AIBOX_URL, AIBOX_KEY (the REST API, to check what the session did).
Exits non-zero with a message on the first failed check."""
import asyncio, json, os, sys, time, urllib.request, urllib.error

from mcp import ClientSession, StdioServerParameters, types
from mcp.client.stdio import stdio_client
from mcp.client.streamable_http import streamablehttp_client

MODE = sys.argv[1]
API, KEY = os.environ["AIBOX_URL"], os.environ["AIBOX_KEY"]
TOOLS = {"create_sandbox", "list_sandboxes", "run_command", "run_code", "read_file", "write_file",
         "list_files", "destroy_sandbox", "keep_sandbox", "snapshot_sandbox", "restore_snapshot", "expose_port"}


def check(ok, what):
    if not ok:
        raise SystemExit(f"FAILED: {what}")


def rest(method, path):
    req = urllib.request.Request(API + path, method=method, headers={"Authorization": f"Bearer {KEY}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            return r.status, json.loads(r.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, None


def text(r):
    return "".join(c.text for c in r.content if isinstance(c, types.TextContent))


async def call(s, name, args):
    r = await s.call_tool(name, args)
    return r, (r.structuredContent or {}), text(r)


def transport():
    if MODE == "stdio":
        params = StdioServerParameters(command=sys.argv[2], args=["mcp"], env=dict(os.environ))
        return stdio_client(params)
    return streamablehttp_client(sys.argv[2], headers={"Authorization": f"Bearer {KEY}"})


async def main():
    # 1. The main session: no elicitation support.
    async with transport() as streams:
        read, write = streams[0], streams[1]
        async with ClientSession(read, write) as s:
            init = await s.initialize()
            check(init.serverInfo.name == "aibox", f"server name {init.serverInfo}")
            tools = {t.name: t for t in (await s.list_tools()).tools}
            check(TOOLS <= set(tools), f"tools: {sorted(tools)}")
            rc = tools["run_code"].inputSchema
            check(set(rc.get("required", [])) >= {"language", "code"}, f"run_code schema {rc}")
            check(tools["run_command"].description and "exit code" in tools["run_command"].description, "described")

            # Run code; the session's default sandbox comes by itself.
            r, sc, t = await call(s, "run_code", {"language": "python", "code": "print(6*7)\nopen('/workspace/out.txt','w').write('hello from python')"})
            check(not r.isError and sc.get("exit_code") == 0 and sc.get("stdout") == "42\n", f"run_code: {t}")
            sid = sc["sandbox_id"]
            r, sc, t = await call(s, "read_file", {"path": "/workspace/out.txt"})
            check(not r.isError and sc.get("text") == "hello from python" and t == "hello from python", f"read_file: {t}")
            r, sc, t = await call(s, "run_code", {"language": "bash", "code": "echo from bash; echo oops >&2; exit 3"})
            check(not r.isError and sc["exit_code"] == 3 and sc["stdout"] == "from bash\n" and "oops" in sc["stderr"], f"bash: {t}")
            check("exit code 3" in t and "--- stderr ---" in t, f"readable text: {t}")
            r, sc, t = await call(s, "run_code", {"language": "node", "code": "console.log([1,2,3].map(x => x * 2).join(','))"})
            check(r.isError or sc.get("stdout") == "2,4,6\n" or "node" in t, f"node: {t}")
            r, sc, t = await call(s, "write_file", {"path": "/workspace/pkg/mod.py", "content": "X = 1\n"})
            check(not r.isError and sc["bytes"] == 6, f"write_file: {t}")
            r, sc, t = await call(s, "list_files", {"path": "/workspace", "recursive": True})
            check(not r.isError and "pkg/mod.py" in t and "out.txt" in t, f"list_files: {t}")
            r, sc, t = await call(s, "run_command", {"command": "cd /workspace && python3 -c 'import pkg.mod; print(pkg.mod.X)'"})
            check(sc.get("stdout") == "1\n", f"run_command: {t}")
            r, sc, t = await call(s, "run_command", {"command": "head -c 300000 /dev/zero | tr '\\0' a"})
            check(sc.get("stdout_truncated") is True and "[stdout truncated]" in t, f"truncation: {t[-100:]}")
            r, sc, t = await call(s, "list_sandboxes", {})
            check(any(x["sandbox_id"] == sid and x["default"] for x in sc["sandboxes"]), f"list_sandboxes: {t}")

            # Bad arguments are tool errors the model can read.
            r, sc, t = await call(s, "run_code", {"language": "cobol", "code": "x"})
            check(r.isError and "unsupported language" in t, f"bad language: {t}")
            r, sc, t = await call(s, "run_command", {})
            check(r.isError and "missing field `command`" in t, f"missing argument: {t}")
            r, sc, t = await call(s, "read_file", {"path": "relative.txt"})
            check(r.isError and "must be absolute" in t, f"relative path: {t}")
            r, sc, t = await call(s, "read_file", {"path": "/no/such/file"})
            check(r.isError and "not_found" in t, f"missing file: {t}")
            r, sc, t = await call(s, "run_command", {"command": "true", "sandbox_id": "../x"})
            check(r.isError and "not a sandbox" in t, f"bad id: {t}")
            r, sc, t = await call(s, "expose_port", {"port": 70000})
            check(r.isError and "not a TCP port" in t, f"bad port: {t}")

            # Widening without a way to ask the user: refused, with the reason.
            r, sc, t = await call(s, "create_sandbox", {"allow_network": ["pypi.org"]})
            check(r.isError and "cannot ask the user" in t, f"no elicitation: {t}")
            r, sc, t = await call(s, "create_sandbox", {"mounts": ["/etc:/host-etc:ro"]})
            check(r.isError and "mount host paths" in t and "approval" in t, f"mount: {t}")
            r, sc, t = await call(s, "create_sandbox", {"mounts": ["relative:x"]})
            check(r.isError and "mount" in t, f"bad mount: {t}")
            r, sc, t = await call(s, "create_sandbox", {"ttl_seconds": 100000})
            check(r.isError and "approval" in t, f"long TTL: {t}")
            r, sc, t = await call(s, "expose_port", {"port": 8123, "public": True})
            check(r.isError and "cannot ask the user" in t, f"public port: {t}")

            # Resources and prompts.
            tmpl = (await s.list_resource_templates()).resourceTemplates
            check(any(x.uriTemplate.startswith("aibox://") for x in tmpl), f"templates: {tmpl}")
            res = (await s.list_resources()).resources
            check(any(str(x.uri) == f"aibox://{sid}/workspace/out.txt" for x in res), f"resources: {res}")
            rr = await s.read_resource(f"aibox://{sid}/workspace/out.txt")
            check(rr.contents[0].text == "hello from python", f"read_resource: {rr}")
            prompts = {p.name for p in (await s.list_prompts()).prompts}
            check({"run_untrusted_snippet", "fix_failing_test"} <= prompts, f"prompts: {prompts}")
            gp = await s.get_prompt("fix_failing_test", {"test_command": "pytest -x"})
            check("pytest -x" in gp.messages[0].content.text, f"get_prompt: {gp}")

            # A port: its URL reaches the server inside.
            await call(s, "run_command", {"command": "cd /workspace && (setsid python3 -m http.server 8123 >/dev/null 2>&1 &) ; sleep 1"})
            r, sc, t = await call(s, "expose_port", {"port": 8123})
            check(not r.isError and sc["listening"] and "aibox_token=" in sc["url"], f"expose_port: {t}")
            check("8123-" in sc["url"], f"host-routed URL: {sc['url']}")
            with urllib.request.urlopen(sc["path_url"], timeout=10) as resp:
                check(b"out.txt" in resp.read(), "the port's URL serves the listing")

            # Snapshot and restore; a kept sandbox outlives the session.
            r, sc, t = await call(s, "snapshot_sandbox", {"name": "mcp-test"})
            check(not r.isError and sc["snapshot_id"], f"snapshot: {t}")
            snap = sc["snapshot_id"]
            r, sc, t = await call(s, "restore_snapshot", {"snapshot_id": snap, "make_default": False, "keep": True})
            check(not r.isError, f"restore: {t}")
            kept = sc["sandbox_id"]
            r, sc, t = await call(s, "run_command", {"command": "cat /workspace/out.txt", "sandbox_id": kept})
            check(sc.get("stdout") == "hello from python", f"restored files: {t}")
            r, sc, t = await call(s, "create_sandbox", {"make_default": False})
            check(not r.isError and sc["default"] is False, f"create: {t}")
            extra = sc["sandbox_id"]
            r, sc, t = await call(s, "destroy_sandbox", {"sandbox_id": extra})
            check(not r.isError and rest("GET", f"/v1/sandboxes/{extra}")[0] == 404, f"destroy: {t}")

    # The session ended: its sandboxes are gone, the kept one stays.
    for _ in range(50):
        if rest("GET", f"/v1/sandboxes/{sid}")[0] == 404:
            break
        time.sleep(0.1)
    check(rest("GET", f"/v1/sandboxes/{sid}")[0] == 404, "the session's default sandbox is destroyed with it")
    check(rest("GET", f"/v1/sandboxes/{kept}")[0] == 200, "a kept sandbox stays")
    rest("DELETE", f"/v1/sandboxes/{kept}")
    rest("DELETE", f"/v1/snapshots/{snap}")

    # 2. A client that can ask the user: a decline refuses, an accept goes.
    answers = []

    async def elicit(context, params):
        approve = answers.pop(0)
        if approve is None:
            return types.ElicitResult(action="decline")
        return types.ElicitResult(action="accept", content={"approve": approve})

    async with transport() as streams:
        async with ClientSession(streams[0], streams[1], elicitation_callback=elicit) as s:
            await s.initialize()
            answers.append(None)
            r, sc, t = await call(s, "create_sandbox", {"allow_network": ["pypi.org"]})
            check(r.isError and "declined" in t, f"declined: {t}")
            answers.append(False)
            r, sc, t = await call(s, "create_sandbox", {"allow_network": ["pypi.org"]})
            check(r.isError and "did not approve" in t, f"not approved: {t}")
            answers.append(True)
            r, sc, t = await call(s, "create_sandbox", {"allow_network": ["pypi.org"]})
            check(not r.isError and sc["sandbox_id"], f"approved: {t}")
            net = sc["sandbox_id"]
            status, v = rest("GET", f"/v1/sandboxes/{net}")
            check(v["spec"]["network"] == "allowlist", f"the sandbox has the network: {v['spec']}")
    for _ in range(50):
        if rest("GET", f"/v1/sandboxes/{net}")[0] == 404:
            break
        time.sleep(0.1)
    check(rest("GET", f"/v1/sandboxes/{net}")[0] == 404, "the second session's sandbox is destroyed with it")
    print(f"OK {MODE}")


asyncio.run(main())
