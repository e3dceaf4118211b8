import assert from "node:assert/strict";
import { ConnectionError, isOutOfMemory, OutOfMemoryError, SluiceError } from "../src/errors.ts";

Deno.test("isOutOfMemory() is true for Redis's OOM reply and for OutOfMemoryError only", () => {
  const reply = "OOM command not allowed when used memory > 'maxmemory'.";
  assert.equal(isOutOfMemory(new Error(reply)), true);
  assert.equal(isOutOfMemory(reply), true);
  assert.equal(isOutOfMemory(new OutOfMemoryError("Cannot enqueue to q: out of memory")), true);
  for (const other of [new Error("ERR OOM"), new Error("OOMPH"), "oom", undefined, null, 1]) {
    assert.equal(isOutOfMemory(other), false, String(other));
  }
});

Deno.test("ConnectionError is a SluiceError with its own name and a cause", () => {
  const cause = new Error("connect ECONNREFUSED 127.0.0.1:1");
  const err = new ConnectionError("Cannot enqueue t on queue q: unreachable", { cause });
  assert.ok(err instanceof SluiceError);
  assert.equal(err.name, "ConnectionError");
  assert.equal(err.cause, cause);
});
