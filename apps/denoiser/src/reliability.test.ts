/**
 * The denoiser node under attack and fault, with the shipped model: work without the edge's
 * secret is refused whatever it carries (property-based; the probes /healthz, /readyz and
 * /metrics are open by design: they carry counts, never request content), any body on its routes gets a JSON
 * answer and never a 5xx or a hang, and a corrupted model file is refused at load by its sha256
 * (the node stays up, not ready, and answers work with a clear 503).
 */
import { cpSync, mkdtempSync, openSync, readSync, rmSync, writeSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { loadModel, type Model, SHIPPED_MODEL_DIR } from "../../../models/src/index.ts";
import { readWithin } from "../../../test/support/deadline.ts";
import { createDenoiserApp } from "./app.ts";

const SECRET = "node-reliability-secret";
const ROUTES = ["/v1/generate", "/v1/verify", "/v1/edit"] as const;
const HANG_MS = 30_000;

const answer = (response: Response | Promise<Response>) => readWithin(response, HANG_MS);

describe("the denoiser node, attacked", () => {
  let model: Model;
  let app: ReturnType<typeof createDenoiserApp>;
  beforeAll(async () => {
    model = await loadModel(SHIPPED_MODEL_DIR);
    app = createDenoiserApp({ model, secret: SECRET, log: () => {} });
  });
  afterAll(() => model.close());

  it("refuses every request without the edge's secret, whatever it carries", async () => {
    const authorization = fc.oneof(
      fc.constant(undefined),
      fc.string({ maxLength: 60 }).map((s) => `Bearer ${s}`),
      fc.constantFrom(SECRET, `bearer ${SECRET}`, `Bearer ${SECRET.slice(0, -1)}`, `Basic ${SECRET}`),
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(...ROUTES),
        authorization,
        fc.jsonValue(),
        async (path, header, body) => {
          const headers: Record<string, string> = { "content-type": "application/json" };
          if (header !== undefined) headers.authorization = header.replace(/[^\x20-\x7e]/g, "?");
          const { status, text } = await answer(
            app.request(path, { method: "POST", headers, body: JSON.stringify(body) }),
          );
          expect(status).toBe(401);
          expect(JSON.parse(text).error.code).toBe("unauthorized");
        },
      ),
      { numRuns: 80, seed: 8 },
    );
  });

  it("answers any body on its routes with JSON or a stream, never a 5xx or a hang", async () => {
    const hostile = fc.oneof(
      fc.jsonValue({ maxDepth: 3 }),
      fc.constantFrom(-1, 0, 1e308, 1.5, 2 ** 53, "<|mask|>", "x".repeat(300_000)),
      fc.string({ unit: "binary", maxLength: 100 }),
    );
    const valid: Record<(typeof ROUTES)[number], Record<string, unknown>> = {
      "/v1/generate": { prompt: "x = ", max_tokens: 2 },
      "/v1/verify": { code: "x = 1\n" },
      "/v1/edit": { code: "x = (1\n", rounds: 1 },
    };
    const bodies = fc.constantFrom(...ROUTES).chain((path) =>
      fc
        .oneof(
          fc
            .record({ field: fc.constantFrom(...Object.keys(valid[path])), value: hostile })
            .map(({ field, value }) => ({
              ...valid[path],
              [field]:
                field === "max_tokens" && Number.isInteger(value) && (value as number) > 0 ? -1 : value,
            })),
          fc.jsonValue({ maxDepth: 4 }),
        )
        .map((body) => ({ path, body })),
    );
    await fc.assert(
      fc.asyncProperty(bodies, async ({ path, body }) => {
        const { status, text } = await answer(
          app.request(path, {
            method: "POST",
            headers: { authorization: `Bearer ${SECRET}`, "content-type": "application/json" },
            body: JSON.stringify(body),
          }),
        );
        expect(status, text.slice(0, 200)).toBeLessThan(500);
        if (status >= 400) expect(typeof JSON.parse(text).error.message).toBe("string");
      }),
      { numRuns: 120, seed: 8 },
    );
  });
});

describe("a corrupted model file", () => {
  let copy: string;
  afterAll(() => rmSync(copy, { recursive: true, force: true }));

  it("is refused at load by its sha256: the node stays up, not ready, and says why", async () => {
    copy = mkdtempSync(join(tmpdir(), "sprout-corrupt-"));
    cpSync(SHIPPED_MODEL_DIR, copy, { recursive: true });
    // One flipped bit in the middle of the weights: the graph would still load and run, wrongly.
    const graph = openSync(join(copy, "denoiser.onnx"), "r+");
    const byte = Buffer.alloc(1);
    readSync(graph, byte, 0, 1, 10_000_000);
    writeSync(graph, Buffer.from([(byte[0] as number) ^ 1]), 0, 1, 10_000_000);
    const app = createDenoiserApp({ model: loadModel(copy), secret: SECRET, log: () => {} });
    await app.ready;
    expect((await app.request("/healthz")).status).toBe(200);
    const ready = await app.request("/readyz");
    expect(ready.status).toBe(503);
    expect(await ready.json()).toMatchObject({ ready: false, reason: expect.stringMatching(/sha256/) });
    const work = await app.request("/v1/generate", {
      method: "POST",
      headers: { authorization: `Bearer ${SECRET}`, "content-type": "application/json" },
      body: JSON.stringify({ prompt: "x", max_tokens: 1 }),
    });
    expect(work.status).toBe(503);
    expect(await work.json()).toMatchObject({ error: { code: "model_unavailable" } });
  });
});
