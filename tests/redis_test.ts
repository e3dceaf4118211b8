import assert from "node:assert/strict";
import { checkRedisConfig, describeRedis } from "../src/redis/config.ts";
import { Queue } from "../src/queue.ts";
import { task } from "../src/task.ts";
import { Worker } from "../src/worker.ts";

function refuses(redis: unknown, message: RegExp): void {
  assert.throws(
    () => new Queue("q", { redis: redis as string }),
    (err: unknown) => {
      assert.ok(err instanceof TypeError, String(err));
      assert.match(err.message, message);
      return true;
    },
  );
}

Deno.test("new Queue() checks a redis.cluster config: nodes, its options, and nothing else beside", () => {
  // Taken: URLs or { host, port }, with ioredis Cluster options.
  for (
    const ok of [
      { cluster: ["redis://127.0.0.1:7000"] },
      { cluster: [{ host: "10.0.0.1", port: 7000 }, { port: 7001 }] },
      { cluster: ["redis://a:7000"], options: { redisOptions: { password: "x" } } },
      { cluster: ["redis://a:7000"], options: { slotsRefreshInterval: 1_000 } },
    ]
  ) checkRedisConfig("Cannot create queue", ok);
  refuses(
    { cluster: [] },
    /^Cannot create queue: redis\.cluster must be a non-empty array .*, got \[\]$/,
  );
  refuses(
    { cluster: "redis://a:7000" },
    /redis\.cluster must be a non-empty array .*, got "redis:\/\/a:7000"$/,
  );
  refuses(
    { cluster: ["a:7000"] },
    /^Cannot create queue: redis\.cluster\[0\] must be a redis:\/\/ .*got "a:7000"$/,
  );
  refuses(
    { cluster: ["/run/redis.sock"] },
    /redis\.cluster\[0\] must be a redis:\/\/ URL or \{ host, port \}/,
  );
  refuses(
    { cluster: [{ host: "a", port: 0 }] },
    /redis\.cluster\[0\] must be .*port 1 to 65535, got/,
  );
  refuses(
    { cluster: ["redis://a:7000"], password: "x" },
    /^Cannot create queue: redis\.cluster goes with no other option but redis\.options, got "password" \(per-node settings such as password go in options\.redisOptions\)$/,
  );
  refuses(
    { cluster: ["redis://a:7000"], options: { scaleReads: "slave" } },
    /^Cannot create queue: redis\.options\.scaleReads is not supported: /,
  );
  refuses(
    { cluster: ["redis://a:7000"], options: { redisOptions: { pasword: "x" } } },
    /redis\.options\.redisOptions has an unknown option "pasword" \(did you mean "password"\?\)$/,
  );
  refuses(
    { cluster: ["redis://a:7000"], options: { keyPrefix: "app:" } },
    /redis\.keyPrefix is not supported/,
  );
  refuses(
    ["redis://127.0.0.1:7000", "redis://127.0.0.1:7001"],
    /^Cannot create queue: redis must be a URL or ioredis options, got an array \(for Redis Cluster, give redis: \{ cluster: \[\.\.\.node URLs\] \}\)$/,
  );
  assert.equal(
    describeRedis({ cluster: ["redis://10.0.0.1:7000", "redis://10.0.0.2:7000"] }),
    "Redis Cluster (10.0.0.1:7000, +1)",
  );
});

Deno.test("new Queue() refuses an unknown redis option, suggesting the closest known one", () => {
  refuses(
    { hots: "10.0.0.5" },
    /^Cannot create queue: redis has an unknown option "hots" \(did you mean "host"\?\)$/,
  );
  refuses({ host: "h", prot: 6380 }, /unknown option "prot" \(did you mean "port"\?\)$/);
  refuses({ sentinal: [] }, /unknown option "sentinal" \(did you mean "sentinels"\?\)$/);
  refuses(
    { conectTimeout: 5 },
    /unknown option "conectTimeout" \(did you mean "connectTimeout"\?\)$/,
  );
});

Deno.test("new Queue() lists the known redis options when nothing is close", () => {
  refuses(
    { uri: "redis://x" },
    /^Cannot create queue: redis has an unknown option "uri" \(known: host, port, path, .*, sentinels, name, .*maxRetriesPerRequest, .*\)$/,
  );
});

Deno.test("new Queue() refuses redis.keyPrefix and points at the prefix option", () => {
  refuses(
    { keyPrefix: "app:" },
    /^Cannot create queue: redis\.keyPrefix is not supported: .*prefix option$/,
  );
});

Deno.test("new Queue() refuses a redis string that is not a redis URL or a socket path", () => {
  for (
    const url of ["localhost:6379", "http://127.0.0.1:6379", "redis//127.0.0.1", "", "6379"]
  ) {
    refuses(
      url,
      /^Cannot create queue: redis must be a redis:\/\/ or rediss:\/\/ URL, or a socket path, got /,
    );
  }
  refuses("unix:/run/redis.sock", /for a Unix socket give its path, e.g\. "\/run\/redis\.sock"$/);
});

Deno.test("new Queue() does not show the password of a bad redis URL", () => {
  assert.throws(
    () => new Queue("q", { redis: "redis//user:s3cret@host" }),
    (err: unknown) => !String(err).includes("s3cret"),
  );
  assert.throws(
    () => new Queue("q", { redis: "http://user:s3cret@host" }),
    (err: unknown) => !String(err).includes("s3cret") && String(err).includes("user:***@"),
  );
});

Deno.test("new Queue() takes redis URLs, socket paths and ioredis options", () => {
  for (
    const redis of [
      "redis://127.0.0.1:6379",
      "rediss://user:pw@cache.internal:6380/2",
      "redis://[::1]:6379",
      "/run/redis.sock",
      { host: "127.0.0.1", port: 6379, db: 1, password: "pw", connectTimeout: 5_000 },
      { path: "/run/redis.sock" },
      { sentinels: [{ host: "s1", port: 26379 }], name: "main", sentinelPassword: "x" },
      { tls: {}, maxRetriesPerRequest: null, enableAutoPipelining: true },
      {},
    ]
  ) {
    new Queue("q", { redis });
    checkRedisConfig("Cannot test", redis);
  }
});

Deno.test("new Worker() refuses an unknown redis option too", () => {
  const t = task("t", () => {});
  assert.throws(
    () => new Worker("q", [t], { redis: { hots: "x" }, handleSignals: false }),
    /^TypeError: Cannot create queue: redis has an unknown option "hots"/,
  );
});

Deno.test("describeRedis() names where Redis is, never the password", () => {
  assert.equal(describeRedis("redis://:secret@cache.internal:6380/2"), "cache.internal:6380");
  assert.equal(describeRedis("rediss://cache.internal"), "cache.internal:6379");
  assert.equal(describeRedis("redis://[::1]:7000"), "[::1]:7000");
  assert.equal(describeRedis("/run/redis.sock?db=2"), "/run/redis.sock");
  assert.equal(describeRedis({}), "localhost:6379");
  assert.equal(describeRedis({ host: "10.0.0.5", port: 6380 }), "10.0.0.5:6380");
  assert.equal(describeRedis({ host: "::1" }), "[::1]:6379");
  assert.equal(describeRedis({ path: "/run/redis.sock" }), "/run/redis.sock");
  assert.equal(
    describeRedis({ sentinels: [{ host: "s1", port: 26379 }], name: "main" }),
    'Sentinel master "main"',
  );
});

Deno.test("new Queue() says where a URL goes when given as redis.url", () => {
  refuses(
    { url: "redis://x" },
    /^Cannot create queue: redis\.url is not an ioredis option: give the URL as redis itself/,
  );
});
