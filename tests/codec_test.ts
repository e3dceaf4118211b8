import assert from "node:assert/strict";
import {
  decodeData,
  decodeFields,
  encodeData,
  encodeFields,
  isFailure,
  uuidv7,
  WIRE_VERSION,
  type WireJob,
} from "../src/codec.ts";

const JOB: WireJob = {
  id: "job-1",
  task: "resize",
  data: '{"url":"a.png","width":100}',
  attempt: 2,
  enq: 1_700_000_000_000,
};

/** A valid entry as a field map, to break one field at a time. */
function fields(overrides: Record<string, string | undefined> = {}): string[] {
  const base: Record<string, string | undefined> = {
    v: "1",
    id: "job-1",
    task: "resize",
    data: "{}",
    attempt: "1",
    enq: "1700000000000",
    ...overrides,
  };
  return Object.entries(base).flatMap(([k, v]) => v === undefined ? [] : [k, v]);
}

function failure(input: string[]): string {
  const decoded = decodeFields(input);
  assert.ok(isFailure(decoded), `expected a failure, got ${JSON.stringify(decoded)}`);
  assert.equal(decoded.reason, "malformed");
  return decoded.error;
}

Deno.test("encodeFields() writes the wire fields in order", () => {
  assert.deepEqual(encodeFields(JOB), [
    "v",
    "1",
    "id",
    "job-1",
    "task",
    "resize",
    "data",
    '{"url":"a.png","width":100}',
    "attempt",
    "2",
    "enq",
    "1700000000000",
  ]);
  assert.equal(WIRE_VERSION, "1");
});

Deno.test("decodeFields() round-trips what encodeFields() wrote", () => {
  assert.deepEqual(decodeFields(encodeFields(JOB)), JOB);
});

Deno.test("decodeFields() round-trips the optional trace field", () => {
  const job = { ...JOB, trace: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01" };
  const decoded = decodeFields(encodeFields(job));
  assert.deepEqual(decoded, job);
});

Deno.test("decodeFields() leaves trace out when the entry has none", () => {
  const decoded = decodeFields(encodeFields(JOB));
  assert.ok(!isFailure(decoded));
  assert.ok(!("trace" in decoded));
});

Deno.test("decodeFields() ignores unknown fields such as sig", () => {
  assert.deepEqual(decodeFields([...encodeFields(JOB), "sig", "abc", "extra", "x"]), JOB);
});

Deno.test("decodeFields() reports a missing v", () => {
  assert.match(failure(fields({ v: undefined })), /field v is missing/);
});

Deno.test("decodeFields() reports an unknown wire version", () => {
  assert.match(failure(fields({ v: "2" })), /unknown wire version "2"/);
});

for (const name of ["id", "task", "data"]) {
  Deno.test(`decodeFields() reports a missing ${name}`, () => {
    assert.match(failure(fields({ [name]: undefined })), new RegExp(`field ${name} is missing`));
  });

  Deno.test(`decodeFields() reports an empty ${name}`, () => {
    assert.match(failure(fields({ [name]: "" })), new RegExp(`field ${name} is missing`));
  });
}

for (const attempt of ["0", "abc", "-1", "1.5", "01", undefined]) {
  Deno.test(`decodeFields() rejects attempt ${JSON.stringify(attempt) ?? "missing"}`, () => {
    assert.match(failure(fields({ attempt })), /field attempt must be an integer >= 1/);
  });
}

for (const enq of ["abc", "-5", "1.5", "", undefined]) {
  Deno.test(`decodeFields() rejects enq ${JSON.stringify(enq) ?? "missing"}`, () => {
    assert.match(failure(fields({ enq })), /field enq must be ms since epoch/);
  });
}

Deno.test("decodeFields() reads numbers from attempt and enq", () => {
  const decoded = decodeFields(fields({ attempt: "7", enq: "0" }));
  assert.ok(!isFailure(decoded));
  assert.equal(decoded.attempt, 7);
  assert.equal(decoded.enq, 0);
});

Deno.test("decodeFields() returns a failure instead of throwing on an odd field list", () => {
  assert.match(failure(["v"]), /field v is missing/);
  assert.match(failure([]), /field v is missing/);
});

Deno.test("decodeData() parses JSON", () => {
  assert.deepEqual(decodeData('{"a":[1,2,{"b":null}]}'), { a: [1, 2, { b: null }] });
  assert.equal(decodeData("5"), 5);
});

Deno.test("decodeData() throws SyntaxError on text that is not JSON", () => {
  assert.throws(() => decodeData("{nope"), SyntaxError);
});

Deno.test("decodeData() drops __proto__ keys at every depth", () => {
  const parsed = decodeData(
    '{"__proto__":{"polluted":true},"a":1,"nested":{"__proto__":{"polluted":true},"b":2}}',
  ) as Record<string, unknown>;
  assert.equal(Object.hasOwn(parsed, "__proto__"), false);
  assert.equal(Object.getPrototypeOf(parsed), Object.prototype);
  assert.equal(parsed.a, 1);
  const nested = parsed.nested as Record<string, unknown>;
  assert.equal(Object.hasOwn(nested, "__proto__"), false);
  assert.equal(nested.b, 2);
  // Merging the parsed data into another object must not reach Object.prototype.
  Object.assign({}, parsed, nested);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test({
  name: "decodeData() drops __proto__ keys written with a unicode escape",
  fn() {
    const parsed = decodeData('{"\\u005f_proto__":{"polluted":true}}') as object;
    assert.equal(Object.hasOwn(parsed, "__proto__"), false);
  },
});

Deno.test("encodeData() turns undefined into null", () => {
  assert.equal(encodeData(undefined), "null");
  assert.equal(encodeData(null), "null");
});

Deno.test("encodeData() writes JSON text", () => {
  assert.equal(encodeData({ a: [1, "x"] }), '{"a":[1,"x"]}');
});

Deno.test("encodeData() throws TypeError on a BigInt", () => {
  assert.throws(() => encodeData(10n), TypeError);
  assert.throws(() => encodeData({ n: 10n }), TypeError);
});

Deno.test("encodeData() throws TypeError on a function or a cycle", () => {
  assert.throws(() => encodeData(() => {}), TypeError);
  const cycle: Record<string, unknown> = {};
  cycle.self = cycle;
  assert.throws(() => encodeData(cycle), TypeError);
});

const UUID_V7 = /^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

Deno.test("uuidv7() has the UUID layout, version 7 and the RFC 9562 variant", () => {
  for (let i = 0; i < 1_000; i++) {
    const id = uuidv7();
    assert.match(id, UUID_V7);
    const hex = id.replaceAll("-", "");
    assert.equal(parseInt(hex[12]!, 16), 7);
    assert.equal(parseInt(hex[16]!, 16) >> 2, 0b10);
  }
});

Deno.test("uuidv7() does not repeat", () => {
  const ids = new Set(Array.from({ length: 10_000 }, () => uuidv7()));
  assert.equal(ids.size, 10_000);
});

/** Runs `fn` with Date.now() pinned to `ms`. */
function at<T>(ms: number, fn: () => T): T {
  const now = Date.now;
  Date.now = () => ms;
  try {
    return fn();
  } finally {
    Date.now = now;
  }
}

Deno.test("uuidv7() starts with the current ms as 48 big-endian bits", () => {
  const ms = 0x0123_4567_89ab;
  const id = at(ms, uuidv7);
  assert.equal(id.slice(0, 13), "01234567-89ab");
});

Deno.test("uuidv7() ids from a later millisecond sort after earlier ones", () => {
  const start = 1_700_000_000_000;
  const ids: string[] = [];
  for (const step of [0, 1, 2, 255, 256, 65_536, 86_400_000]) {
    for (let i = 0; i < 20; i++) ids.push(at(start + step, uuidv7));
  }
  for (let i = 20; i < ids.length; i++) {
    const earlier = ids.slice(0, i - (i % 20));
    for (const e of earlier) assert.ok(e < ids[i]!, `${e} should sort before ${ids[i]}`);
  }
});

Deno.test("uuidv7() ids from the real clock sort by the ms they were made in", () => {
  const first = uuidv7();
  const born = Date.now();
  while (Date.now() === born) {
    // Spin until the clock ticks: a wait on the clock itself, not a fixed sleep.
  }
  const second = uuidv7();
  assert.ok(first < second, `${first} should sort before ${second}`);
});
