import assert from "node:assert/strict";
import { SluiceError, ValidationError } from "../src/errors.ts";
import { type StandardResult, type StandardSchemaV1, task, validate } from "../src/task.ts";

const noop = () => {};

/** A Standard Schema v1 object around a plain validate function. */
function schema<Output>(
  check: (value: unknown) => StandardResult<Output> | Promise<StandardResult<Output>>,
): StandardSchemaV1<unknown, Output> {
  return { "~standard": { version: 1, vendor: "test", validate: check } };
}

/** Accepts `{ width: number }` and doubles the width; rejects anything else with a path. */
const syncSchema = schema<{ width: number }>((value) => {
  const width = (value as { width?: unknown } | null)?.width;
  if (typeof width !== "number") {
    return { issues: [{ message: "width must be a number", path: ["size", "width"] }] };
  }
  return { value: { width: width * 2 } };
});

/** The same, with an async validate. */
const asyncSchema = schema<{ width: number }>(async (value) => {
  await Promise.resolve();
  return syncSchema["~standard"].validate(value);
});

Deno.test("task() returns a frozen task with its name, handler and schema", () => {
  const handler = (data: { width: number }) => data.width;
  const t = task("width", handler, { schema: syncSchema });
  assert.equal(t.name, "width");
  assert.equal(t.handler, handler);
  assert.equal(t.schema, syncSchema);
  assert.ok(Object.isFrozen(t));
});

Deno.test("task() defaults to 3 attempts", () => {
  assert.equal(task("a", noop).attempts, 3);
  assert.equal(task("a", noop, {}).attempts, 3);
  assert.equal(task("a", noop, { retry: {} }).attempts, 3);
});

Deno.test("task() keeps the attempts it is given", () => {
  assert.equal(task("a", noop, { retry: { attempts: 1 } }).attempts, 1);
  assert.equal(task("a", noop, { retry: { attempts: 10 } }).attempts, 10);
});

Deno.test("task() accepts every allowed name character and 200 characters", () => {
  assert.equal(task("A-z_0.9:x", noop).name, "A-z_0.9:x");
  assert.equal(task("n".repeat(200), noop).name.length, 200);
});

for (
  const [label, name] of [
    ["an empty name", ""],
    ["a name with a space", "a b"],
    ["a name of 201 characters", "n".repeat(201)],
    ["a name with a brace", "a{b}"],
    ["a number as name", 42],
    ["undefined as name", undefined],
  ] as const
) {
  Deno.test(`task() throws TypeError on ${label}`, () => {
    assert.throws(
      () => task(name as string, noop),
      (err: unknown) => {
        assert.ok(err instanceof TypeError);
        assert.match(err.message, /^Cannot define task/);
        assert.match(err.message, /task name must be 1 to 200 characters/);
        return true;
      },
    );
  });
}

for (const handler of [undefined, null, "fn", 1, {}]) {
  Deno.test(`task() throws TypeError on ${JSON.stringify(handler) ?? "undefined"} as handler`, () => {
    assert.throws(
      () => task("a", handler as unknown as () => void),
      (err: unknown) => {
        assert.ok(err instanceof TypeError);
        assert.match(err.message, /^Cannot define task a: handler must be a function/);
        return true;
      },
    );
  });
}

for (const attempts of [0, -1, 1.5, NaN, Infinity, "3"]) {
  Deno.test(`task() throws RangeError on retry.attempts ${typeof attempts === "string" ? `"${attempts}"` : attempts}`, () => {
    assert.throws(
      () => task("a", noop, { retry: { attempts: attempts as number } }),
      (err: unknown) => {
        assert.ok(err instanceof RangeError);
        assert.match(
          err.message,
          /^Cannot define task a: retry\.attempts must be an integer from 1 to 1000000, got /,
        );
        const shown = typeof attempts === "string" ? `"${attempts}"` : String(attempts);
        assert.ok(err.message.endsWith(`got ${shown}`), err.message);
        return true;
      },
    );
  });
}

Deno.test("task() throws TypeError on a schema without ~standard.validate", () => {
  for (const bad of [{}, { "~standard": {} }, { "~standard": { validate: 1 } }]) {
    assert.throws(
      () => task("a", noop, { schema: bad as unknown as StandardSchemaV1 }),
      (err: unknown) => {
        assert.ok(err instanceof TypeError);
        assert.match(err.message, /^Cannot define task a: schema must implement Standard Schema/);
        return true;
      },
    );
  }
});

Deno.test("validate() passes data through when the task has no schema", async () => {
  const data = { any: "thing" };
  assert.equal(await validate("Cannot enqueue", task("a", noop), data), data);
});

for (const [kind, s] of [["sync", syncSchema], ["async", asyncSchema]] as const) {
  Deno.test(`validate() returns the value the ${kind} schema outputs`, async () => {
    const t = task("resize", (_: { width: number }) => {}, { schema: s });
    assert.deepEqual(await validate("Cannot enqueue", t, { width: 21 }), { width: 42 });
  });

  Deno.test(`validate() throws ValidationError naming the task and path (${kind})`, async () => {
    const t = task("resize", (_: { width: number }) => {}, { schema: s });
    await assert.rejects(
      validate("Cannot enqueue", t, { width: "x" }),
      (err: unknown) => {
        assert.ok(err instanceof ValidationError);
        assert.ok(err instanceof SluiceError);
        assert.equal(err.name, "ValidationError");
        assert.equal(
          err.message,
          "Cannot enqueue: data for task resize is invalid at size.width: width must be a number",
        );
        assert.deepEqual(err.issues, [
          { message: "width must be a number", path: ["size", "width"] },
        ]);
        return true;
      },
    );
  });
}

Deno.test("validate() leaves the path out of the message when the issue has none", async () => {
  const t = task("a", noop, { schema: schema(() => ({ issues: [{ message: "bad" }] })) });
  await assert.rejects(
    validate("Cannot run", t, 1),
    (err: unknown) => {
      assert.ok(err instanceof ValidationError);
      assert.equal(err.message, "Cannot run: data for task a is invalid: bad");
      return true;
    },
  );
});

Deno.test("validate() names only the first of several issues", async () => {
  const t = task("a", noop, {
    schema: schema(() => ({
      issues: [{ message: "first", path: [0] }, { message: "second", path: [1] }],
    })),
  });
  await assert.rejects(validate("Cannot enqueue", t, []), (err: unknown) => {
    assert.ok(err instanceof ValidationError);
    assert.match(err.message, /invalid at 0: first$/);
    assert.equal(err.issues.length, 2);
    return true;
  });
});

// Standard Schema allows path segments as `{ key }` objects (valibot uses them).
Deno.test({
  name: "validate() names the path when its segments are { key } objects",
  async fn() {
    const t = task("a", noop, {
      schema: schema(() => ({ issues: [{ message: "bad", path: [{ key: "size" }, { key: 0 }] }] })),
    });
    await assert.rejects(validate("Cannot enqueue", t, {}), /invalid at size\.0: bad$/);
  },
});
