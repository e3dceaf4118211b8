import assert from "node:assert/strict";
import type { WireJob } from "../src/codec.ts";
import { canonical, Signer } from "../src/sign.ts";

const OLD = "old-key-0123456789abcdef0123456789";
const NEW = "new-key-0123456789abcdef0123456789";

const JOB: WireJob = {
  id: "job-1",
  task: "resize",
  data: '{"url":"a.png","width":100}',
  attempt: 1,
  enq: 1_700_000_000_000,
};
const FULL: WireJob = {
  ...JOB,
  data: '{"name":"Zoë 🚀"}',
  trace: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
  retry: '{"attempts":5}',
  timeout: 3_000,
};

Deno.test("canonical() writes each present field as a netstring of its UTF-8 bytes, each absent one as -,", () => {
  const text = (job: WireJob) => new TextDecoder().decode(canonical(job));
  assert.equal(
    text(JOB),
    '1:1,5:job-1,6:resize,27:{"url":"a.png","width":100},13:1700000000000,-,-,-,',
  );
  assert.equal(
    text(FULL),
    '1:1,5:job-1,6:resize,20:{"name":"Zoë 🚀"},13:1700000000000,' +
      '55:00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01,14:{"attempts":5},4:3000,',
  );
  assert.deepEqual(canonical({ ...JOB, attempt: 9, sig: "x" }), canonical(JOB), "attempt, sig");
});

Deno.test("Signer.sign() matches HMAC-SHA256 as openssl computes it (known-answer vectors)", async () => {
  // printf '%s' '<canonical>' | openssl dgst -sha256 -hmac current-key -binary | base64url
  const signer = new Signer("test", ["current-key"]);
  assert.equal(await signer.sign(JOB), "Q9HMn5FtnrnMKzImT4lt1CcyHcUR7pcZXMJyrAYDYYM");
  assert.equal(await signer.sign(FULL), "fUq2Um4Ayr6WQs730ClvzbvgUuJ2KETi2TiCm_yDvrQ");
  const bytes = new Signer("test", [new TextEncoder().encode("current-key")]);
  assert.equal(await bytes.sign(JOB), "Q9HMn5FtnrnMKzImT4lt1CcyHcUR7pcZXMJyrAYDYYM");
});

Deno.test("Signer.verify() accepts every listed key, and rejects a change to any signed field", async () => {
  const sig = await new Signer("test", [OLD]).sign(FULL);
  const rotated = new Signer("test", [NEW, OLD]);
  assert.equal(await rotated.verify({ ...FULL, sig }), true);
  assert.equal(await new Signer("test", [NEW]).verify({ ...FULL, sig }), false);
  assert.equal(await rotated.verify({ ...FULL, attempt: 7, sig }), true, "attempt is not signed");
  const changes: Partial<WireJob>[] = [
    { id: "job-2" },
    { task: "resizf" },
    { data: '{"name":"Zoe 🚀"}' },
    { enq: FULL.enq + 1 },
    { trace: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00" },
    { retry: '{"attempts":6}' },
    { timeout: 3_001 },
  ];
  for (const change of changes) {
    assert.equal(await rotated.verify({ ...FULL, ...change, sig }), false, JSON.stringify(change));
  }
  for (const absent of ["trace", "retry", "timeout"] as const) {
    const job = { ...FULL, sig };
    delete job[absent];
    assert.equal(await rotated.verify(job), false, `${absent} removed`);
  }
});

Deno.test("Signer.verify() rejects a missing, malformed, padded or truncated sig", async () => {
  const signer = new Signer("test", [NEW]);
  const sig = await signer.sign(JOB);
  assert.equal(await signer.verify({ ...JOB, sig }), true);
  for (
    const bad of [
      undefined,
      "",
      sig.slice(0, 42),
      `${sig}=`,
      `${sig.slice(0, 42)}+`,
      "!".repeat(43),
    ]
  ) {
    const job: WireJob = bad === undefined ? JOB : { ...JOB, sig: bad };
    assert.equal(await signer.verify(job), false, String(bad));
  }
});
