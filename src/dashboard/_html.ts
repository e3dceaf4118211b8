/**
 * Server-rendered HTML for the dashboard: a tagged template that escapes every value put into
 * it, the page layout, its stylesheet and its script, and SVG sparklines.
 *
 * @module
 */

/** HTML that is already safe: what `html` returns, and what `raw` marks. */
export class Html {
  /** The markup. */
  readonly text: string;
  constructor(text: string) {
    this.text = text;
  }
  /** The markup, for `${}` in strings. */
  toString(): string {
    return this.text;
  }
}

/** Escapes text for HTML content and attribute values. */
export function escape(value: unknown): string {
  return String(value).replace(
    /[&<>"']/g,
    (c) =>
      c === "&"
        ? "&amp;"
        : c === "<"
        ? "&lt;"
        : c === ">"
        ? "&gt;"
        : c === '"'
        ? "&quot;"
        : "&#39;",
  );
}

function render(value: unknown): string {
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join("");
  if (value === undefined || value === null || value === false) return "";
  return escape(value);
}

/**
 * HTML with every interpolated value escaped, unless it is `Html` itself (from `html` or
 * `raw`); arrays are joined, and undefined, null and false render as nothing.
 */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new Html(out);
}

/** Marks trusted markup as safe: only for text this module builds. */
export function raw(text: string): Html {
  return new Html(text);
}

/**
 * An SVG sparkline of `values`, bars from oldest to newest; `from` is the first bucket the
 * data covers (earlier ones are drawn pale: no data).
 */
export function sparkline(values: readonly number[], color: string, from = 0): Html {
  const width = 120, height = 24, max = Math.max(1, ...values);
  const step = width / values.length;
  const bars = values.map((v, i) => {
    const h = v === 0 ? 0 : Math.max(1, Math.round(v / max * height));
    const fill = i < from ? "#9ca3af" : color;
    return `<rect x="${(i * step).toFixed(1)}" y="${height - h}" width="${
      Math.max(1, step - 0.5).toFixed(1)
    }" height="${h}" fill="${fill}"/>`;
  }).join("");
  const total = values.reduce((a, b) => a + b, 0);
  // The minutes the capped events stream no longer covers: a grey band, not zeros.
  const unknown = from > 0
    ? `<rect x="0" y="0" width="${
      (from * step).toFixed(1)
    }" height="${height}" fill="#e5e7eb"><title>no events kept from before then</title></rect>`
    : "";
  return raw(
    `<svg class="spark" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" role="img" aria-label="${total} in the last ${
      values.length - from
    } minutes">${unknown}<rect x="0" y="${
      height - 1
    }" width="${width}" height="1" fill="#e5e7eb"/>${bars}</svg>`,
  );
}

const STYLE = `
:root { font: 14px/1.45 system-ui, sans-serif; color: #111827; background: #f9fafb; }
body { margin: 0; }
header { background: #111827; color: #f9fafb; padding: 10px 20px; display: flex; gap: 20px; align-items: baseline; }
header a { color: #f9fafb; text-decoration: none; }
header .brand { font-weight: 700; font-size: 16px; }
main { padding: 16px 20px; max-width: 1200px; }
h1 { font-size: 20px; margin: 4px 0 12px; }
h2 { font-size: 16px; margin: 20px 0 8px; }
table { border-collapse: collapse; width: 100%; background: #fff; border: 1px solid #e5e7eb; }
th, td { text-align: left; padding: 6px 10px; border-bottom: 1px solid #e5e7eb; vertical-align: top; }
th { background: #f3f4f6; font-weight: 600; font-size: 12px; text-transform: uppercase; color: #4b5563; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
a { color: #1d4ed8; }
code, pre { font: 12px/1.4 ui-monospace, monospace; }
pre { background: #fff; border: 1px solid #e5e7eb; padding: 10px; overflow: auto; max-height: 420px; white-space: pre-wrap; word-break: break-word; }
.counts { display: flex; gap: 12px; flex-wrap: wrap; margin-bottom: 12px; }
.count { background: #fff; border: 1px solid #e5e7eb; padding: 8px 14px; min-width: 90px; text-decoration: none; color: inherit; }
.count b { display: block; font-size: 22px; font-variant-numeric: tabular-nums; }
.state { display: inline-block; padding: 1px 8px; border-radius: 10px; font-size: 12px; background: #e5e7eb; }
.state.completed { background: #dcfce7; color: #166534; } .state.dead { background: #fee2e2; color: #991b1b; }
.state.active { background: #cffafe; color: #155e75; } .state.delayed, .state.retrying { background: #fef9c3; color: #854d0e; }
.state.waiting { background: #dbeafe; color: #1e40af; } .state.paused { background: #fef9c3; color: #854d0e; }
form.inline { display: inline; }
button { font: inherit; padding: 3px 10px; border: 1px solid #9ca3af; background: #fff; cursor: pointer; border-radius: 4px; }
button.danger { border-color: #dc2626; color: #b91c1c; }
input, select { font: inherit; padding: 3px 6px; }
.bar { display: flex; gap: 8px; align-items: center; margin: 8px 0 12px; flex-wrap: wrap; }
.muted { color: #6b7280; } .flash { background: #ecfdf5; border: 1px solid #a7f3d0; padding: 6px 10px; margin-bottom: 10px; }
.spark { vertical-align: middle; }
`;

/**
 * The client script: live updates over Server-Sent Events (each element with `data-live`
 * names the fragment URL it reloads from when events arrive, 250 ms after the first), and
 * buttons that POST without leaving the page (`data-post`).
 */
const SCRIPT = `
const csrf = document.querySelector('meta[name=csrf]')?.content ?? '';
const stream = document.body.dataset.events;
if (stream) {
  const source = new EventSource(stream);
  let pending = false;
  source.onmessage = () => {
    if (pending) return;
    pending = true;
    setTimeout(async () => {
      pending = false;
      for (const el of document.querySelectorAll('[data-live]')) {
        const res = await fetch(el.dataset.live, { headers: { accept: 'text/html' } });
        if (res.ok) el.innerHTML = await res.text();
      }
    }, 250);
  };
}
document.addEventListener('click', async (e) => {
  const button = e.target.closest('button[data-post]');
  if (!button) return;
  e.preventDefault();
  if (button.dataset.confirm && !confirm(button.dataset.confirm)) return;
  button.disabled = true;
  const res = await fetch(button.dataset.post, { method: 'POST', headers: { 'x-csrf-token': csrf } });
  const text = await res.text();
  const flash = document.getElementById('flash');
  if (flash) { flash.textContent = text; flash.hidden = false; }
  button.disabled = false;
  if (button.dataset.reload !== undefined) location.reload();
});
`;

/** A whole page: header, navigation, body. */
export function page(options: {
  title: string;
  base: string;
  csrf: string;
  body: Html;
  /** The SSE stream the page listens to, if any. */
  events?: string;
  queue?: string;
}): Html {
  const { title, base, csrf, body, events, queue } = options;
  const q = queue === undefined ? "" : `${base}/queues/${encodeURIComponent(queue)}`;
  return html`
    <!doctype html>
    <html lang="en">
      <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="csrf" content="${csrf}">
        <title>${title} · sluice</title>
        <style>${raw(STYLE)}</style>
      </head>
      <body data-events="${events ?? ""}">
        <header><a class="brand" href="${base}/">sluice</a>
    ${queue === undefined ? "" : html`
      <a href="${q}">${queue}</a>
      <a href="${q}/jobs/waiting">jobs</a><a href="${q}/jobs/dead">dead letters</a><a
        href="${q}/workers">workers</a><a href="${q}/schedules">schedules</a><a
        href="${q}/groups">groups</a>
    `}</header>
        <main><div id="flash" class="flash" hidden></div>${body}</main>
        <script type="module">${raw(SCRIPT)}</script>
      </body>
    </html>
  `;
}
