/**
 * The dashboard's pages, rendered on the server from the admin API. Every value from Redis
 * goes through `html`, which escapes it.
 *
 * @module
 */
import type { JobSummary, ListState } from "../admin.ts";
import { LIST_STATES } from "../admin.ts";
import type { JobDetails } from "../inspect.ts";
import type { QueueSummary } from "../queues.ts";
import type { GroupInfo } from "../groups.ts";
import type { ScheduleInfo } from "../schedule.ts";
import type { WorkerInfo } from "../stats.ts";
import { type Html, html, sparkline } from "./_html.ts";
import type { HourSeries } from "./_live.ts";

/** What every page knows: where the dashboard is mounted, and whether actions are on. */
export interface View {
  base: string;
  readOnly: boolean;
  now: number;
}

function ago(ms: number): string {
  const s = Math.round(ms / 1_000);
  if (s < 60) return `${s}s`;
  if (s < 3_600) return `${Math.floor(s / 60)}m`;
  if (s < 86_400) return `${Math.floor(s / 3_600)}h`;
  return `${Math.floor(s / 86_400)}d`;
}

function time(at: number | undefined, now: number): Html {
  if (at === undefined || !Number.isFinite(at)) return html``;
  const d = at - now;
  return html`<span title="${new Date(at).toISOString()}">${
    d >= 0 ? `in ${ago(d)}` : `${ago(-d)} ago`
  }</span>`;
}

function state(name: string): Html {
  return html`<span class="state ${name}">${name}</span>`;
}

/** A button that POSTs to `path` (relative to the queue) without leaving the page. */
function action(
  v: View,
  path: string,
  label: string,
  options: { danger?: boolean; confirm?: string; reload?: boolean } = {},
): Html {
  if (v.readOnly) return html``;
  return html`
    <button data-post="${path}" class="${options.danger
      ? "danger"
      : ""}" data-confirm="${options.confirm ?? ""}"
      ${options.reload ? html`data-reload` : ""}>${label}</button>
  `;
}

const q = (v: View, name: string) => `${v.base}/queues/${encodeURIComponent(name)}`;

/**
 * A path under a queue with ids in the query string: an id such as ".." in the path would be
 * resolved as a dot-segment, and name another route.
 */
function under(v: View, name: string, path: string, query: Record<string, string>): string {
  return `${q(v, name)}/${path}?${new URLSearchParams(query)}`;
}

/** The home page: every queue, with sparklines of the last hour. */
export function queuesPage(v: View, queues: QueueSummary[], series: HourSeries[]): Html {
  if (queues.length === 0) {
    return html`
      <h1>Queues</h1>
      <p class="muted">No queues yet.</p>
    `;
  }
  return html`
    <h1>Queues</h1>
    <table>
      <thead>
        <tr>
          <th>queue</th>
          <th>state</th>
          <th>waiting</th>
          <th>active</th>
          <th>delayed</th>
          <th>dead</th>
          <th>workers</th>
          <th>completed, last hour</th>
          <th>failed, last hour</th>
        </tr>
      </thead>
      <tbody>${queues.map((s, i) =>
        html`
          <tr>
            <td>${/^\.+$/.test(s.name)
              ? s.name
              : html`<a href="${q(v, s.name)}">${s.name}</a>`}</td>
            <td>${state(s.stats.paused ? "paused" : "running")}</td>
            <td class="num">${s.stats.waiting}</td>
            <td class="num">${s.stats.active}</td>
            <td class="num">${s.stats.delayed}</td>
            <td class="num">${s.stats.dead}</td>
            <td class="num">${s.workers.length}</td>
            <td>${sparkline(series[i]!.completed, "#16a34a", series[i]!.from)} ${total(
              series[i]!.completed,
              series[i]!.from,
            )}</td>
            <td>${sparkline(series[i]!.failed, "#dc2626", series[i]!.from)} ${total(
              series[i]!.failed,
              series[i]!.from,
            )}</td>
          </tr>
        `
      )}</tbody>
    </table>
  `;
}

/** The mean per minute over the last 5 minutes of a series, to one decimal. */
function perMinute(values: readonly number[], from: number): string {
  const minutes = Math.max(1, Math.min(5, values.length - from));
  return (sum(values.slice(-minutes)) / minutes).toFixed(1);
}

/** A series' total, and over how long when the events cover less than the hour. */
function total(values: readonly number[], from: number): string {
  const n = sum(values);
  return from > 0 ? `${n} in ${values.length - from} min` : String(n);
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** One queue's counts, as a fragment the page reloads on events. */
export function countsFragment(v: View, s: QueueSummary): Html {
  const link = (st: ListState, n: number) =>
    html`<a class="count" href="${q(v, s.name)}/jobs/${st}">${st}<b>${n}</b></a>`;
  return html`<div class="counts">${link("waiting", s.stats.waiting)}${
    link("active", s.stats.active)
  }${link("delayed", s.stats.delayed)}${link("dead", s.stats.dead)}
<a class="count" href="${q(v, s.name)}/workers">workers<b>${s.workers.length}</b></a></div>
<p>${state(s.stats.paused ? "paused" : "running")} ${
    s.stats.oldestWaitingMs === null ? "" : `· oldest waiting job ${ago(s.stats.oldestWaitingMs)}`
  } ${s.priorities.length > 0 ? `· priorities ${s.priorities.join(", ")}` : ""}</p>`;
}

/** One queue's page: counts (live), the last hour, pause and resume. */
export function queuePage(v: View, s: QueueSummary, series: HourSeries): Html {
  return html`
    <h1>Queue ${s.name}</h1>
    <div id="counts" data-live="${q(v, s.name)}/counts">${countsFragment(v, s)}</div>
    <div class="bar">${s.stats.paused
      ? action(v, `${q(v, s.name)}/resume`, "Resume", { reload: true })
      : action(v, `${q(v, s.name)}/pause`, "Pause", { reload: true })}</div>
    <p>Browse: ${LIST_STATES.flatMap((st, i) => [
      i
        ? html`
          ·
        `
        : "",
      html`<a href="${q(v, s.name)}/jobs/${st}">${st}</a>`,
    ])}</p>
    <h2>Last hour</h2><p>completed ${sparkline(series.completed, "#16a34a", series.from)} ${total(
      series.completed,
      series.from,
    )} &nbsp; failed ${sparkline(series.failed, "#dc2626", series.from)} ${total(
      series.failed,
      series.from,
    )}</p>
    <p
      id="rates">Rate over the last 5 minutes: ${perMinute(
        series.completed,
        series.from,
      )} completed and ${perMinute(series.failed, series.from)} failed per minute.</p>
    <h2>Find a job</h2>${searchForm(v, s.name)}
  `;
}

function searchForm(v: View, name: string, value = ""): Html {
  return html`
    <form class="bar" method="get"
      action="${q(
        v,
        name,
      )}/find"><input name="id" placeholder="job id or prefix" value="${value}" size="40" required>
    <button>Find</button></form>
  `;
}

/** A page of jobs in one state, with filters, paging and search by id. */
export function jobsPage(
  v: View,
  name: string,
  st: ListState,
  jobs: JobSummary[],
  next: string | undefined,
  filter: { task?: string; group?: string },
): Html {
  const base = `${q(v, name)}/jobs/${st}`;
  const params = (extra: Record<string, string>) => {
    const p = new URLSearchParams();
    if (filter.task) p.set("task", filter.task);
    if (filter.group) p.set("group", filter.group);
    for (const [k, val] of Object.entries(extra)) p.set(k, val);
    return p.toString();
  };
  const rows = jobs.map((j) =>
    html`<tr><td><a href="${under(v, name, "job", { id: j.id })}"><code>${j.id}</code></a></td>
<td>${j.task}</td><td>${j.group ?? ""}</td><td class="num">${j.attempt ?? ""}</td><td>${
      st === "delayed"
        ? time(j.dueAt, v.now)
        : st === "active"
        ? html`${j.worker} · idle ${ago(j.idleMs ?? 0)}`
        : time(j.finishedAt ?? j.enqueuedAt, v.now)
    }</td><td>${
      st === "dead"
        ? html`${j.reason}: ${(j.error ?? "").split("\n")[0]}`
        : html`<code>${(j.data ?? "").slice(0, 120)}</code>`
    }</td>${
      st === "dead" && !v.readOnly
        ? html`<td>${
          action(v, under(v, name, "job/retry", { id: j.id }), "Retry", { reload: true })
        } ${
          action(v, under(v, name, "dead/delete", { deadId: j.deadId ?? "" }), "Delete", {
            danger: true,
            confirm: `Delete the dead letter of job ${j.id}?`,
            reload: true,
          })
        }</td>`
        : ""
    }</tr>`
  );
  const tabs = LIST_STATES.map((s) =>
    s === st ? html`<b>${s}</b>` : html`<a href="${q(v, name)}/jobs/${s}">${s}</a>`
  );
  const retryAll = st === "dead"
    ? action(v, `${q(v, name)}/dead/retry?${params({})}`, "Retry all shown by the filter", {
      confirm: "Replay every dead letter that matches the filter?",
      reload: true,
    })
    : "";
  return html`
    <h1>${name}: ${st} jobs</h1><p class="bar">${tabs.flatMap((t, i) =>
      i
        ? [
          html`
            ·
          `,
          t,
        ]
        : [t]
    )}</p>
    <form class="bar" method="get"
      action="${base}"><input name="task" placeholder="task" value="${filter.task ??
        ""}"><input name="group" placeholder="group" value="${filter.group ??
        ""}"><button>Filter</button></form>
    ${searchForm(v, name)}<div class="bar">${retryAll}</div>
    ${jobs.length === 0
      ? html`<p class="muted">No ${st} jobs${next ? " on this page" : ""}.</p>`
      : html`
        <table>
          <thead>
            <tr><th>id</th><th>task</th><th>group</th><th>attempt</th><th>when</th>
        <th>${st === "dead" ? "why" : "data"}</th>${st === "dead" && !v.readOnly
          ? html`<th></th>`
          : ""}</tr>
          </thead>
          <tbody>${rows}</tbody>
        </table>
      `}${next ? html`<p><a href="${base}?${params({ cursor: next })}">Next page →</a></p>` : ""}
  `;
}

function pretty(json: string): string {
  try {
    return JSON.stringify(JSON.parse(json), null, 2);
  } catch {
    return json;
  }
}

/** One job's section: reloaded on its events. */
export function jobFragment(v: View, name: string, d: JobDetails): Html {
  const s = d.status;
  const rows: [string, Html | string | number | undefined][] = [
    ["state", state(s.state)],
    ["task", s.task],
    ["group", s.group],
    ["attempt", s.attempt],
    ["deliveries", s.deliveries],
    ["worker", s.worker],
    ["enqueued", time(s.enqueuedAt, v.now)],
    ["started", time(s.startedAt, v.now)],
    ["finished", time(s.finishedAt, v.now)],
    ["due", time(s.dueAt, v.now)],
    ["reason", s.reason],
    ["progress", s.progress === undefined ? undefined : JSON.stringify(s.progress)],
  ];
  const path = (act: string) => under(v, name, `job/${act}`, { id: s.id });
  return html`
    <table>
      <tbody>${rows.filter(([, val]) => val !== undefined && String(val) !== "").map(([k, val]) =>
        html`
          <tr>
            <th>${k}</th>
            <td id="job-${k}">${val}</td>
          </tr>
        `
      )}</tbody>
    </table>
    <div class="bar">${s.state === "dead"
      ? action(v, path("retry"), "Retry")
      : ""}${s.state === "waiting" || s.state === "delayed" || s.state === "active" ||
        s.state === "retrying"
      ? action(v, path("cancel"), "Cancel", { danger: true, confirm: `Cancel job ${s.id}?` })
      : ""}</div>
    ${d.data === undefined ? "" : html`
      <h2>Data</h2>
      <pre id="job-data">${pretty(d.data)}</pre>
    `}
    ${d.result === undefined ? "" : html`
      <h2>Result</h2>
      <pre id="job-result">${pretty(d.result)}</pre>
    `}
    ${s.error === undefined ? "" : html`
      <h2>Error</h2>
      <pre id="job-error">${s.error}</pre>
    `}
    <h2>Timeline</h2><table>
      <tbody>${d.timeline.map((step) =>
        html`
          <tr>
            <td>${new Date(step.at).toISOString()}</td>
            <td>${state(step.type)}</td>
            <td>${step.detail ?? ""}</td>
          </tr>
        `
      )}</tbody>
    </table>
  `;
}

/** One job's page. */
export function jobPage(v: View, name: string, d: JobDetails): Html {
  return html`<h1>Job <code>${d.status.id}</code></h1>
<div id="job" data-live="${under(v, name, "job", { id: d.status.id, fragment: "1" })}">${
    jobFragment(v, name, d)
  }</div>`;
}

/** Search results. */
export function findPage(v: View, name: string, id: string, found: JobDetails["status"][]): Html {
  return html`<h1>Jobs matching <code>${id}</code></h1>${searchForm(v, name, id)}${
    found.length === 0 ? html`<p class="muted">No job found.</p>` : html`
      <table>
        <thead>
          <tr>
            <th>id</th>
            <th>state</th>
            <th>task</th>
          </tr>
        </thead>
        <tbody>${found.map((s) =>
          html`
            <tr>
              <td><a href="${under(v, name, "job", { id: s.id })}"><code>${s.id}</code></a></td>
              <td>${state(s.state)}</td>
              <td>${s.task ?? ""}</td>
            </tr>
          `
        )}</tbody>
      </table>
    `
  }`;
}

/** Live workers. */
export function workersPage(v: View, name: string, workers: WorkerInfo[]): Html {
  return html`<h1>${name}: workers</h1>${
    workers.length === 0 ? html`<p class="muted">No live workers.</p>` : html`
      <table>
        <thead>
          <tr>
            <th>worker</th>
            <th>host</th>
            <th>pid</th>
            <th>version</th>
            <th>running</th>
            <th>concurrency</th>
            <th>processed</th>
            <th>failed</th>
            <th>up</th>
            <th>heartbeat</th>
          </tr>
        </thead>
        <tbody>${workers.map((w) =>
          html`
            <tr>
              <td><code>${w.id}</code></td>
              <td>${w.host ?? ""}</td>
              <td>${w.pid ?? ""}</td>
              <td>${w.version ?? ""}</td>
              <td class="num">${w.running ?? ""}</td>
              <td class="num">${w.concurrency ?? ""}</td>
              <td class="num">${w.processed ?? ""}</td>
              <td class="num">${w.failed ?? ""}</td>
              <td>${w.startedAt ? ago(v.now - w.startedAt) : ""}</td>
              <td>${time(w.heartbeatAt, v.now)}</td>
            </tr>
          `
        )}</tbody>
      </table>
    `
  }`;
}

/** Schedules with pause, resume and run now. */
export function schedulesPage(v: View, name: string, list: ScheduleInfo[]): Html {
  const path = (id: string, act: string) => under(v, name, `schedule/${act}`, { id });
  return html`<h1>${name}: schedules</h1>${
    list.length === 0 ? html`<p class="muted">No schedules.</p>` : html`
      <table>
        <thead>
          <tr>
            <th>schedule</th>
            <th>task</th>
            <th>when</th>
            <th>next</th>
            <th>last</th>
            <th>state</th>
            <th></th>
          </tr>
        </thead>
        <tbody>${list.map((s) =>
          html`
            <tr>
              <td>${s.id}</td>
              <td>${s.task}</td>
              <td><code>${s.cron ?? `every ${ago(s.every ?? 0)}`}</code></td>
              <td>${time(s.next?.getTime(), v.now)}</td>
              <td>${time(s.last?.getTime(), v.now)}</td>
              <td>${state(s.paused ? "paused" : "active")}</td>
              <td>${s.paused
                ? action(v, path(s.id, "resume"), "Resume", { reload: true })
                : action(v, path(s.id, "pause"), "Pause", { reload: true })} ${action(
                  v,
                  path(s.id, "run"),
                  "Run now",
                )}</td>
            </tr>
          `
        )}</tbody>
      </table>
    `
  }`;
}

/** Groups with their counts, limits, pause and resume. */
export function groupsPage(v: View, name: string, groups: GroupInfo[]): Html {
  const path = (g: string, act: string) => under(v, name, `group/${act}`, { group: g });
  return html`<h1>${name}: groups</h1>${
    groups.length === 0 ? html`<p class="muted">No groups with jobs.</p>` : html`
      <table>
        <thead>
          <tr>
            <th>group</th>
            <th>waiting</th>
            <th>running</th>
            <th>concurrency</th>
            <th>state</th>
            <th></th>
          </tr>
        </thead>
        <tbody>${groups.map((g) =>
          html`
            <tr>
              <td>${g.group}</td>
              <td class="num">${g.waiting}</td>
              <td class="num">${g.running}</td>
              <td class="num">${g.concurrency ?? "∞"}</td>
              <td>${state(g.paused ? "paused" : g.rateLimited ? "rate-limited" : "running")}</td>
              <td>${g.paused
                ? action(v, path(g.group, "resume"), "Resume", { reload: true })
                : action(v, path(g.group, "pause"), "Pause", { reload: true })}</td>
            </tr>
          `
        )}</tbody>
      </table>
    `
  }`;
}

/** The login page, for a browser without the token. */
export function loginPage(v: View, failed: boolean): Html {
  return html`
    <h1>Sign in</h1><p>This dashboard needs its token.</p>${failed
      ? html`<p class="flash">That token is not right.</p>`
      : ""}
    <form method="post" action="${v.base}/login"
      class="bar"><input type="password" name="token" placeholder="token" autofocus required size="40"><button>Sign in</button></form>
  `;
}
