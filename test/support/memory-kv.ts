/** A Map behind the Workers KV methods the edge uses (a test double; real KV runs in test/e2e.test.ts). */
import type { KVNamespace } from "@cloudflare/workers-types";

export function memoryKv(): KVNamespace {
  const store = new Map<string, string>();
  return {
    get: async (name: string, type?: string) => {
      const value = store.get(name);
      return value === undefined ? null : type === "json" ? JSON.parse(value) : value;
    },
    put: async (name: string, value: string) => void store.set(name, value),
    delete: async (name: string) => void store.delete(name),
    list: async ({ prefix = "" }: { prefix?: string } = {}) => ({
      keys: [...store.keys()].filter((k) => k.startsWith(prefix)).map((name) => ({ name })),
      list_complete: true,
    }),
  } as unknown as KVNamespace;
}
