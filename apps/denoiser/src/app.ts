/**
 * The denoiser node's HTTP face: protocol v1 (adapters/src/protocol.ts) over a loaded model.
 * It trusts only the edge (shared secret); end users and their keys are the edge's business.
 */
import { zValidator } from "@hono/zod-validator";
import { Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { streamSSE } from "hono/streaming";
import { type NodeEvent, NodeGenerateRequest, PROTOCOL_VERSION } from "../../../adapters/src/protocol.ts";
import { type DecodeEvent, DecodeInputError, type Model } from "../../../models/src/index.ts";
import { edgeSecret } from "./auth.ts";

export interface DenoiserAppOptions {
  model: Model;
  secret: string;
  log?: (message: string) => void;
}

const errorBody = (code: string, message: string) => ({ error: { code, message } });

export function createDenoiserApp({ model, secret, log = console.error }: DenoiserAppOptions) {
  const app = new Hono();
  /** How generations ended since start, and how many are in flight (shown by /healthz). */
  const generations = { active: 0, finished: 0, cancelled: 0, failed: 0 };
  const inFlight = new Set<AbortController>();
  let draining = false;

  app.get("/healthz", (c) =>
    c.json({ ok: true, model: model.manifest.name, protocol: PROTOCOL_VERSION, generations }),
  );

  app.post(
    "/v1/generate",
    edgeSecret({ secret }),
    zValidator("json", NodeGenerateRequest, (result, c) => {
      if (!result.success) {
        const issue = result.error.issues[0];
        const where = issue?.path.join(".") || "body";
        return c.json(errorBody("invalid_request", `${where}: ${issue?.message ?? "invalid"}`), 400);
      }
    }),
    async (c) => {
      if (draining) return c.json(errorBody("shutting_down", "this node is shutting down"), 503);
      const request = c.req.valid("json");
      const cancel = new AbortController();
      c.req.raw.signal.addEventListener("abort", () => cancel.abort(), { once: true });
      const events = model.generate({
        prompt: request.prompt,
        suffix: request.suffix,
        maxTokens: request.max_tokens,
        blockSize: request.block_size,
        threshold: request.threshold,
        emitSteps: request.emit_steps,
        sampling: { temperature: request.temperature, topP: request.top_p, seed: request.seed },
        stop: request.stop,
        signal: cancel.signal,
      });
      // Pull the first event before answering, so a request the model refuses gets a 400.
      let first: IteratorResult<DecodeEvent>;
      try {
        first = await events.next();
      } catch (error) {
        if (error instanceof DecodeInputError)
          return c.json(errorBody("invalid_request", error.message), 400);
        throw error;
      }
      generations.active++;
      inFlight.add(cancel);
      return streamSSE(c, async (stream) => {
        stream.onAbort(() => cancel.abort());
        const send = (event: NodeEvent) =>
          stream.writeSSE({ event: event.type, data: JSON.stringify(event) });
        try {
          for (let next = first; !next.done; next = await events.next()) {
            const event = next.value;
            if (event.type === "done")
              generations[event.finish_reason === "cancelled" ? "cancelled" : "finished"]++;
            await send(toNodeEvent(event));
          }
        } catch (error) {
          generations.failed++;
          log(`generate failed: ${error instanceof Error ? error.message : String(error)}`);
          await send({ type: "error", code: "internal", message: "decoding failed on the node" });
        } finally {
          await stream.close(); // the client has everything before this generation counts as ended
          generations.active--;
          inFlight.delete(cancel);
        }
      });
    },
  );

  app.notFound((c) => c.json(errorBody("not_found", `no route ${c.req.method} ${c.req.path}`), 404));
  app.onError((error, c) => {
    if (error instanceof HTTPException && error.status < 500) {
      return c.json(errorBody("invalid_request", error.message), error.status);
    }
    log(`unhandled: ${error.message}`);
    return c.json(errorBody("internal", "the node failed to handle this request"), 500);
  });
  /** Refuses new work, cancels what is in flight (clients get `done: cancelled`) and resolves once
   * every stream has ended, so the model can be released safely. */
  async function drain(): Promise<void> {
    draining = true;
    for (const cancel of inFlight) cancel.abort();
    while (generations.active > 0) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Object.assign(app, { drain });
}

function toNodeEvent(event: DecodeEvent): NodeEvent {
  return event.type === "start" ? { ...event, v: PROTOCOL_VERSION } : event;
}
