/**
 * Pause on the consumer side: whether jobs may start now. The queue's paused flag is read once
 * the pause channel is subscribed, and again after every reconnect of the subscriber; between
 * those, the channel's messages keep the state, with no Redis command per read or per job.
 *
 * While the channel cannot be heard (not yet confirmed, or its connection dropped), what was
 * heard is not trusted: a timer notices within TICK_MS, and from then on jobs may start only
 * within TRUST_MS of sending a look at the flag that found the queue running; the timer looks
 * every TICK_MS meanwhile. So a pause is honoured within TICK_MS + TRUST_MS = 1 s of its
 * script running, whether its message arrives or not.
 *
 * @module
 */
import type { QueueContext } from "./queue.ts";

/** How often a consumer checks (locally) that it still hears the pause channel. */
const TICK_MS = 250;
/**
 * How long after a look at the flag that found the queue running a consumer that does not hear
 * the pause channel may still start jobs. TICK_MS + TRUST_MS is the 1 s promise.
 */
const TRUST_MS = 750;
/** Looks in a row a message may cross before the message's word is taken. */
const LOOK_TRIES = 5;

/** What the gate needs of its consumer. */
export interface Gated {
  readonly ctx: QueueContext;
  /** The gate opened or closed: a blocking read is cut short, and waiting loops look again. */
  gateChanged(): void;
}

/** One consumer's pause state. */
export class PauseGate {
  /**
   * True while no job may start or be read: the queue is paused, or not known to be running.
   * A plain field: the hot path reads it once per job.
   */
  blocked = true;
  #c: Gated;
  /** The flag as last heard or looked at; undefined before the first look. */
  #paused: boolean | undefined;
  /** The subscriber epoch a look was made in while the channel was heard (-1: none). */
  #trustedEpoch = -1;
  /** When (local ms) the last look that came back was sent. */
  #lookedAt = -Infinity;
  /** Messages heard so far: a look crossed by one is done again. */
  #messages = 0;
  #looking: Promise<void> | undefined;
  #failures = 0;
  #tick: ReturnType<typeof setInterval>;
  #stopped = false;

  constructor(c: Gated) {
    this.#c = c;
    this.#tick = setInterval(() => this.#check(), TICK_MS);
  }

  /** A message on the pause channel: "1" paused, "0" resumed, null after a reconnect. */
  heard(message: string | null): void {
    if (message === null) {
      // Messages may have been missed while the subscriber was away.
      this.#trustedEpoch = -1;
      this.#update();
      void this.look();
      return;
    }
    if (message !== "1" && message !== "0") return;
    this.#messages++;
    this.#paused = message === "1";
    this.#update();
  }

  /** Reads the flag (one look at a time); never throws. */
  look(): Promise<void> {
    this.#looking ??= this.#look().finally(() => this.#looking = undefined);
    return this.#looking;
  }

  /** Stops the timer. */
  stop(): void {
    this.#stopped = true;
    clearInterval(this.#tick);
  }

  /** True if the channel has been heard without a break since a look at the flag. */
  #trusted(): boolean {
    const { pubsub, keys } = this.#c.ctx;
    return this.#trustedEpoch === pubsub.epoch && pubsub.listening(keys.pause);
  }

  #check(): void {
    if (this.#trusted()) return;
    this.#update();
    void this.look();
  }

  async #look(): Promise<void> {
    const { pubsub, keys, client, logger, name } = this.#c.ctx;
    for (let i = 0; i < LOOK_TRIES && !this.#stopped; i++) {
      const messages = this.#messages;
      const epoch = pubsub.epoch;
      const listening = pubsub.listening(keys.pause);
      const sentAt = Date.now();
      let flag: string | null;
      try {
        flag = await client.get(keys.paused);
        this.#failures = 0;
      } catch (err) {
        this.#failures++;
        if (this.#failures === 1 || this.#failures % 20 === 0) {
          logger.error(
            `sluice: queue ${name}: could not read the paused flag (${this.#failures} in a row); no job starts until it is read`,
            err,
          );
        }
        this.#update();
        return;
      }
      // A message came while the look was under way, and either may be the newer: again.
      if (this.#messages !== messages) continue;
      this.#lookedAt = sentAt;
      if (listening && pubsub.epoch === epoch) this.#trustedEpoch = epoch;
      this.#paused = flag !== null;
      this.#update();
      return;
    }
  }

  #update(): void {
    const blocked = this.#paused !== false ||
      (!this.#trusted() && Date.now() >= this.#lookedAt + TRUST_MS);
    if (blocked === this.blocked) return;
    this.blocked = blocked;
    this.#c.gateChanged();
  }
}
