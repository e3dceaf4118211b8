import assert from "node:assert/strict";
import {
  dataError,
  decodeData,
  decodeFields,
  encodeData,
  encodeFields,
  fieldsToRecord,
  isFailure,
  mayBeMangled,
  oversize,
  utf8Length,
  uuidv7,
  validUtf8,
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

function failure(input: string[], reason = "malformed", limit?: number): string {
  const decoded = decodeFields(input, limit);
  assert.ok(isFailure(decoded), `expected a failure, got ${JSON.stringify(decoded)}`);
  assert.equal(decoded.reason, reason);
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

Deno.test("decodeFields() reads sig and ignores unknown fields, even repeated ones", () => {
  const input = [...encodeFields(JOB), "sig", "abc", "extra", "x", "extra", "y"];
  assert.deepEqual(decodeFields(input), { ...JOB, sig: "abc" });
  assert.deepEqual(decodeFields(encodeFields({ ...JOB, sig: "abc" })), { ...JOB, sig: "abc" });
});

Deno.test("decodeFields() reports a missing v as malformed", () => {
  assert.match(failure(fields({ v: undefined })), /field v is missing/);
});

Deno.test("decodeFields() reports another wire version as unknown-version", () => {
  assert.match(failure(fields({ v: "2" }), "unknown-version"), /unknown wire version "2"/);
  assert.match(failure(fields({ v: "" }), "unknown-version"), /unknown wire version ""/);
});

for (const name of ["v", "id", "task", "data", "attempt", "enq", "trace", "sig"]) {
  Deno.test(`decodeFields() reports field ${name} given twice as malformed`, () => {
    const input = [...fields({ trace: "t", sig: "s" }), name, name === "v" ? "1" : "other"];
    assert.match(failure(input), new RegExp(`field ${name} appears more than once`));
  });
}

Deno.test("decodeFields() rejects an id over 200 characters and a task name sluice cannot run", () => {
  assert.ok(!isFailure(decodeFields(fields({ id: "x".repeat(200) }))));
  assert.match(failure(fields({ id: "x".repeat(201) })), /field id must be 1 to 200 characters/);
  assert.match(failure(fields({ task: "send mail" })), /field task must be 1 to 200 characters/);
  assert.match(failure(fields({ task: "t".repeat(201) })), /field task/);
});

Deno.test("decodeFields() quotes at most 64 characters of a bad field in its error", () => {
  const error = failure(fields({ attempt: "x".repeat(100_000) }));
  assert.ok(error.length < 200, `error is ${error.length} characters`);
  assert.match(error, /got "x{64}…"$/);
});

Deno.test("decodeFields() allows data of exactly maxPayloadBytes UTF-8 bytes, not one more", () => {
  // "é" is 2 bytes: 50 of them and the quotes make 102 bytes in 52 characters.
  const data = JSON.stringify("é".repeat(50));
  assert.equal(new TextEncoder().encode(data).length, 102);
  assert.ok(!isFailure(decodeFields(fields({ data }), 102)));
  assert.equal(
    failure(fields({ data }), "too-large", 101),
    "field data is 102 bytes, over maxPayloadBytes 101",
  );
});

Deno.test("decodeFields() reports a malformed entry as malformed even when it is too large", () => {
  assert.match(failure(fields({ data: "x".repeat(100), enq: "x" }), "malformed", 10), /enq/);
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

for (
  const text of [
    '{"__proto__":{"polluted":true}}',
    '{"a":1,"nested":[{"b":{"__proto__":{"polluted":true}}}]}',
    '{"\\u005f_proto__":{"polluted":true}}',
    '{"__pro\\u0074o__":{"polluted":true}}',
  ]
) {
  Deno.test(`decodeData() refuses a __proto__ key: ${text}`, () => {
    assert.throws(() => decodeData(text), TypeError);
    assert.equal(({} as Record<string, unknown>).polluted, undefined);
  });
}

Deno.test("decodeData() keeps __proto__ as a string value and constructor keys as plain data", () => {
  assert.deepEqual(decodeData('{"key":"__proto__","n":"\\u0041"}'), { key: "__proto__", n: "A" });
  const data = decodeData('{"constructor":{"prototype":{"polluted":1}}}') as Record<
    string,
    unknown
  >;
  assert.deepEqual(Object.keys(data), ["constructor"]);
  assert.equal(({} as Record<string, unknown>).polluted, undefined);
});

Deno.test("dataError() keeps the position and never quotes the data", () => {
  for (const text of ['{"token":"SECRET-PAYLOAD",', "SECRET-PAYLOAD", '{"a":"SECRET-PAYLOAD"}x']) {
    let thrown: unknown;
    try {
      decodeData(text);
    } catch (err) {
      thrown = err;
    }
    const error = dataError(thrown);
    assert.match(error, /^field data is not JSON/);
    assert.doesNotMatch(error, /SECRET/);
  }
  assert.equal(
    dataError(new SyntaxError("Unexpected token at position 26 (line 1 column 27)")),
    "field data is not JSON (at position 26)",
  );
  let proto: unknown;
  try {
    decodeData('{"__proto__":1}');
  } catch (err) {
    proto = err;
  }
  assert.equal(dataError(proto), "field data has a key named __proto__, which sluice refuses");
});

Deno.test("utf8Length() counts bytes as TextEncoder encodes them", () => {
  const texts = [
    "",
    "ascii",
    "é",
    "€",
    "🚀",
    "a🚀b",
    "\ud83d", // a lone high surrogate: U+FFFD, 3 bytes
    "\ude80x", // a lone low surrogate
    "x\ud83d", // a high surrogate at the end
    "\ud83d\ud83d\ude80",
    "\u07ff\u0800\uffff",
  ];
  for (const text of texts) {
    assert.equal(utf8Length(text), new TextEncoder().encode(text).length, JSON.stringify(text));
  }
});

Deno.test("oversize() returns the byte size only when it is over the limit", () => {
  assert.equal(oversize("abc", 3), undefined);
  assert.equal(oversize("abcd", 3), 4);
  assert.equal(oversize("€€", 6), undefined);
  assert.equal(oversize("€€", 5), 6);
});

Deno.test("mayBeMangled() spots U+FFFD, and validUtf8() tells real bytes from invalid ones", () => {
  assert.equal(mayBeMangled(["v", "1", "data", '"ok"']), false);
  assert.equal(mayBeMangled(["v", "1", "data", '"\ufffd"']), true);
  assert.equal(validUtf8([new Uint8Array([0xef, 0xbf, 0xbd]), new Uint8Array([0x61])]), true);
  assert.equal(validUtf8([new Uint8Array([0x61]), new Uint8Array([0x7b, 0xff, 0x7d])]), false);
  assert.equal(validUtf8([new Uint8Array([0xc3])]), false, "a truncated sequence");
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

Deno.test("fieldsToRecord() keeps the last value of a repeated field and ignores an odd tail", () => {
  assert.deepEqual(fieldsToRecord(["a", "1", "b", "2", "a", "3", "tail"]), { a: "3", b: "2" });
  assert.deepEqual(fieldsToRecord(["n", 7, "lag", null]), { n: 7, lag: null });
});

Deno.test("fieldsToRecord() keeps a field named __proto__ as a plain property", () => {
  const record = fieldsToRecord(["__proto__", "x", "id", "a"]);
  assert.equal(Object.getPrototypeOf(record), Object.prototype);
  assert.deepEqual(Object.keys(record), ["__proto__", "id"]);
  assert.equal(Object.getOwnPropertyDescriptor(record, "__proto__")?.value, "x");
});
