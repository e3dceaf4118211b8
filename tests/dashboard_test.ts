/**
 * The web dashboard: its pages and security over real HTTP (token, login cookie, CSRF,
 * read-only, escaping), and in a real headless Chromium (Debian's, driven by puppeteer-core):
 * find a job by id, retry a dead letter by clicking, and see it complete over SSE without a
 * reload. It saves screenshots of the pages it visits.
 */
import assert from "node:assert/strict";
import puppeteer from "puppeteer-core";
import { Queue, task, Worker } from "../mod.ts";
import { dashboard, serveDashboard } from "../src/dashboard/main.ts";
import { startRedis } from "../src/testing.ts";
import { hourSeries } from "../src/dashboard/_live.ts";
import { inspect } from "./_helpers.ts";

const CHROMIUM = "/usr/bin/chromium";

/** A dashboard served on a free port until disposed. */
async function served(options: Parameters<typeof serveDashboard>[0]) {
  const stop = new AbortController();
  const server = await serveDashboard({ ...options, port: 0, signal: stop.signal });
  return {
    url: server.url,
    async [Symbol.asyncDispose]() {
      stop.abort();
      await server.finished;
    },
  };
}

/** Fails `attempts` times, then returns "ok": a job that dies on its only attempt. */
function flaky() {
  let calls = 0;
  return task("flaky", () => {
    if (++calls === 1) throw new Error("first call fails");
    return "ok";
  }, { retry: { attempts: 1 } });
}

Deno.test("dashboard over HTTP: token, login cookie, CSRF, read-only and escaping", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("mail", { redis: redis.url });
  await queue.enqueue("welcome", { html: "<script>alert(1)</script>" }, { id: "xss" });
  await using app = await served({ redis: redis.url, token: "s3cret-token" });
  const get = (path: string, headers: HeadersInit = {}) =>
    fetch(new URL(path, app.url), { headers, redirect: "manual" });

  // No token: 401, the login page for a browser, text for a script.
  const browser = await get("queues/mail", { accept: "text/html" });
  assert.equal(browser.status, 401);
  assert.match(await browser.text(), /Sign in/);
  const script = await get("queues/mail");
  assert.equal(script.status, 401);
  assert.match(await script.text(), /Authorization: Bearer/);
  const wrong = await get("queues/mail", { authorization: "Bearer nope" });
  assert.equal(wrong.status, 401);
  await wrong.body?.cancel();

  // The bearer token works; the payload renders as text.
  const auth = { authorization: "Bearer s3cret-token" };
  const job = await get("queues/mail/job?id=xss", auth);
  assert.equal(job.status, 200);
  const body = await job.text();
  assert.ok(!body.includes("<script>alert(1)</script>"), "the payload is not markup");
  assert.match(body, /&lt;script&gt;alert\(1\)&lt;\/script&gt;/);
  assert.match(job.headers.get("content-security-policy") ?? "", /script-src 'nonce-/);
  const csrf = /name="csrf" content="([0-9a-f]+)"/.exec(body)![1]!;

  // The login form sets an HttpOnly, SameSite=Strict cookie that works in place of the token.
  const login = await fetch(new URL("login", app.url), {
    method: "POST",
    body: new URLSearchParams({ token: "s3cret-token" }),
    redirect: "manual",
  });
  assert.equal(login.status, 303);
  const setCookie = login.headers.get("set-cookie") ?? "";
  assert.match(setCookie, /HttpOnly/);
  assert.match(setCookie, /SameSite=Strict/);
  assert.ok(!setCookie.includes("s3cret-token"), "the cookie is not the token");
  const cookie = setCookie.split(";")[0]!;
  const viaCookie = await get("queues/mail/jobs/waiting", { cookie });
  assert.equal(viaCookie.status, 200);
  assert.match(await viaCookie.text(), /xss/);
  const badLogin = await fetch(new URL("login", app.url), {
    method: "POST",
    body: new URLSearchParams({ token: "guess" }),
  });
  assert.equal(badLogin.status, 401);
  await badLogin.body?.cancel();

  // A browser's actions (signed in with the cookie) carry the CSRF token, from this origin
  // only; a script's bearer token needs none (see the next test).
  const post = (path: string, headers: HeadersInit) =>
    fetch(new URL(path, app.url), { method: "POST", headers: { cookie, ...headers } });
  const noCsrf = await post("queues/mail/pause", {});
  assert.equal(noCsrf.status, 403);
  await noCsrf.body?.cancel();
  const foreign = await post("queues/mail/pause", {
    "x-csrf-token": csrf,
    origin: "https://evil.example",
  });
  assert.equal(foreign.status, 403);
  await foreign.body?.cancel();
  assert.equal(await queue.isPaused(), false);
  const ok = await post("queues/mail/pause", { "x-csrf-token": csrf });
  assert.equal(ok.status, 200);
  assert.equal(await ok.text(), "Queue mail paused.");
  assert.equal(await queue.isPaused(), true);

  // Every page answers.
  for (
    const path of [
      "",
      "queues/mail",
      "queues/mail/workers",
      "queues/mail/schedules",
      "queues/mail/groups",
      "queues/mail/jobs/dead",
      "queues/mail/find?id=xs",
    ]
  ) {
    const res = await get(path, auth);
    assert.equal(res.status, 200, path);
    await res.body?.cancel();
  }
});

Deno.test("dashboard: read-only mode shows no actions and refuses POSTs; options are checked", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.enqueue("t", 1, { id: "j1" });
  await using app = await served({ redis: redis.url, readOnly: true });
  const page = await (await fetch(new URL("queues/q/job?id=j1", app.url))).text();
  assert.ok(!page.includes("<button data-post"), "no action buttons");
  assert.ok(!page.includes(">Cancel</button>"));
  const csrf = /name="csrf" content="([0-9a-f]+)"/.exec(page)![1]!;
  const res = await fetch(new URL("queues/q/job/cancel?id=j1", app.url), {
    method: "POST",
    headers: { "x-csrf-token": csrf },
  });
  assert.equal(res.status, 403);
  await res.body?.cancel();
  assert.equal((await queue.job("j1").info())?.state, "waiting");
  assert.throws(() => dashboard({ basePath: "admin" }), /basePath must be "" or a path/);
  assert.throws(() => dashboard({ token: "" }), /token must be a non-empty string/);
  assert.throws(() => dashboard({ readOnly: "yes" as unknown as boolean }), /readOnly must be/);
  await assert.rejects(serveDashboard({ port: 70_000 }), /port must be 0 to 65535/);
});

Deno.test("dashboard in Chromium: find a job by id, retry a dead letter by clicking, see it complete over SSE", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("mail", { redis: redis.url });
  await queue.enqueueMany("welcome", [1, 2, 3].map((n) => ({ data: { n }, id: `w-${n}` })));
  await queue.enqueue("flaky", { html: "<script>alert(1)</script>" }, { id: "flaky-1" });
  await using worker = new Worker("mail", [flaky(), task("welcome", () => "sent")], {
    redis: redis.url,
    handleSignals: false,
  });
  const dead = Promise.withResolvers<void>();
  worker.addEventListener("dead", () => dead.resolve());
  const run = worker.run();
  await dead.promise;
  await using app = await served({ redis: redis.url, token: "t0ken-for-the-browser" });

  // Screenshots go to a temporary directory (scripts/screenshots.ts makes the README's).
  const shots = await Deno.makeTempDir({ prefix: "sluice-dashboard-" });
  const browser = await puppeteer.launch({
    executablePath: CHROMIUM,
    headless: true,
    args: ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"],
  });
  try {
    const page = await browser.newPage();
    await page.setViewport({ width: 1100, height: 700 });
    const alerts: string[] = [];
    page.on("dialog", async (dialog) => {
      if (dialog.type() === "alert") alerts.push(dialog.message());
      await dialog.accept();
    });
    // Without the token: the login page, then in.
    const first = await page.goto(new URL("queues/mail", app.url).href);
    assert.equal(first?.status(), 401);
    await page.type("input[name=token]", "t0ken-for-the-browser");
    await Promise.all([page.waitForNavigation(), page.click("form button")]);
    await page.goto(new URL("queues/mail", app.url).href);
    assert.match(await page.$eval("h1", (el) => el.textContent ?? ""), /Queue mail/);
    await page.screenshot({ path: `${shots}/queue.png` });

    // Find by id.
    await page.type("input[name=id]", "flaky-1");
    await Promise.all([page.waitForNavigation(), page.click("form[action$='/find'] button")]);
    assert.match(page.url(), /\/queues\/mail\/job\?id=flaky-1$/);
    assert.equal(await page.$eval("#job-state", (el) => el.textContent), "dead");
    // The payload shows as text, and no script of it ran.
    assert.match(
      await page.$eval("#job-data", (el) => el.textContent ?? ""),
      /<script>alert\(1\)<\/script>/,
    );
    assert.deepEqual(alerts, []);
    await page.screenshot({ path: `${shots}/job.png`, fullPage: true });

    // Retry by clicking; the state turns completed over SSE, with no reload.
    const marker = await page.evaluate(() =>
      (globalThis as unknown as { marker: number }).marker = Math.random()
    );
    await page.click("button[data-post*='/job/retry']");
    await page.waitForFunction(
      'document.querySelector("#job-state")?.textContent === "completed"',
      { timeout: 20_000 },
    );
    assert.equal(
      await page.evaluate(() => (globalThis as unknown as { marker: number }).marker),
      marker,
      "the same page: no reload",
    );
    assert.match(await page.$eval("#job-result", (el) => el.textContent ?? ""), /"ok"/);
    assert.deepEqual(alerts, []);
  } finally {
    await browser.close();
    await worker.stop();
    await run;
  }
  assert.equal((await queue.job("flaky-1").info())?.state, "completed");
  for (const name of ["queue.png", "job.png"]) {
    const png = await Deno.readFile(`${shots}/${name}`);
    assert.deepEqual([...png.subarray(1, 4)], [80, 78, 71], `${name} is a PNG`);
    assert.ok(png.length > 5_000, `${name} has content`);
  }
  await Deno.remove(shots, { recursive: true });
});

Deno.test("dashboard actions over HTTP: schedules, groups and dead letters", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("ops", { redis: redis.url });
  await queue.schedules.upsert("nightly", { every: 3_600_000, task: "report", data: { a: 1 } });
  await queue.groups.set("acme", { concurrency: 1 });
  await queue.enqueue("t", 1, { group: "acme", id: "g1" });
  await using app = await served({ redis: redis.url });
  const home = await (await fetch(new URL("queues/ops", app.url))).text();
  assert.match(home, /Rate over the last 5 minutes: [\d.]+ completed and [\d.]+ failed per minute/);
  const csrf = /name="csrf" content="([0-9a-f]+)"/.exec(home)![1]!;
  const post = async (path: string) => {
    const res = await fetch(new URL(path, app.url), {
      method: "POST",
      headers: { "x-csrf-token": csrf },
    });
    return [res.status, await res.text()] as const;
  };

  assert.match(
    (await post("queues/ops/schedule/run?id=nightly"))[1],
    /Schedule nightly ran: job nightly@trigger:/,
  );
  assert.equal((await queue.jobs("waiting", { task: "report" })).jobs.length, 1);
  assert.deepEqual(await post("queues/ops/schedule/pause?id=nightly"), [
    200,
    "Schedule nightly paused.",
  ]);
  assert.equal((await queue.schedules.list())[0]?.paused, true);
  assert.equal((await post("queues/ops/schedule/resume?id=nope"))[0], 404);
  const schedules = await (await fetch(new URL("queues/ops/schedules", app.url))).text();
  assert.match(schedules, /nightly/);
  assert.match(schedules, />Resume</);

  assert.deepEqual(await post("queues/ops/group/pause?group=acme"), [200, "Group acme paused."]);
  assert.equal((await queue.groups.list()).find((g) => g.group === "acme")?.paused, true);
  const groups = await (await fetch(new URL("queues/ops/groups", app.url))).text();
  assert.match(groups, /acme/);

  // Two dead letters: delete one, retry the rest with a filter.
  const bad = task("bad", () => {
    throw new Error("no");
  }, { retry: { attempts: 1 } });
  await using dl = new Queue("dl", { redis: redis.url });
  await dl.enqueueMany("bad", [{ data: 1, id: "b1" }, { data: 2, id: "b2" }]);
  await using worker = new Worker("dl", [bad], { redis: redis.url, handleSignals: false });
  let dead = 0;
  const both = Promise.withResolvers<void>();
  worker.addEventListener("dead", () => ++dead === 2 && both.resolve());
  const run = worker.run();
  await both.promise;
  await worker.stop();
  await run;
  const letters = await dl.jobs("dead");
  const b1 = letters.jobs.find((j) => j.id === "b1")!;
  const page = await (await fetch(new URL("queues/dl/jobs/dead", app.url))).text();
  assert.match(page, /Retry all shown by the filter/);
  assert.deepEqual(await post(`queues/dl/dead/delete?deadId=${b1.deadId}`), [
    200,
    "Dead letter deleted.",
  ]);
  assert.deepEqual(await post("queues/dl/dead/retry?task=other"), [
    200,
    "0 dead letter(s) replayed.",
  ]);
  assert.deepEqual(await post("queues/dl/dead/retry?task=bad"), [
    200,
    "1 dead letter(s) replayed.",
  ]);
  assert.equal(await dl.dead.count(), 0);
  assert.equal((await dl.job("b2").info())?.state, "waiting");
  assert.equal((await post("queues/dl/job/retry?id=b2"))[0], 409, "not a dead letter");
  assert.deepEqual(await post("queues/dl/job/cancel?id=b2"), [200, "Job b2 cancelled."]);
});

Deno.test("dashboard: only this machine's names without a token; bearer scripts need no CSRF token; ids never name another route", async () => {
  await using redis = await startRedis();
  await using queue = new Queue("q", { redis: redis.url });
  await queue.schedules.upsert("..", { every: 3_600_000, task: "t", data: null });
  await using open = dashboard({ redis: redis.url });
  const rebound = await open(new Request("http://attacker.example:8080/queues/q"));
  assert.equal(rebound.status, 403);
  assert.match(await rebound.text(), /Host attacker.example is not this machine/);
  const local = await open(new Request("http://localhost:8080/queues/q/schedules"));
  assert.equal(local.status, 200);
  const page = await local.text();
  const csrf = /name="csrf" content="([0-9a-f]+)"/.exec(page)![1]!;
  // The pause button of schedule ".." pauses that schedule, not the queue.
  const button = /data-post="([^"]*schedule\/pause[^"]*)"/.exec(page)![1]!.replaceAll("&amp;", "&");
  assert.ok(button.includes("id=.."), button);
  const paused = await open(
    new Request(new URL(button, "http://localhost:8080"), {
      method: "POST",
      headers: { "x-csrf-token": csrf },
    }),
  );
  assert.equal(await paused.text(), "Schedule .. paused.");
  assert.equal(await queue.isPaused(), false);
  assert.equal((await queue.schedules.list())[0]?.paused, true);
  await assert.rejects(serveDashboard({ hostname: "0.0.0.0", port: 0 }), /needs a token/);
  const badEscape = await open(new Request("http://localhost/queues/%E0"));
  assert.equal(badEscape.status, 400);
  await badEscape.body?.cancel();
  const dots = await open(new Request("http://localhost/queues/q/job?id=..", { headers: {} }));
  assert.equal(dots.status, 404, "a job id of dots is looked up, not resolved as a path");
  await dots.body?.cancel();

  await using guarded = dashboard({ redis: redis.url, token: "t0ken" });
  const bearer = await guarded(
    new Request("http://example.com/queues/q/pause", {
      method: "POST",
      headers: { authorization: "Bearer t0ken" },
    }),
  );
  assert.equal(await bearer.text(), "Queue q paused.");
  const login = await guarded(
    new Request("http://example.com/", { headers: { accept: "text/html" } }),
  );
  assert.equal(login.status, 401);
  assert.ok(
    !/name="csrf" content="[0-9a-f]+"/.test(await login.text()),
    "no CSRF token before signing in",
  );
  await using readOnly = dashboard({ redis: redis.url, token: "t0ken", readOnly: true });
  const refused = await readOnly(
    new Request("http://example.com/queues/q/resume", {
      method: "POST",
      headers: { authorization: "Bearer t0ken" },
    }),
  );
  assert.equal(refused.status, 403);
  await refused.body?.cancel();
  assert.equal(await queue.isPaused(), true);
});

Deno.test("dashboard sparklines count the last hour's ends per minute, or from the events, marking what those do not cover", async () => {
  await using redis = await startRedis();
  await using raw = inspect(redis.url);
  await using queue = new Queue("s", { redis: redis.url });
  await queue.enqueueMany("ok", [1, 2, 3].map((n) => ({ data: n })));
  await queue.enqueue("bad", 1);
  await using worker = new Worker("s", [
    task("ok", () => "fine"),
    task("bad", () => {
      throw new Error("no");
    }, { retry: { attempts: 1 } }),
  ], { redis: redis.url, handleSignals: false });
  let ended = 0;
  const all = Promise.withResolvers<void>();
  const count = () => ++ended === 4 && all.resolve();
  worker.addEventListener("completed", count);
  worker.addEventListener("dead", count);
  const run = worker.run();
  await all.promise;
  await worker.stop();
  await run;
  const sum = (values: number[]) => values.reduce((a, b) => a + b, 0);
  // From the per-minute counts the settles keep: the whole hour is known.
  const counted = await hourSeries(raw, queue.keys, Date.now() + 1_000);
  assert.deepEqual([sum(counted.completed), sum(counted.failed), counted.from], [3, 1, 0]);
  await using app = await served({ redis: redis.url });
  assert.match(await (await fetch(app.url)).text(), /> 3<\/td>/);
  // Without them (a queue settled by an older version), from the capped events stream.
  await raw.del(queue.keys.minutes);
  const fromEvents = await hourSeries(raw, queue.keys, Date.now() + 1_000);
  assert.deepEqual([sum(fromEvents.completed), sum(fromEvents.failed)], [3, 1]);
  assert.equal(fromEvents.from, 59, "a queue a minute old: the hour before it is unknown");
  const home = await (await fetch(app.url)).text();
  assert.match(home, /3 in 1 min/);
  assert.match(home, /no events kept from before then/);
});
