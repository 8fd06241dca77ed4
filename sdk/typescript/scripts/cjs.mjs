// The CommonJS build as .cjs (the package is "type": "module").
import { readdirSync, renameSync, readFileSync, writeFileSync } from "node:fs";
const dir = new URL("../dist/cjs/", import.meta.url);
for (const f of readdirSync(dir)) {
  if (f.endsWith(".js")) {
    const p = new URL(f, dir);
    writeFileSync(p, readFileSync(p, "utf8").replace(/require\("\.\/(\w+)\.js"\)/g, 'require("./$1.cjs")'));
    renameSync(p, new URL(f.replace(/\.js$/, ".cjs"), dir));
  } else if (f.endsWith(".d.ts")) {
    renameSync(new URL(f, dir), new URL(f.replace(/\.d\.ts$/, ".d.cts"), dir));
  }
}
