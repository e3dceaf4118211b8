/**
 * sluice: a Deno-first task runtime on Redis Streams.
 *
 * Producers enqueue typed jobs; workers read them as a web `ReadableStream` into a bounded
 * pool, renew their leases, reclaim what crashed peers left behind, and shut down gracefully.
 *
 * @example A task, a producer and a worker
 * ```ts
 * import { Queue, task, Worker } from "@sluice/sluice";
 * import { startRedis } from "@sluice/sluice/testing";
 *
 * await using redis = await startRedis();
 * const add = task("add", (data: { a: number; b: number }) => data.a + data.b);
 * await using queue = new Queue("math", { redis: redis.url });
 * await queue.enqueue(add, { a: 2, b: 3 });
 *
 * const worker = new Worker("math", [add], { redis: redis.url, handleSignals: false });
 * worker.addEventListener("completed", (e) => {
 *   console.log(e.detail.result); // 5
 *   worker.stop();
 * });
 * await worker.run();
 * ```
 *
 * @module
 */
export * from "./src/errors.ts";
export { task } from "./src/task.ts";
export type {
  AnyTask,
  DataOf,
  Handler,
  JobInfo,
  ResultOf,
  StandardResult,
  StandardSchemaV1,
  Task,
  TaskContext,
  TaskOptions,
} from "./src/task.ts";
export { Queue } from "./src/queue.ts";
export { LIST_STATES } from "./src/admin.ts";
export type { JobsOptions, JobsPage, JobSummary, ListState } from "./src/admin.ts";
export { listQueues } from "./src/queues.ts";
export type { ListQueuesOptions, QueueSummary } from "./src/queues.ts";
export type { JobDetails, TimelineStep } from "./src/inspect.ts";
export type {
  BulkOptions,
  CleanOptions,
  CleanState,
  DrainCounts,
  ObliterateOptions,
  RetryFilter,
} from "./src/bulk.ts";
export { Schedules } from "./src/schedule.ts";
export type {
  CatchUp,
  ScheduleInfo,
  ScheduleOptions,
  Spec,
  UpsertScheduleOptions,
} from "./src/schedule.ts";
export type { QueueOptions } from "./src/queue.ts";
export type { RateLimit } from "./src/limits.ts";
export { GroupProducer, Groups } from "./src/groups.ts";
export type { GroupInfo, GroupOptions, GroupSettings } from "./src/groups.ts";
export type { Durability } from "./src/durable.ts";
export type { EnqueueItem, EnqueueManyOptions, EnqueueOptions } from "./src/enqueue.ts";
export type { QueueStats, WorkerInfo } from "./src/stats.ts";
export type { EventsOptions, QueueEvent, QueueEventType } from "./src/events.ts";
export type { WebhookOptions } from "./src/webhook.ts";
export { JobHandle } from "./src/handle.ts";
export type { CancelOutcome, JobState, JobStatus } from "./src/handle.ts";
export { DeadLetters } from "./src/dead.ts";
export type { DeadLetter, DeadSelection } from "./src/dead.ts";
export type { ConsumeOptions } from "./src/consume.ts";
export { Job } from "./src/job.ts";
export type { DeadReason, JobPolicy } from "./src/job.ts";
export { backoffDelay } from "./src/backoff.ts";
export type { Backoff, RetryOptions } from "./src/backoff.ts";
export { Pool, pool } from "./src/pool.ts";
export type { PoolOptions } from "./src/pool.ts";
export { Worker } from "./src/worker.ts";
export type {
  Middleware,
  MiddlewareContext,
  WorkerEventDetail,
  WorkerEventName,
  WorkerOptions,
} from "./src/worker.ts";
export type { Histogram, JobCounts, MetricsOptions, WorkerMetrics } from "./src/metrics.ts";
export type {
  RedisClusterConfig,
  RedisConfig,
  RedisConnectionOptions,
} from "./src/redis/connect.ts";
export type { Keys } from "./src/keys.ts";
export type { Logger, LogLevel, LogRecord } from "./src/_log.ts";
export { WIRE_VERSION } from "./src/codec.ts";
export type { SigningKey } from "./src/sign.ts";
