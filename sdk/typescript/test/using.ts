// The contract, in TypeScript (compiled by tsc, run by sdk.test.mjs against
// its server): `await using` destroys the sandbox at scope exit.
import assert from "node:assert/strict";
import { Sandbox, NotFoundError } from "../src/index.js";

export async function awaitUsingDisposes(): Promise<void> {
  let id = "";
  {
    await using sb = await Sandbox.create();
    id = sb.id;
    assert.equal((await sb.commands.run("echo hi")).stdout, "hi\n");
  }
  await assert.rejects(Sandbox.connect(id), NotFoundError);
}
