// Reads take their replies as bytes and decode them as parsed (src/read.ts): the entries must be
// exactly what ioredis's own decoding gives, whatever the bytes.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { startRedis } from "../src/testing.ts";
import { xreadgroup } from "../src/read.ts";
import { inspect } from "./_helpers.ts";

Deno.test("a read decodes entries as ioredis does: known names and values as constants, any other bytes as UTF-8", async () => {
  await using redis = await startRedis();
  await using db = inspect(redis.url);
  const b = (s: string) => Buffer.from(s);
  const entries: (string | Buffer)[][] = [
    ["v", "1", "id", "a", "task", "t", "data", "null", "attempt", "1", "enq", "1"],
    // Near misses of every name and value matched as bytes.
    ["V", "2", "ix", "nul", "enz", "nulL", "date", "Null", "tasks", "11", "attempts", "x"],
    ["attempx", "atempt", "dat", "tas", "", "1 ", "n", "id ", "pri", "group", "trace", "sig"],
    ["vv", "a", "Task", "Data", "ENQ", "attemPt"],
    // Text that is not ASCII, and bytes that are not UTF-8.
    ["data", "é ü 日本 🎉", "id", "\u0000\u007f"],
    [
      b("v"),
      Buffer.from([0xff]),
      b("data"),
      Buffer.from([0xc3]),
      b("x"),
      Buffer.from([0xe6, 0x97]),
    ],
    [b("n"), Buffer.from([0x6e, 0x75, 0x6c, 0xec]), b("\u00e9"), Buffer.from([0xf0, 0x9f, 0x8e])],
  ];
  for (const fields of entries) await db.xadd("s", "*", ...fields);
  await db.xgroup("CREATE", "s", "bytes", "0");
  await db.xgroup("CREATE", "s", "strings", "0");
  const args = (group: string) => ["GROUP", group, "c", "COUNT", 100, "STREAMS", "s", ">"];
  const ours = await xreadgroup(db, args("bytes"));
  const theirs = await db.call("XREADGROUP", args("strings")) as [string, unknown][];
  assert.equal(ours?.[0]?.[1].length, entries.length);
  assert.deepEqual(ours?.[0]?.[1], theirs[0]![1]);
  assert.equal(Buffer.from(ours![0]![0]).toString(), "s", "the stream's name stays bytes");
  // Pipelined, as reads behind settles are.
  await db.xadd("s", "*", "v", "1", "data", "é");
  const pipeline = db.pipeline();
  xreadgroup(pipeline as never, args("bytes"));
  const [[err, reply]] = (await pipeline.exec())! as [[Error | null, unknown]];
  assert.equal(err, null);
  assert.deepEqual((reply as [unknown, [string, string[]][]][])[0]![1][0]![1], [
    "v",
    "1",
    "data",
    "é",
  ]);
  // Nothing to read: null, as ioredis gives.
  assert.equal(await xreadgroup(db, args("bytes")), null);
});
