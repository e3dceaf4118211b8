/**
 * HMAC-SHA256 signing of stream entries, so a worker runs only jobs that a holder of the key
 * enqueued. Keys are `[current, ...previous]`: entries are signed with the first, and checked
 * against each in turn, so keys can be rotated without losing jobs in flight.
 *
 * What is signed is a canonical encoding of the wire fields v, id, task, data, enq, trace,
 * retry and timeout, in that order: each present field as a netstring of its UTF-8 bytes
 * (`<byte length>:<value>,`) and each absent one as `-,`; then field group as a netstring,
 * only if the job has one (or `-,` if it has none but a webhook), then field webhook, only if
 * the job has one. Field `attempt` is not covered:
 * retries bump it inside Lua scripts, which do not hold the key.
 *
 * @module
 */
import type { WireJob } from "./codec.ts";
import { WIRE_VERSION } from "./codec.ts";

/** A signing key: a secret string (its UTF-8 bytes are the key) or raw bytes. */
export type SigningKey = string | Uint8Array;

const encoder = new TextEncoder();
/** A base64url HMAC-SHA256: 32 bytes, 43 characters without padding. */
const SIG = /^[A-Za-z0-9_-]{43}$/;

/**
 * Signs and verifies entries with a list of keys. The keys are imported into Web Crypto once,
 * on first use.
 *
 * @example Sign, then verify
 * ```ts
 * import { Signer } from "./sign.ts";
 * const signer = new Signer("Cannot create queue", ["a long random secret"]);
 * const job = { id: "1", task: "t", data: "{}", attempt: 1, enq: 0 };
 * const sig = await signer.sign(job);
 * console.log(await signer.verify({ ...job, sig })); // true
 * console.log(await signer.verify({ ...job, data: "[]", sig })); // false
 * ```
 */
export class Signer {
  #raw: Uint8Array<ArrayBuffer>[];
  #keys: Promise<CryptoKey[]> | undefined;

  /**
   * Checks the keys; nothing is imported yet.
   *
   * @param action What is being done, for error messages ("Cannot create queue").
   * @param keys `[current, ...previous]`: non-empty strings or Uint8Arrays.
   * @throws {TypeError} If keys is not a non-empty array of non-empty strings or Uint8Arrays.
   */
  constructor(action: string, keys: readonly SigningKey[]) {
    this.#raw = checkKeys(action, keys);
  }

  /** Signs an entry with the first key. Returns the base64url signature, without padding. */
  async sign(job: WireJob): Promise<string> {
    const [current] = await this.#imported();
    return toBase64url(await mac(current!, canonical(job)));
  }

  /**
   * True if the entry's `sig` is the HMAC of its canonical encoding under one of the keys.
   * Each comparison takes the same time wherever the bytes differ.
   */
  async verify(job: WireJob): Promise<boolean> {
    if (job.sig === undefined || !SIG.test(job.sig)) return false;
    const given = fromBase64url(job.sig);
    const bytes = canonical(job);
    for (const key of await this.#imported()) {
      if (equal(await mac(key, bytes), given)) return true;
    }
    return false;
  }

  /** The HMAC-SHA256 of `text`'s UTF-8 bytes under the first key, as lowercase hex. */
  async hex(text: string): Promise<string> {
    const [current] = await this.#imported();
    const bytes = await mac(current!, encoder.encode(text));
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  }

  #imported(): Promise<CryptoKey[]> {
    this.#keys ??= Promise.all(
      this.#raw.map((raw) =>
        crypto.subtle.importKey("raw", raw, { name: "HMAC", hash: "SHA-256" }, false, ["sign"])
      ),
    );
    return this.#keys;
  }
}

/**
 * The bytes an entry's signature covers: v, id, task, data, enq, trace, retry and timeout, in
 * that order, each present one as `<UTF-8 byte length>:<value>,` and each absent one as `-,`.
 *
 * @example
 * ```ts
 * import { canonical } from "./sign.ts";
 * const bytes = canonical({ id: "7", task: "t", data: "\"é\"", attempt: 3, enq: 5 });
 * console.log(new TextDecoder().decode(bytes)); // 1:1,1:7,1:t,4:"é",1:5,-,-,-,
 * ```
 */
export function canonical(job: WireJob): Uint8Array<ArrayBuffer> {
  const values = [
    WIRE_VERSION,
    job.id,
    job.task,
    job.data,
    String(job.enq),
    job.trace,
    job.retry,
    job.timeout === undefined ? undefined : String(job.timeout),
  ];
  // Field group came later: it is signed only when present, so older entries' bytes (and
  // signatures) stay as they were, and neither adding nor removing a group passes.
  if (job.group !== undefined || job.webhook !== undefined) values.push(job.group);
  // Field webhook came later still, the same way, after group (`-,` if the job has none).
  if (job.webhook !== undefined) values.push(job.webhook);
  const parts: Uint8Array<ArrayBuffer>[] = [];
  for (const value of values) {
    if (value === undefined) {
      parts.push(ABSENT);
      continue;
    }
    const bytes = encoder.encode(value);
    parts.push(encoder.encode(`${bytes.length}:`), bytes, COMMA);
  }
  const out = new Uint8Array(parts.reduce((size, part) => size + part.length, 0));
  let at = 0;
  for (const part of parts) {
    out.set(part, at);
    at += part.length;
  }
  return out;
}

const ABSENT = encoder.encode("-,");
const COMMA = encoder.encode(",");

async function mac(key: CryptoKey, bytes: Uint8Array<ArrayBuffer>): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.sign("HMAC", key, bytes));
}

/** Compares two byte arrays in time that depends only on their length. */
function equal(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  let diff = 0;
  for (let i = 0; i < a.length; i++) diff |= a[i]! ^ b[i]!;
  return diff === 0;
}

function toBase64url(bytes: Uint8Array): string {
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

function fromBase64url(text: string): Uint8Array {
  const binary = atob(text.replaceAll("-", "+").replaceAll("_", "/"));
  return Uint8Array.from(binary, (c) => c.charCodeAt(0));
}

function checkKeys(action: string, keys: unknown): Uint8Array<ArrayBuffer>[] {
  const rule = "signingKeys must be a non-empty array of non-empty strings or Uint8Arrays";
  if (!Array.isArray(keys)) throw new TypeError(`${action}: ${rule}, got ${describe(keys)}`);
  if (keys.length === 0) throw new TypeError(`${action}: ${rule}, got []`);
  return keys.map((key, i) => {
    if (typeof key === "string" && key.length > 0) return encoder.encode(key);
    // A copy: the caller may reuse its buffer.
    if (key instanceof Uint8Array && key.length > 0) return key.slice();
    throw new TypeError(`${action}: ${rule}, got ${describe(key)} at index ${i}`);
  });
}

/** What a bad key is, never what it holds: it may be a secret. */
function describe(value: unknown): string {
  if (value === "") return '""';
  if (value instanceof Uint8Array) return "an empty Uint8Array";
  if (value === null || value === undefined) return String(value);
  if (Array.isArray(value)) return "an array";
  if (typeof value === "object") return `an object (${value.constructor?.name ?? "no class"})`;
  return `a ${typeof value}`;
}
