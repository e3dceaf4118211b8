/**
 * `sluice dashboard`: serves the web dashboard until Ctrl-C (see src/dashboard/).
 *
 * @module
 */
import { serveDashboard } from "../dashboard/main.ts";
import { type Command, text } from "./_command.ts";
import { integer } from "./_io.ts";

/** The `dashboard` command. */
export const DASHBOARD: Command = {
  interruptible: true,
  name: "dashboard",
  usage: "",
  summary: "serve the web dashboard (default http://127.0.0.1:8080/) until Ctrl-C",
  args: [0, 0],
  options: {
    port: { type: "string", help: "port to listen on, 0 for any free one (default 8080)" },
    hostname: { type: "string", help: "address to listen on (default 127.0.0.1)" },
    token: { type: "string", help: "require this token (default: $SLUICE_DASHBOARD_TOKEN)" },
    "read-only": { type: "boolean", help: "show everything, change nothing" },
    "base-path": { type: "string", help: "serve under this path, such as /admin" },
  },
  async run(ctx) {
    await ctx.client();
    const port = text(ctx, "port"), basePath = text(ctx, "base-path");
    const token = text(ctx, "token") ?? Deno.env.get("SLUICE_DASHBOARD_TOKEN");
    const server = await serveDashboard({
      redis: ctx.url,
      prefix: ctx.prefix,
      group: ctx.group,
      port: port === undefined ? 8080 : integer("port", port, 0, 65_535),
      hostname: text(ctx, "hostname") ?? "127.0.0.1",
      readOnly: ctx.values["read-only"] === true,
      signal: ctx.signal,
      ...(token ? { token } : {}),
      ...(basePath !== undefined ? { basePath } : {}),
    });
    ctx.io.err(`sluice dashboard on ${server.url} (Ctrl-C stops it)\n`);
    if (ctx.json) ctx.io.out(JSON.stringify({ url: server.url }) + "\n");
    await server.finished;
    return { json: undefined, text: "" };
  },
};
