/**
 * Admission: entries read or claimed become held jobs, or burials. An entry that fails to
 * decode, fails its signature check or is over the size limit goes to the dead letters with
 * its reason, is acked, and never runs.
 *
 * @module
 */
import { WEBHOOK_TASK } from "./webhook.ts";
import type { Holding } from "./consume.ts";
import {
  dataError,
  decodeData,
  type DecodeFailure,
  decodeFields,
  isFailure,
  mayBeMangled,
  validUtf8,
  type WireJob,
} from "./codec.ts";
import { type DeadReason, Job, type JobPolicy, type Lessor, trimText } from "./job.ts";
import { settleArgs } from "./scripts/settle.ts";
import type { RetryOptions } from "./backoff.ts";
import type { Signer } from "./sign.ts";
import type { Cancels } from "./cancel.ts";
import { internal } from "./_internal.ts";
import type { LaneEntries } from "./read.ts";

/** Entries as XREADGROUP returns them: id and flat fields. */
export type ReadEntry = [entryId: string, fields: string[]];

/** An entry decoded, or why it cannot run. */
type Verdict = WireJob | DecodeFailure | {
  reason: "bad-encoding" | "bad-signature";
  error: string;
};

/** A job given no retry or timeout at enqueue: one shared, frozen policy. */
const NO_POLICY: JobPolicy = Object.freeze({});

/** Turns one consumer's entries into held jobs. */
export class Admitter {
  #c: Holding;
  #lessor: Lessor;
  #cancels: Cancels;

  constructor(c: Holding, lessor: Lessor, cancels: Cancels) {
    this.#c = c;
    this.#lessor = lessor;
    this.#cancels = cancels;
  }

  /**
   * Admits entries fresh from a read (first deliveries), counted in the window as requested
   * until now. `mark` is the cancel listener's state from before the read: if a cancel may have
   * been missed since, the jobs' records are looked at.
   */
  async fresh(reads: LaneEntries, mark: number): Promise<void> {
    let admitted: Job[] = [];
    let count = 0;
    for (const [, entries] of reads) count += entries.length;
    try {
      for (const [lane, entries] of reads) {
        const admission = this.admit(entries, undefined, lane);
        const jobs = Array.isArray(admission) ? admission : await admission;
        admitted = admitted.length === 0 ? jobs : admitted.concat(jobs);
      }
    } finally {
      this.#c.window.free(count);
    }
    if (this.#cancels.missed(mark)) await this.#cancels.check(admitted);
  }

  /**
   * Turns a batch of entries into held jobs, and dead-letters those that cannot run. Checks
   * that need a round trip or Web Crypto (raw bytes, signatures) run for the whole batch before
   * any job is buffered; without signing keys and without a U+FFFD in sight there are none, and
   * no await either.
   *
   * @param deliveries Each entry's delivery count (claimed entries); fresh reads are all 1.
   * @param lane The lane (priority stream) the entries come from.
   */
  admit(
    batch: readonly ReadEntry[],
    deliveries?: readonly number[],
    lane = 0,
  ): Job[] | Promise<Job[]> {
    const { signer, maxPayloadBytes } = this.#c.ctx;
    if (signer === undefined && !batch.some(([, fields]) => mayBeMangled(fields))) {
      return this.#admitDecoded(
        batch,
        deliveries,
        batch.map(([, fields]) => this.#decode(fields, maxPayloadBytes)),
        true,
        lane,
      );
    }
    return this.#admitChecked(batch, deliveries, signer, lane);
  }

  /**
   * Decodes an entry. A Worker's webhook delivery may be over the payload limit: it carries a
   * whole job (already taken in under the limit) and its result, so it is let through.
   */
  #decode(fields: string[], maxPayloadBytes: number): Verdict {
    const verdict = decodeFields(fields, maxPayloadBytes);
    if (
      isFailure(verdict) && verdict.reason === "too-large" && this.#c.ctx.delivers === true &&
      fields[4] === "task" && fields[5] === WEBHOOK_TASK
    ) {
      return decodeFields(fields);
    }
    return verdict;
  }

  async #admitChecked(
    batch: readonly ReadEntry[],
    deliveries: readonly number[] | undefined,
    signer: Signer | undefined,
    lane: number,
  ): Promise<Job[]> {
    const suspects = batch.filter(([, fields]) => mayBeMangled(fields));
    const mangled = await this.#badBytes(suspects, lane);
    const verdicts = batch.map(([entryId, fields]): Verdict =>
      mangled.has(entryId)
        ? { reason: "bad-encoding", error: "a field is not valid UTF-8" }
        : this.#decode(fields, this.#c.ctx.maxPayloadBytes)
    );
    if (signer !== undefined) {
      const delivers = this.#c.ctx.delivers === true;
      const signed = await Promise.all(
        // A webhook delivery is written by a script, which holds no key: a Worker's handler
        // checks the signature of the job it reports on (which covers the URL) before it
        // POSTs. A consume() stream has no such handler: it hands out no unsigned entry.
        verdicts.map((v) =>
          isFailure(v) || (delivers && v.task === WEBHOOK_TASK && v.id.startsWith("webhook:"))
            ? true
            : signer.verify(v)
        ),
      );
      signed.forEach((ok, i) => {
        if (ok) return;
        const { sig } = verdicts[i] as WireJob;
        verdicts[i] = {
          reason: "bad-signature",
          error: sig === undefined
            ? "the entry is not signed (no field sig) and signing keys are set"
            : "field sig does not match the entry under any signing key",
        };
      });
    }
    return this.#admitDecoded(batch, deliveries, verdicts, signer === undefined, lane);
  }

  /**
   * The entry ids, among `suspects`, whose raw bytes are not valid UTF-8. ioredis decoded them
   * with U+FFFD for invalid bytes: a second look, as bytes, tells a real U+FFFD from a mangled
   * byte. An entry gone from the stream meanwhile cannot be checked, and counts as bad.
   */
  async #badBytes(suspects: readonly ReadEntry[], lane: number): Promise<Set<string>> {
    const bad = new Set<string>();
    if (suspects.length === 0) return bad;
    const pipeline = this.#c.ctx.client.pipeline();
    const stream = this.#c.ctx.lanes.streams[lane]!;
    for (const [entryId] of suspects) pipeline.xrangeBuffer(stream, entryId, entryId);
    const replies = (await pipeline.exec()) ?? [];
    suspects.forEach(([entryId], i) => {
      const [err, reply] = replies[i] ?? [new Error("no reply")];
      if (err) throw err;
      const raw = (reply as [Uint8Array, Uint8Array[]][])[0]?.[1];
      if (raw === undefined || !validUtf8(raw)) bad.add(entryId);
    });
    return bad;
  }

  /**
   * Admits decoded entries, in order. An entry that decoded, and whose signature checked out
   * when keys are set, has a job id to trust: its record is marked dead with it.
   */
  #admitDecoded(
    batch: readonly ReadEntry[],
    counts: readonly number[] | undefined,
    verdicts: Verdict[],
    trusted: boolean,
    lane: number,
  ): Job[] {
    const admitted: Job[] = [];
    batch.forEach(([entryId, fields], i) => {
      const verdict = verdicts[i]!;
      const deliveries = counts === undefined ? 1 : counts[i]!;
      if (isFailure(verdict)) {
        const id = verdict.reason === "too-large" && trusted ? jobIdOf(fields) : undefined;
        this.#bury(lane, entryId, deliveries, verdict.error, verdict.reason, id);
        return;
      }
      let data: unknown;
      try {
        data = decodeData(verdict.data);
      } catch (err) {
        this.#bury(lane, entryId, deliveries, dataError(err), "bad-json", verdict.id, verdict);
        return;
      }
      admitted.push(this.#hold(lane, entryId, deliveries, verdict, data));
    });
    return admitted;
  }

  /** Turns a decoded entry into a held job, ready to hand out. */
  #hold(lane: number, entryId: string, deliveries: number, decoded: WireJob, data: unknown): Job {
    let policy = NO_POLICY;
    if (decoded.retry !== undefined || decoded.timeout !== undefined) {
      const own: { retry?: RetryOptions; timeout?: number } = {};
      if (decoded.retry !== undefined) own.retry = JSON.parse(decoded.retry);
      if (decoded.timeout !== undefined) own.timeout = decoded.timeout;
      policy = own;
    }
    const { held, buffer, ctx } = this.#c;
    const job = new Job(
      internal,
      this.#lessor,
      decoded,
      entryId,
      deliveries,
      data,
      policy,
      lane,
      ctx.lanes.labels[lane],
    );
    held.set(job.key, job);
    // Handed out highest priority first (lane 0), in read order within a priority.
    if ((buffer.at(-1)?.lane ?? 0) <= lane) buffer.push(job);
    else buffer.splice(buffer.findIndex((other) => other.lane > lane), 0, job);
    this.#cancels.admitted(job);
    return job;
  }

  /**
   * Dead-letters an entry that cannot run, and acks it. The log line names the entry, the
   * reason and the error, never the payload. With a trusted job id, the job's own record is
   * marked dead (a producer awaiting its result learns of it); otherwise a placeholder is.
   */
  #bury(
    lane: number,
    entryId: string,
    deliveries: number,
    error: string,
    reason: DeadReason,
    id?: string,
    decoded?: WireJob,
  ): void {
    const { window, ctx, name, views } = this.#c;
    window.burying++;
    const { logger, client } = ctx;
    const text = trimText(error);
    logger.warn(
      `sluice: queue ${ctx.name}: entry ${entryId} went to the dead letters (${reason}): ${text}`,
      id === undefined ? {} : { job_id: id },
    );
    // With no trusted id, the op names no record: it touches none and tells no one. A decoded
    // entry (bad JSON data) names its task, and its webhook if it has one.
    const job = decoded === undefined
      ? { entryId, deliveries, id }
      : { entryId, deliveries, id, task: decoded.task, webhook: decoded.webhook };
    client.sluiceSettle(settleArgs(views[lane]!, name, [{ op: "dead", job, error: text, reason }]))
      .catch((err) =>
        logger.error(`sluice: queue ${ctx.name}: could not dead-letter ${entryId}`, err)
      )
      .finally(() => {
        window.burying--;
        this.#c.wake();
      });
  }
}

/** The id field of an entry that decoded (so the id is valid). */
function jobIdOf(fields: string[]): string | undefined {
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === "id") return fields[i + 1];
  return undefined;
}
