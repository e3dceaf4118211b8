// The consumer's window alone: room, reserve/free, the adaptive size and the give-back choice.
// Pure: no Redis, no timers.
import assert from "node:assert/strict";
import { ADAPT_DRAIN_MS, ADAPT_TARGET_MS, Window } from "../src/window.ts";

Deno.test("room is the limit less held jobs, burials under way and reads in flight", () => {
  const window = new Window(10);
  assert.equal(window.room(0), 10);
  assert.equal(window.room(4), 6);
  window.reserve(3);
  assert.equal(window.room(4), 3);
  window.burying = 2;
  assert.equal(window.room(4), 1);
  window.free(3);
  assert.equal(window.room(4), 4);
  window.burying = 0;
  assert.equal(window.room(10), 0);
  assert.equal(window.room(12), -2, "a window that shrank below what is held has no room");
});

Deno.test("a read behind a settle may fill the room the settle's acks free, never more", () => {
  const window = new Window(8);
  assert.equal(window.settleRoom(8), 0);
  window.settling = 3;
  assert.equal(window.settleRoom(8), 3);
  window.reserve(2); // a blocking read in flight takes its share first
  assert.equal(window.settleRoom(8), 1);
  window.reserve(5);
  assert.equal(window.settleRoom(8), 0, "never negative");
});

Deno.test("a fixed window never moves, and its blocking reads fill all of its room", () => {
  const window = new Window(16);
  assert.equal(window.adaptive, false);
  assert.equal(window.ended(1_000, 1_000), undefined);
  assert.equal(window.limit, 16);
  assert.equal(window.readRoom(4), 12);
});

Deno.test("an adaptive window starts at base + min and grows with the rate of ended jobs", () => {
  const window = new Window(64);
  window.adapt(32, 32, 512, 0);
  assert.equal(window.limit, 64);
  // 50 jobs in 10 ms: 5 jobs/ms, so ADAPT_TARGET_MS (5 ms) of work is 25 jobs: under min.
  assert.deepEqual(window.ended(50, 10), { limit: 64, rate: 5, changed: false, shrank: false });
  // 2,000 jobs in 10 ms: 200 jobs/ms, 1,000 jobs of work: capped at max.
  const grown = window.ended(2_000, 20);
  assert.deepEqual(grown, { limit: 32 + 512, rate: 200, changed: true, shrank: false });
  // 60 jobs/ms: 60 * ADAPT_TARGET_MS jobs beyond base.
  const shrunk = window.ended(600, 30);
  assert.deepEqual(shrunk, {
    limit: 32 + 60 * ADAPT_TARGET_MS,
    rate: 60,
    changed: true,
    shrank: true,
  });
});

Deno.test("an adaptive window measures no more often than asked", () => {
  const window = new Window(2);
  window.adapt(1, 1, 100, 0);
  assert.equal(window.ended(500, 5, 10), undefined, "5 ms is too soon");
  // The count carries over: 1,000 jobs over 10 ms.
  assert.deepEqual(window.ended(500, 10, 10), {
    limit: 1 + 100,
    rate: 100,
    changed: true,
    shrank: false,
  });
});

Deno.test("a blocking read on an adaptive window fills no more than base + min", () => {
  const window = new Window(0);
  window.adapt(4, 4, 512, 0);
  window.ended(10_000, 10); // fast jobs: the window grows to 4 + 512
  assert.equal(window.limit, 516);
  assert.equal(window.room(0), 516);
  assert.equal(window.readRoom(0), 8, "an idle worker does not take a pile of unknown jobs");
  assert.equal(window.readRoom(6), 2);
  assert.equal(window.readRoom(8), 0);
});

Deno.test("after a shrink, prefetched jobs that would wait over ADAPT_DRAIN_MS are given back", () => {
  const window = new Window(0);
  window.adapt(2, 2, 512, 0);
  // Slow jobs: 2 running, 300 buffered, at 0.01 jobs/ms the buffer takes 30 s to drain.
  assert.equal(window.keep(300, 302, 0.01), 2, "keep the window's worth beyond what runs");
  // At 1 job/ms those 300 drain in 300 ms, under ADAPT_DRAIN_MS: keep them all.
  assert.equal(window.keep(300, 302, 1), 300);
  assert.ok(300 <= 1 * ADAPT_DRAIN_MS);
  // Nothing buffered, nothing to give back; a window full of running jobs keeps none.
  assert.equal(window.keep(0, 4, 0), 0);
  assert.equal(window.keep(10, 20, 0), 0);
});
