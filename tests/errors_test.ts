import assert from "node:assert/strict";
import { isOutOfMemory, OutOfMemoryError } from "../src/errors.ts";

Deno.test("isOutOfMemory() is true for Redis's OOM reply and for OutOfMemoryError only", () => {
  const reply = "OOM command not allowed when used memory > 'maxmemory'.";
  assert.equal(isOutOfMemory(new Error(reply)), true);
  assert.equal(isOutOfMemory(reply), true);
  assert.equal(isOutOfMemory(new OutOfMemoryError("Cannot enqueue to q: out of memory")), true);
  for (const other of [new Error("ERR OOM"), new Error("OOMPH"), "oom", undefined, null, 1]) {
    assert.equal(isOutOfMemory(other), false, String(other));
  }
});
