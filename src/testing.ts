/**
 * Test helpers: a throwaway `redis-server` on a free loopback port, a Redis Cluster, or a
 * Sentinel setup, for your own tests and for sluice's. Needs `redis-server` on PATH (and
 * `redis-cli` for a Cluster) and `--allow-run --allow-net --allow-write --allow-read` (or
 * `-A`).
 *
 * @example Test a task against a real Redis
 * ```ts
 * import { startRedis } from "@sluice/sluice/testing";
 * await using redis = await startRedis();
 * console.log(redis.url.startsWith("redis://127.0.0.1:")); // true
 * ```
 *
 * @module
 */
export * from "./testing/redis.ts";
export * from "./testing/cluster.ts";
export * from "./testing/sentinel.ts";
