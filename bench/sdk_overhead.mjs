// The TypeScript SDK's overhead over raw fetch for a small exec, on one warm
// sandbox: prints JSON {"sdk": [ms...], "raw": [ms...]}.
// Usage: node sdk_overhead.mjs URL KEY N
import { Sandbox } from "../sdk/typescript/dist/esm/index.js";

const [url, key, n] = [process.argv[2], process.argv[3], Number(process.argv[4])];
const sb = await Sandbox.create({ url, key });
const sdk = [], raw = [];
try {
  for (let i = 0; i < 20; i++) await sb.commands.run("/bin/true");
  for (let i = 0; i < n; i++) {
    let t = performance.now();
    await sb.commands.run("/bin/true");
    sdk.push(performance.now() - t);
    t = performance.now();
    const r = await fetch(`${url}/v1/sandboxes/${sb.id}/exec`, {
      method: "POST",
      headers: { authorization: `Bearer ${key}`, "content-type": "application/json" },
      body: JSON.stringify({ cmd: "/bin/true" }),
    });
    await r.json();
    raw.push(performance.now() - t);
  }
} finally {
  await sb.kill();
}
console.log(JSON.stringify({ sdk, raw }));
