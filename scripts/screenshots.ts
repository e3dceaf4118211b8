/**
 * Makes the README's dashboard screenshots (docs/dashboard-*.png): runs a real workload on a
 * throwaway redis-server for a few minutes (6 by default; the first argument), so that the
 * sparklines have history, then screenshots the pages in Debian's Chromium.
 *
 * ```sh
 * deno run -A scripts/screenshots.ts 6
 * ```
 *
 * @module
 */
import puppeteer from "puppeteer-core";
import { Queue, task, Worker } from "../mod.ts";
import { serveDashboard } from "../src/dashboard/main.ts";
import { startRedis } from "../src/testing.ts";
const minutes = Number(Deno.args[0] ?? "6");
await using redis = await startRedis();
await using mail = new Queue("mail", { redis: redis.url });
await using images = new Queue("images", { redis: redis.url, priorities: ["bulk", "urgent"] });
const send = task("welcome", async (d: { to: string }) => {
  await new Promise((r) => setTimeout(r, 20 + Math.random() * 40));
  if (Math.random() < 0.04) throw new Error(`SMTP 550: mailbox ${d.to} unavailable`);
  return { messageId: crypto.randomUUID() };
}, { retry: { attempts: 2, backoff: { type: "fixed", delay: 500 } } });
const resize = task("resize", async (d: { width: number }) => {
  await new Promise((r) => setTimeout(r, 30));
  return { width: d.width };
});
const w1 = new Worker("mail", [send], { redis: redis.url, handleSignals: false, concurrency: 8 });
const w2 = new Worker("images", [resize], {
  redis: redis.url,
  handleSignals: false,
  concurrency: 4,
  priorities: ["bulk", "urgent"],
});
const runs = [w1.run(), w2.run()];
const end = Date.now() + minutes * 60_000;
let n = 0;
while (Date.now() < end) {
  await mail.enqueueMany(
    send,
    Array.from(
      { length: 20 + Math.floor(Math.random() * 30) },
      () => ({ data: { to: `user${n++}@example.com` } }),
    ),
  );
  await images.enqueue(resize, { width: 100 + n % 500 }, { priority: n % 5 ? "bulk" : "urgent" });
  await new Promise((r) => setTimeout(r, 1_000));
}
// A backlog and some delayed jobs for the page.
await mail.enqueueMany(
  send,
  Array.from({ length: 400 }, () => ({ data: { to: `late${n++}@example.com` } })),
);
await mail.enqueueMany(
  send,
  Array.from({ length: 25 }, () => ({ data: { to: `later${n++}@example.com` }, delay: 3_600_000 })),
);
const stop = new AbortController();
const server = await serveDashboard({ redis: redis.url, port: 0, signal: stop.signal });
const browser = await puppeteer.launch({
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--no-sandbox", "--disable-gpu"],
});
const page = await browser.newPage();
await page.setViewport({ width: 1100, height: 640 });
await page.goto(server.url);
await page.screenshot({ path: "docs/dashboard-queues.png" });
await page.goto(new URL("queues/mail", server.url).href);
await page.screenshot({ path: "docs/dashboard-queue.png" });
const dead = await mail.jobs("dead", { limit: 1 });
await page.goto(
  new URL(`queues/mail/job?id=${encodeURIComponent(dead.jobs[0]!.id)}`, server.url).href,
);
await page.screenshot({ path: "docs/dashboard-job.png", fullPage: true });
await page.goto(new URL("queues/mail/jobs/dead", server.url).href);
await page.screenshot({ path: "docs/dashboard-dead.png" });
await browser.close();
stop.abort();
await server.finished;
await w1.stop();
await w2.stop();
await Promise.all(runs);
// deno-lint-ignore no-console
console.log(`done: ${n} jobs enqueued`);
