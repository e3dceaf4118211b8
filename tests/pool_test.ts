import assert from "node:assert/strict";
import { Pool, pool } from "../src/pool.ts";

/**
 * Lets every pending promise callback run. The pool has no timers, so anything it would do
 * next happens within these turns.
 */
async function flushMicrotasks(): Promise<void> {
  for (let i = 0; i < 100; i++) await Promise.resolve();
}

/** A handler whose calls block until the test releases them, one deferred per item. */
function gated<T>() {
  const started: T[] = [];
  const gates = new Map<T, PromiseWithResolvers<void>>();
  const gate = (item: T) => {
    let g = gates.get(item);
    if (g === undefined) gates.set(item, g = Promise.withResolvers());
    return g;
  };
  return {
    started,
    handler: async (item: T) => {
      started.push(item);
      await gate(item).promise;
    },
    release: (item: T) => gate(item).resolve(),
  };
}

Deno.test("pool() returns a WritableStream that is a Pool", () => {
  const sink = pool(() => {});
  assert.ok(sink instanceof WritableStream);
  assert.ok(sink instanceof Pool);
  assert.equal(sink.running, 0);
});

Deno.test("pool() runs every item and never more than concurrency at once", async () => {
  for (const concurrency of [1, 3, 16]) {
    let running = 0;
    let most = 0;
    const seen: number[] = [];
    const blocked: PromiseWithResolvers<void>[] = [];
    const sink = pool(async (n: number) => {
      most = Math.max(most, ++running);
      const gate = Promise.withResolvers<void>();
      blocked.push(gate);
      await gate.promise;
      seen.push(n);
      running--;
    }, { concurrency });
    const writer = sink.getWriter();
    const items = Array.from({ length: 200 }, (_, i) => i);
    for (const item of items) {
      let started = false;
      const write = writer.write(item).then(() => started = true);
      await flushMicrotasks();
      if (!started) {
        // The pool is full: let one handler (not always the oldest) finish to make room.
        assert.equal(blocked.length, concurrency);
        blocked.splice((item * 7) % concurrency, 1)[0]!.resolve();
        await write;
      }
    }
    for (const gate of blocked.splice(0)) gate.resolve();
    await writer.close();
    assert.equal(running, 0);
    assert.equal(most, concurrency, `concurrency ${concurrency}`);
    assert.deepEqual(seen.toSorted((a, b) => a - b), items);
  }
});

Deno.test("pool() takes items piped from a ReadableStream and runs them all", async () => {
  const seen: number[] = [];
  const sink = pool(async (n: number) => {
    await Promise.resolve();
    seen.push(n);
  }, { concurrency: 4 });
  const items = Array.from({ length: 100 }, (_, i) => i);
  await ReadableStream.from(items).pipeTo(sink);
  assert.deepEqual(seen.toSorted((a, b) => a - b), items);
  assert.equal(sink.running, 0);
});

Deno.test("pool() runs one at a time by default", async () => {
  const { started, handler, release } = gated<string>();
  const sink = pool(handler);
  const writer = sink.getWriter();
  await writer.write("a");
  let secondStarted = false;
  const second = writer.write("b").then(() => secondStarted = true);
  await flushMicrotasks();
  assert.equal(sink.running, 1);
  assert.deepEqual(started, ["a"]);
  assert.equal(secondStarted, false);
  release("a");
  await second;
  release("b");
  await writer.close();
  assert.deepEqual(started, ["a", "b"]);
});

Deno.test("pool() write() stays pending while the pool is full, and resolves once the item starts", async () => {
  const { started, handler, release } = gated<string>();
  const sink = pool(handler, { concurrency: 1 });
  const writer = sink.getWriter();

  await writer.write("first");
  assert.deepEqual(started, ["first"]);

  let written = false;
  const second = writer.write("second").then(() => written = true);
  await flushMicrotasks();
  assert.equal(written, false, "write() resolved while the only slot was busy");
  assert.deepEqual(started, ["first"]);
  assert.equal(sink.running, 1);

  release("first");
  await second;
  assert.equal(written, true);
  assert.deepEqual(started, ["first", "second"]);
  assert.equal(sink.running, 1);

  release("second");
  await writer.close();
  assert.equal(sink.running, 0);
});

Deno.test("pool() starts a waiting item as soon as any running one finishes", async () => {
  const { started, handler, release } = gated<number>();
  const sink = pool(handler, { concurrency: 2 });
  const writer = sink.getWriter();
  await writer.write(1);
  await writer.write(2);
  let written = false;
  const third = writer.write(3).then(() => written = true);
  await flushMicrotasks();
  assert.equal(written, false);
  assert.equal(sink.running, 2);

  release(2);
  await third;
  assert.deepEqual(started, [1, 2, 3]);
  assert.equal(sink.running, 2);

  release(1);
  release(3);
  await writer.close();
  assert.equal(sink.running, 0);
});

Deno.test("pool() close waits for running handlers to finish", async () => {
  const { handler, release } = gated<string>();
  const sink = pool(handler, { concurrency: 4 });
  const writer = sink.getWriter();
  await writer.write("a");
  await writer.write("b");
  let closed = false;
  const closing = writer.close().then(() => closed = true);
  await flushMicrotasks();
  assert.equal(closed, false);
  release("a");
  await flushMicrotasks();
  assert.equal(closed, false);
  release("b");
  await closing;
  assert.equal(sink.running, 0);
});

Deno.test("pool() idle() resolves once no handler is running", async () => {
  const { handler, release } = gated<string>();
  const sink = pool(handler, { concurrency: 2 });
  const writer = sink.getWriter();
  await writer.write("a");
  let idle = false;
  const waiting = sink.idle().then(() => idle = true);
  await flushMicrotasks();
  assert.equal(idle, false);
  release("a");
  await waiting;
  assert.equal(sink.running, 0);
  await writer.close();
  // With nothing running, idle() resolves at once.
  await sink.idle();
});

Deno.test("pool() sends handler errors to onError and keeps going", async () => {
  const errors: [unknown, unknown][] = [];
  const done: number[] = [];
  const sink = pool((n: number) => {
    if (n % 3 === 0) throw new Error(`sync ${n}`);
    if (n % 3 === 1) return Promise.reject(new Error(`async ${n}`));
    done.push(n);
    return undefined;
  }, { concurrency: 2, onError: (error, item) => errors.push([error, item]) });
  await ReadableStream.from([0, 1, 2, 3, 4, 5, 6, 7, 8]).pipeTo(sink);
  assert.deepEqual(done, [2, 5, 8]);
  assert.deepEqual(
    errors.map(([error, item]) => [(error as Error).message, item]),
    [
      ["sync 0", 0],
      ["async 1", 1],
      ["sync 3", 3],
      ["async 4", 4],
      ["sync 6", 6],
      ["async 7", 7],
    ],
  );
  assert.equal(sink.running, 0);
});

Deno.test("pool() passes thrown non-Error values to onError as they are", async () => {
  const errors: unknown[] = [];
  const sink = pool(() => {
    throw "plain string";
  }, { onError: (error) => errors.push(error) });
  await ReadableStream.from([1]).pipeTo(sink);
  assert.deepEqual(errors, ["plain string"]);
});

for (const concurrency of [0, -1, 1.5, 100_001, NaN]) {
  Deno.test(`pool() throws RangeError on concurrency ${concurrency}`, () => {
    assert.throws(
      () => pool(() => {}, { concurrency }),
      (err: unknown) => {
        assert.ok(err instanceof RangeError);
        assert.match(
          err.message,
          /^Cannot create pool: concurrency must be an integer from 1 to 100000, got /,
        );
        return true;
      },
    );
  });
}

Deno.test("pool() accepts concurrency 1 and 100000", () => {
  assert.ok(pool(() => {}, { concurrency: 1 }) instanceof Pool);
  assert.ok(pool(() => {}, { concurrency: 100_000 }) instanceof Pool);
});

Deno.test("pool() throws TypeError when the handler is not a function", () => {
  assert.throws(
    () => pool(undefined as unknown as () => void),
    (err: unknown) => {
      assert.ok(err instanceof TypeError);
      assert.match(err.message, /^Cannot create pool: handler must be a function/);
      return true;
    },
  );
});

Deno.test("a pool survives an onError callback that throws", async () => {
  let calls = 0;
  const sink = pool(() => {
    calls++;
    throw new Error("handler");
  }, {
    onError: () => {
      throw new Error("callback");
    },
  });
  await ReadableStream.from([1, 2, 3]).pipeTo(sink);
  assert.equal(calls, 3);
});
