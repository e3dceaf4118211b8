import assert from "node:assert/strict";
import { Batcher } from "../src/_batch.ts";

/** A flush whose calls stay open until released, recording each batch. */
function gatedFlush() {
  const batches: number[][] = [];
  const gates: PromiseWithResolvers<void>[] = [];
  let inFlight = 0, most = 0;
  const flush = async (items: number[]) => {
    batches.push(items);
    inFlight++;
    most = Math.max(most, inFlight);
    const gate = Promise.withResolvers<void>();
    gates.push(gate);
    await gate.promise;
    inFlight--;
    if (items.includes(-1)) throw new Error("refused");
    return items.map((n) => n * 10);
  };
  return { flush, batches, gates, most: () => most };
}

/** One turn of the event loop: every queued microtask has run. */
const turn = () => new Promise((resolve) => setTimeout(resolve, 0));

Deno.test("a batcher keeps at most `lanes` flushes under way, each of at most `most` items", async () => {
  const { flush, batches, gates, most } = gatedFlush();
  const batcher = new Batcher(flush, 2, 3);
  const results = Array.from({ length: 10 }, (_, i) => batcher.push(i));
  await turn();
  assert.deepEqual(batches, [[0, 1, 2], [3, 4, 5]], "two lanes, three items each");
  while (gates.length > 0) {
    gates.shift()!.resolve();
    await turn();
  }
  assert.deepEqual(await Promise.all(results), Array.from({ length: 10 }, (_, i) => i * 10));
  assert.deepEqual(batches.flat(), Array.from({ length: 10 }, (_, i) => i), "in order, once");
  assert.ok(batches.every((batch) => batch.length <= 3));
  assert.equal(most(), 2);
  await batcher.idle();
  assert.equal(batcher.size, 0);
});

Deno.test("a failed flush rejects its own items only, and idle() waits for every lane", async () => {
  const { flush, gates } = gatedFlush();
  const batcher = new Batcher(flush, 2, 2);
  const bad = [batcher.push(-1), batcher.push(1)];
  const good = [batcher.push(2), batcher.push(3)];
  await turn();
  let idle = false;
  const waiting = batcher.idle().then(() => idle = true);
  gates[1]!.resolve();
  assert.deepEqual(await Promise.all(good), [20, 30]);
  assert.equal(idle, false, "one lane is still under way");
  gates[0]!.resolve();
  for (const result of bad) await assert.rejects(result, /refused/);
  await waiting;
  assert.equal(idle, true);
});

Deno.test("a batcher at idle flushes a lone item at once", async () => {
  const batcher = new Batcher((items: string[]) => Promise.resolve(items.map((s) => s + "!")));
  assert.equal(await batcher.push("a"), "a!");
  await batcher.idle();
});

Deno.test("a batch waits for work under way while it moves, and goes once it stops moving", async () => {
  const batches: number[][] = [];
  let coming = 5;
  const batcher = new Batcher(
    (items: number[]) => {
      batches.push(items);
      return Promise.resolve(items);
    },
    1,
    100,
    () => coming,
  );
  const results: Promise<number>[] = [];
  // Work under way hands out one item every few microtasks, like a pool starting jobs.
  for (let i = 0; i < 5; i++) {
    results.push(batcher.push(i));
    for (let hop = 0; hop < 4; hop++) await Promise.resolve();
    coming--;
  }
  assert.deepEqual(await Promise.all(results), [0, 1, 2, 3, 4]);
  assert.deepEqual(batches, [[0, 1, 2, 3, 4]], "one batch, not a batch of one first");
  // Work that does not move (a caller holding prefetched jobs while it awaits its ack) does
  // not hold a batch back for long.
  coming = 3;
  assert.equal(await batcher.push(9), 9);
  assert.deepEqual(batches.at(-1), [9]);
});
