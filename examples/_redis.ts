/** REDIS_URL if set, else a throwaway redis-server for the length of the example. */
import { startRedis } from "../src/testing.ts";

export async function exampleRedis(): Promise<{ url: string } & AsyncDisposable> {
  const url = Deno.env.get("REDIS_URL");
  if (url) return { url, [Symbol.asyncDispose]: () => Promise.resolve() };
  return await startRedis();
}
