import assert from "node:assert/strict";
import { backoffDelay, checkRetry, retryWait } from "../src/backoff.ts";

const err = new Error("x");

Deno.test("backoffDelay() fixed waits the same every time, 1 s by default", () => {
  assert.deepEqual([1, 2, 9].map((n) => backoffDelay({ type: "fixed", delay: 250 }, n, err)), [
    250,
    250,
    250,
  ]);
  assert.equal(backoffDelay({ type: "fixed" }, 1, err), 1_000);
});

Deno.test("backoffDelay() exponential grows by factor and stops at max", () => {
  const policy = { type: "exponential", base: 100, factor: 3, max: 2_000, jitter: false } as const;
  assert.deepEqual([1, 2, 3, 4, 5].map((n) => backoffDelay(policy, n, err)), [
    100,
    300,
    900,
    2_000,
    2_000,
  ]);
});

Deno.test("backoffDelay() jitter spreads the delay over [d/2, d]", () => {
  const policy = { type: "exponential", base: 1_000 } as const;
  assert.equal(backoffDelay(policy, 2, err, 0), 1_000);
  assert.equal(backoffDelay(policy, 2, err, 0.999999), 2_000);
  const spread = new Set(Array.from({ length: 50 }, () => backoffDelay(policy, 1, err)));
  assert.ok(spread.size > 10, "jitter is on by default");
  for (const ms of spread) assert.ok(ms >= 500 && ms <= 1_000, String(ms));
});

Deno.test("backoffDelay() takes a custom function, and treats NaN or negative as 0", () => {
  const seen: [number, string][] = [];
  const fn = (attempt: number, e: Error) => (seen.push([attempt, e.message]), attempt * 7);
  assert.equal(backoffDelay(fn, 3, err), 21);
  assert.deepEqual(seen, [[3, "x"]]);
  assert.equal(backoffDelay(() => NaN, 1, err), 0);
  assert.equal(backoffDelay(() => -5, 1, err), 0);
  assert.equal(backoffDelay(() => 1e12, 1, err), 2 ** 31 - 1);
});

Deno.test("checkRetry() rejects out-of-range policies with the action, field and value", () => {
  const cases: [unknown, RegExp][] = [
    [{ attempts: 0 }, /^A: retry.attempts must be an integer from 1 to 1000000, got 0$/],
    [{ backoff: { type: "fixed", delay: -1 } }, /retry.backoff.delay .* got -1/],
    [{ backoff: { type: "exponential", factor: 0.5 } }, /retry.backoff.factor .* got 0.5/],
    [{ backoff: { type: "exponential", base: 1.5 } }, /retry.backoff.base .* got 1.5/],
    [{ backoff: { type: "linear" } }, /retry.backoff must be/],
  ];
  for (const [policy, message] of cases) {
    assert.throws(() => checkRetry("A", policy as never), (e: Error) => message.test(e.message));
  }
  checkRetry("A", { attempts: 1, backoff: { type: "fixed", delay: 0 } }); // edges allowed
});

Deno.test("retryWait() doubles from base, stops at max, and never overflows", () => {
  assert.deepEqual([0, 1, 2, 5, 6, 1_000].map((n) => retryWait(50, n, 2_000)), [
    50,
    100,
    200,
    1_600,
    2_000,
    2_000,
  ]);
  assert.equal(retryWait(0, 1_000, 2_000), 0);
  assert.equal(retryWait(50, -3, 2_000), 50);
});

Deno.test("retryWait() with jitter draws from the upper half of the wait", () => {
  const waits = new Set(Array.from({ length: 50 }, () => retryWait(1_000, 1, 60_000, true)));
  assert.ok(waits.size > 10, "waits spread out");
  for (const ms of waits) assert.ok(ms >= 1_000 && ms <= 2_000, String(ms));
});
