/**
 * The denoiser node's HTTP face: the node protocol (protocol/src) over a loaded model,
 * with every generation run by the batching scheduler. It trusts only the edge (shared secret);
 * end users and their keys are the edge's business.
 *
 *   GET  /healthz      alive (no secret): models, protocol, generation counts
 *   GET  /readyz       200 once every model is loaded and verified against its sha256, 503 before,
 *                      when a load failed, or while draining; the ready answer (the protocol's
 *                      `NodeReadiness`) lists each model with its sha256, context and load: the
 *                      edge learns from it which models the node serves
 *   GET  /metrics      Prometheus text: tokens, forwards, batch sizes, queue, latencies
 *   POST /v1/generate  a generation as an SSE stream of protocol events
 *   POST /v1/verify    self-verification of a piece of code (JSON)
 *   POST /v1/edit      rewrite marked regions of code, or repair it (JSON)
 *
 * A node serves one or more models; a request names its model (`model`, absent: the first), an
 * unknown one is a 404 `model_not_found`. A model loaded with `maxContext` (SPROUT_MAX_CONTEXT,
 * main.ts) has its context capped below its manifest's `context_length`: requests that do not fit
 * get the runtime's 400; /readyz shows both. Each model has its own scheduler: a forward runs one
 * model's session, so a batch can only ever hold one model's rows, and separate schedulers say
 * that without the scheduler knowing of models (each also has its own slots and queue bound).
 * All of a model's work goes through its scheduler: generations, edits and verifications (a
 * generation's own `verify` included) are step machines (models/src/work.ts) that share its
 * batched forwards, its slots and queue bound (503 + Retry-After) and the node's metrics, and
 * stop when their client goes away.
 */
import { zValidator } from "@hono/zod-validator";
import { type Context, Hono } from "hono";
import { HTTPException } from "hono/http-exception";
import { streamSSE } from "hono/streaming";
import {
  DecodeInputError,
  type Model,
  onlyResult,
  type Work,
  WorkCancelledError,
} from "../../../models/src/index.ts";
import {
  EditRequest,
  GenerateRequest,
  type NodeEvent,
  type NodeReadiness,
  PROTOCOL_HEADER,
  PROTOCOL_VERSION,
  VerifyRequest,
} from "../../../protocol/src/index.ts";
import { edgeSecret } from "./auth.ts";
import { NodeMetrics, type WorkKind } from "./metrics.ts";
import { QueueFullError, Scheduler, type SchedulerOptions, type SubmitOptions } from "./scheduler.ts";

export interface DenoiserAppOptions {
  /** The model, or its loading (the node answers /healthz and /readyz meanwhile). */
  model?: Model | Promise<Model>;
  /** Several models (or their loadings), instead of `model`: the first serves requests naming none. */
  models?: readonly (Model | Promise<Model>)[];
  secret: string;
  /** Batching limits (scheduler.ts); the forward is the model's. */
  scheduler?: Omit<SchedulerOptions, "forward" | "slots" | "onForward">;
  log?: (message: string) => void;
}

const errorBody = (code: string, message: string) => ({ error: { code, message } });

/** A request named a model this node does not serve (404). */
export class ModelNotFoundError extends Error {
  override name = "ModelNotFoundError";
  constructor(requested: string, served: readonly string[]) {
    super(`model ${JSON.stringify(requested)} is not served by this node; it serves ${served.join(", ")}`);
  }
}

/** A loaded model and the scheduler that runs all of its work. */
interface Served {
  model: Model;
  scheduler: Scheduler;
}

/** zValidator's hook: the first problem, where it is, as a 400. */
function invalidRequest(
  result: { success: boolean; error?: { issues: { path: PropertyKey[]; message: string }[] } },
  c: Context,
) {
  if (!result.success) {
    const issue = result.error?.issues[0];
    const where = issue?.path.join(".") || "body";
    return c.json(errorBody("invalid_request", `${where}: ${issue?.message ?? "invalid"}`), 400);
  }
}

export function createDenoiserApp({
  model: one,
  models: several,
  secret,
  scheduler: limits,
  log = console.error,
}: DenoiserAppOptions) {
  const app = new Hono();
  const metrics = new NodeMetrics();
  /** How generations ended since start, and how many are in flight (shown by /healthz). */
  const generations = { active: 0, finished: 0, cancelled: 0, failed: 0 };
  /** The cancel of every request with work in flight: drain aborts them and waits until none is left. */
  const inFlight = new Set<AbortController>();
  let draining = false;
  const loadings = several ?? (one ? [one] : []);
  if (loadings.length === 0) throw new Error("createDenoiserApp needs a model (model or models)");
  /** Every model by name, in the order given; set only once all are loaded (the node serves none before). */
  let served: Map<string, Served> | undefined;
  let loadError: string | undefined;
  const serve = (loaded: readonly Model[]) => {
    const byName = new Map<string, Served>();
    for (const model of loaded) {
      const name = model.manifest.name;
      // Two directories of one name could not be told apart by a request.
      if (byName.has(name)) throw new Error(`two model directories are both named ${JSON.stringify(name)}`);
      const scheduler = new Scheduler({
        ...limits,
        forward: (inputs, options) => model.session.forwardBatch(inputs, options),
        slots: (inputs) => model.session.slots(inputs),
        onForward: (stats) => metrics.forward(stats, name),
      });
      byName.set(name, { model, scheduler });
    }
    served = byName;
  };
  const failed = (error: unknown) => {
    loadError = error instanceof Error ? error.message : String(error);
    log(`model failed to load: ${loadError}`);
  };
  // Models already loaded serve from the first request on; ones still loading once all are.
  if (!loadings.some((loading) => loading instanceof Promise)) {
    try {
      serve(loadings as Model[]);
    } catch (error) {
      failed(error);
    }
  }
  const ready = Promise.all(loadings)
    .then((loaded) => {
      if (!served && !loadError) serve(loaded);
    })
    .catch(failed);
  const names = () => [...(served?.keys() ?? [])];
  const first = () => served?.values().next().value;
  /** Summed over the models' schedulers. */
  const load = () => {
    const total = { active: 0, queued: 0 };
    for (const { scheduler } of served?.values() ?? []) {
      total.active += scheduler.load.active;
      total.queued += scheduler.load.queued;
    }
    return total;
  };

  app.get("/healthz", (c) =>
    c.json({
      ok: true,
      model: first()?.model.manifest.name ?? null,
      models: names(),
      protocol: PROTOCOL_VERSION,
      generations,
    }),
  );

  app.get("/readyz", (c) => {
    const main = first();
    if (served && main && !draining) {
      const sha256 = (model: Model) => model.manifest.files[model.manifest.graph.file]?.sha256;
      return c.json({
        ready: true,
        model: main.model.manifest.name,
        sha256: sha256(main.model),
        ...load(),
        models: [...served].map(([name, { model, scheduler }]) => ({
          name,
          sha256: sha256(model),
          context_length: model.contextLength,
          manifest_context_length: model.manifest.context_length,
          ...scheduler.load,
        })),
      } satisfies NodeReadiness & Record<string, unknown>);
    }
    const reason = draining
      ? "draining"
      : (loadError ?? (loadings.length > 1 ? "loading the models" : "loading the model"));
    return c.json({ ready: false, reason }, 503);
  });

  app.get("/metrics", async (c) => {
    if (served) metrics.load(load());
    return c.text(await metrics.text(), 200, { "content-type": metrics.contentType });
  });

  /** Every answer says which protocol it speaks; every POST needs the edge's secret, and a node
   * that can take work now (else 503). */
  app.use("/v1/*", async (c, next) => {
    c.header(PROTOCOL_HEADER, String(PROTOCOL_VERSION));
    await next();
  });
  app.use("/v1/*", edgeSecret({ secret }), async (c, next) => {
    if (draining) return c.json(errorBody("shutting_down", "this node is shutting down"), 503);
    if (!served) {
      const why = loadError ? "the model failed to load" : "the model is loading";
      return c.json(errorBody("model_unavailable", why), 503);
    }
    await next();
  });
  /** The model a request names (absent: the first) and its scheduler; ModelNotFoundError (404) if not served. */
  const serving = (name: string | undefined): Served => {
    const main = first();
    if (!served || !main) throw new Error("no model is loaded"); // the middleware above let the request through
    if (name === undefined) return main;
    const found = served.get(name);
    if (!found) throw new ModelNotFoundError(name, names());
    return found;
  };

  /**
   * Aborts when the client goes away, or the node drains: drain aborts what is in flight, and a
   * request that got past the draining check before it (a verification checking its syntax) is
   * aborted at once, so its work never reaches a forward.
   */
  const cancelWith = (c: Context) => {
    const cancel = new AbortController();
    c.req.raw.signal.addEventListener("abort", () => cancel.abort(), { once: true });
    if (draining) cancel.abort();
    return cancel;
  };

  /** Runs work that answers once (an edit, a verification) through the scheduler, counting how it ended. */
  async function run<T>(
    { scheduler }: Served,
    kind: WorkKind,
    work: Work<T>,
    signal: AbortSignal,
    options?: SubmitOptions,
  ): Promise<T> {
    const outputs = scheduler.submit(work, signal, options); // a full queue throws here
    try {
      const result = await onlyResult(outputs);
      metrics.work(kind, "finished");
      return result;
    } catch (error) {
      metrics.work(kind, error instanceof WorkCancelledError ? "cancelled" : "failed");
      throw error;
    }
  }

  /** The answer of a request's one piece of work; WorkCancelledError if its client left first. */
  async function answer<T>(c: Context, target: Served, kind: WorkKind, work: Work<T>): Promise<T> {
    const cancel = cancelWith(c);
    inFlight.add(cancel);
    try {
      return await run(target, kind, work, cancel.signal);
    } finally {
      inFlight.delete(cancel);
    }
  }

  app.post("/v1/verify", zValidator("json", VerifyRequest, invalidRequest), async (c) => {
    const { code, prompt, threshold, model: name } = c.req.valid("json");
    const target = serving(name);
    const work = await target.model.startVerification({ code, prompt, threshold });
    return c.json(await answer(c, target, "verification", work));
  });

  app.post("/v1/edit", zValidator("json", EditRequest, invalidRequest), async (c) => {
    const request = c.req.valid("json");
    const target = serving(request.model);
    const { model } = target;
    const { code, prompt, regions, threshold, rounds, max_tokens, block_size } = request;
    // A request the model refuses (DecodeInputError: onError answers 400) throws here, before it is queued.
    const work = regions
      ? model.startRewrite({ code, regions, maxTokens: max_tokens, blockSize: block_size })
      : model.startRepair({ code, prompt, threshold, rounds, blockSize: block_size });
    return c.json(await answer(c, target, "edit", work));
  });

  app.post("/v1/generate", zValidator("json", GenerateRequest, invalidRequest), async (c) => {
    const request = c.req.valid("json");
    const target = serving(request.model);
    const { model: loaded, scheduler: queue } = target;
    const cancel = cancelWith(c);
    // A request the model refuses (DecodeInputError) or a full queue (QueueFullError) throws
    // here, before the stream: onError answers 400 or 503.
    const generation = loaded.start({
      prompt: request.prompt,
      suffix: request.suffix,
      messages: request.messages,
      maxTokens: request.max_tokens,
      blockSize: request.block_size,
      threshold: request.threshold,
      steps: request.steps,
      entropyBound: request.entropy_bound,
      editRounds: request.edit_rounds,
      editThreshold: request.edit_threshold,
      emitSteps: request.emit_steps,
      sampling: { temperature: request.temperature, topP: request.top_p, seed: request.seed },
      stop: request.stop,
      committed: request.committed,
    });
    const events = queue.submit(generation, cancel.signal);
    generations.active++;
    inFlight.add(cancel);
    const started = performance.now();
    return streamSSE(c, async (stream) => {
      stream.onAbort(() => cancel.abort());
      const send = (event: NodeEvent) => stream.writeSSE({ event: event.type, data: JSON.stringify(event) });
      let text = "";
      let blocks = 0;
      try {
        await send(generation.start);
        for await (const event of events) {
          if (event.type === "block") {
            if (blocks++ === 0) metrics.firstBlock((performance.now() - started) / 1000);
            text += event.text;
          }
          if (event.type === "done" && request.verify && event.finish_reason !== "cancelled") {
            const verification = await verifyOwnText(target, text, request.prompt, cancel.signal);
            if (verification) await send({ type: "verify", ...verification });
          }
          if (event.type === "done") {
            const outcome = event.finish_reason === "cancelled" ? "cancelled" : "finished";
            generations[outcome]++;
            metrics.generation(
              loaded.manifest.name,
              outcome,
              (performance.now() - started) / 1000,
              event.usage.completion_tokens,
            );
          }
          await send(event);
        }
      } catch (error) {
        generations.failed++;
        metrics.generation(loaded.manifest.name, "failed", (performance.now() - started) / 1000, 0);
        log(`generate failed: ${error instanceof Error ? error.message : String(error)}`);
        await send({ type: "error", code: "internal", message: "decoding failed on the node" });
      } finally {
        await stream.close(); // the client has everything before this generation counts as ended
        generations.active--;
        inFlight.delete(cancel);
      }
    });
  });

  /**
   * A generation's own verification, in the scheduler like any work; it continues a request
   * already admitted, so a full queue does not refuse it. Undefined if it was cancelled (the
   * client left, or the node drains): the stream then ends without it.
   */
  async function verifyOwnText(target: Served, code: string, prompt: string, signal: AbortSignal) {
    const work = await target.model.startVerification({ code, prompt });
    return run(target, "verification", work, signal, { admitted: true }).catch((error: unknown) => {
      if (error instanceof WorkCancelledError) return undefined;
      throw error;
    });
  }

  app.notFound((c) => c.json(errorBody("not_found", `no route ${c.req.method} ${c.req.path}`), 404));
  app.onError((error, c) => {
    if (error instanceof DecodeInputError) return c.json(errorBody("invalid_request", error.message), 400);
    if (error instanceof ModelNotFoundError) return c.json(errorBody("model_not_found", error.message), 404);
    if (error instanceof QueueFullError) {
      metrics.rejected();
      c.header("retry-after", String(error.retryAfterSeconds));
      return c.json(errorBody("overloaded", error.message), 503);
    }
    if (error instanceof WorkCancelledError) {
      // Drained: the client is still there and may go elsewhere. Otherwise nobody reads this.
      const [code, message] = draining
        ? ["shutting_down", "this node is shutting down"]
        : ["cancelled", "the request was cancelled before it finished"];
      return c.json(errorBody(code, message), 503);
    }
    if (error instanceof HTTPException && error.status < 500) {
      return c.json(errorBody("invalid_request", error.message), error.status);
    }
    log(`unhandled: ${error.message}`);
    return c.json(errorBody("internal", "the node failed to handle this request"), 500);
  });
  /** Refuses new work, cancels what is in flight (streams end with `done: cancelled`, edits and
   * verifications get 503 shutting_down) and resolves once every request has ended, so the model
   * can be released safely. */
  async function drain(): Promise<void> {
    draining = true;
    for (const cancel of inFlight) cancel.abort();
    while (inFlight.size > 0) await new Promise((resolve) => setTimeout(resolve, 20));
  }
  return Object.assign(app, { drain, ready });
}
