/**
 * Several models behind one `Backend`: the router learns which models each member serves (its
 * `models()`: a Sprout node's /readyz, an upstream's /v1/models), keeps one `BackendPool` per
 * model of the members that serve it, and sends each request to its model's pool, where the
 * pool's choice, retries, circuits and failover by resume all stay among members serving that
 * model (one node never resumes another model's tokens).
 *
 * Why routing lives here, in adapters/, and not in the edge: the edge needs one backend per
 * request, and the `Backend` interface stays the one seam. A request already names its model,
 * so a router is just another `Backend` — metered by the edge like any other, used by the queue
 * consumer as by live requests, and testable without an edge. The pool stays model-blind (one
 * pool serves one model), and the edge keeps only what is about users: it lists the router's
 * `models()` at /v1/models and answers 404 for a model not among them.
 *
 * - Catalog: the models in order — each member's in the order it lists them, members in the
 *   order given — the first serving requests that name no model (`model` absent: the first
 *   node's first model, as a node's own default). The request is sent on with that name.
 * - Discovery: members are asked at the first request and again once the catalog is older than
 *   `refreshMs` (all at once; concurrent requests share one round; requests do not wait for a
 *   refresh, they use the catalog they have meanwhile). A member that cannot say now
 *   (down, loading) keeps what it said last, so a node that dies stays in its pools, whose
 *   circuits and failover deal with it; one that never answered is in no pool until it does. A
 *   request for a model not in the catalog asks again at once (at most every `retryMs`), so a
 *   node that just came up is found without waiting for the refresh.
 * - Unknown model: a 404 `model_not_found` BackendError naming the available models; no member
 *   able to say at all: a 503.
 * - A model's version (the verification cache's key, apps/edge) is the first member's that says
 *   one; its context, the least any member allows. Members serving one name must serve the same
 *   weights (a resume on other weights would not continue the same text): a mismatch is reported
 *   through `onFailure`.
 *
 * Like the pool's, its state lives in the instance: in Workers, per isolate.
 */
import type {
  EditRequest,
  EditResult,
  GenerateEvent,
  GenerateRequest,
  Verification,
  VerifyRequest,
} from "../../protocol/src/index.ts";
import {
  type Backend,
  BackendError,
  modelNotFound,
  type ServedModel,
  type StreamOptions,
} from "./backend.ts";
import { BackendPool, type PoolMember, type PoolOptions } from "./pool.ts";

export interface RouterOptions extends Omit<PoolOptions, "members"> {
  /** Every backend, whatever it serves; each model's pool holds those that serve it. */
  members: PoolMember[];
  /** How long a catalog is trusted before the members are asked again (default 30 s). */
  refreshMs?: number;
  /** The least time between two extra rounds of discovery for unknown models (default 2 s). */
  retryMs?: number;
}

interface Catalog {
  models: ServedModel[];
  pools: Map<string, BackendPool>;
  at: number;
}

export class ModelRouter implements Backend {
  readonly id = "router";
  private readonly members: PoolMember[];
  private readonly poolOptions: Omit<PoolOptions, "members">;
  private readonly refreshMs: number;
  private readonly retryMs: number;
  private readonly now: () => number;
  private readonly onFailure: (memberId: string, detail: string) => void;
  /** What each member said last (absent: it never said). */
  private readonly said = new Map<PoolMember, ServedModel[]>();
  /** Each model's pool, by its members: kept while they stay the same, so its circuits last. */
  private readonly poolsByMembers = new Map<string, BackendPool>();
  private catalog: Catalog | undefined;
  private discovering: { round: Promise<Catalog>; since: number } | undefined;

  constructor({ members, refreshMs = 30_000, retryMs = 2_000, ...poolOptions }: RouterOptions) {
    if (members.length === 0) throw new Error("a model router needs at least one member");
    this.members = members;
    this.poolOptions = poolOptions;
    this.refreshMs = refreshMs;
    this.retryMs = retryMs;
    this.now = poolOptions.now ?? Date.now;
    this.onFailure = poolOptions.onFailure ?? (() => {});
  }

  /** Every model some member serves, the default first; a 503 when no member can say. */
  async models(): Promise<ServedModel[]> {
    return (await this.current()).models;
  }

  async doStream(request: GenerateRequest, options?: StreamOptions): Promise<AsyncIterable<GenerateEvent>> {
    const { pool, model } = await this.route(request.model);
    return pool.doStream({ ...request, model }, options);
  }

  async verify(request: VerifyRequest, options?: StreamOptions): Promise<Verification> {
    const { pool, model } = await this.route(request.model);
    return pool.verify({ ...request, model }, options);
  }

  async edit(request: EditRequest, options?: StreamOptions): Promise<EditResult> {
    const { pool, model } = await this.route(request.model);
    return pool.edit({ ...request, model }, options);
  }

  /** Ready when some member is (those that cannot say count as ready). */
  async health(): Promise<boolean> {
    const answers = await Promise.all(
      this.members.map((m) => (m.backend.health ? m.backend.health().catch(() => false) : true)),
    );
    return answers.some(Boolean);
  }

  /** Each model's pool state, for health endpoints and tests (the catalog as last learnt). */
  status(): { model: string; members: ReturnType<BackendPool["status"]> }[] {
    return [...(this.catalog?.pools ?? [])].map(([model, pool]) => ({ model, members: pool.status() }));
  }

  async model(requested: string | undefined): Promise<ServedModel> {
    return (await this.route(requested)).served;
  }

  /** The pool serving `requested` (absent: the default model) and the model's name. */
  private async route(
    requested: string | undefined,
  ): Promise<{ pool: BackendPool; model: string; served: ServedModel }> {
    let catalog = await this.current();
    const find = (c: Catalog) => {
      const served = requested === undefined ? c.models[0] : c.models.find((m) => m.id === requested);
      const pool = served && c.pools.get(served.id);
      return served && pool ? { pool, model: served.id, served } : undefined;
    };
    let found = find(catalog);
    if (!found && this.now() - catalog.at >= this.retryMs) {
      catalog = await this.discover();
      found = find(catalog);
    }
    if (!found)
      throw modelNotFound(
        requested ?? "",
        catalog.models.map((m) => m.id),
      );
    return found;
  }

  /**
   * The catalog. A stale one is asked anew in the background while requests keep using it (no
   * request waits on a slow member's answer); a request waits only while there is none yet (or
   * it is empty, after `retryMs`). A 503 when no member has ever said what it serves.
   */
  private async current(): Promise<Catalog> {
    const last = this.catalog;
    const age = last ? this.now() - last.at : Number.POSITIVE_INFINITY;
    if (last && last.models.length > 0) {
      if (age >= this.refreshMs) this.discover().catch(() => {}); // a failed round keeps `last`
      return last;
    }
    const catalog = !last || age >= this.retryMs ? await this.discover() : last;
    if (catalog.models.length === 0) {
      throw new BackendError(
        "backend_unavailable",
        "No model backend is available; try again shortly.",
        503,
        "no member could say which models it serves",
      );
    }
    return catalog;
  }

  /**
   * One round of asking every member (shared by the requests that arrive meanwhile). A round
   * still unsettled after `refreshMs` is given up on and a new one started: a round started in
   * the background of a request whose I/O the runtime has since dropped must not block the rest.
   */
  private discover(): Promise<Catalog> {
    const now = this.now();
    if (!this.discovering || now - this.discovering.since >= this.refreshMs) {
      const round = this.ask().finally(() => {
        if (this.discovering?.round === round) this.discovering = undefined;
      });
      this.discovering = { round, since: now };
    }
    return this.discovering.round;
  }

  private async ask(): Promise<Catalog> {
    await Promise.all(
      this.members.map(async (member) => {
        if (!member.backend.models) return;
        try {
          this.said.set(member, await member.backend.models());
        } catch (error) {
          const detail = error instanceof BackendError ? error.detail : String(error);
          this.onFailure(member.backend.id, `could not say which models it serves: ${detail}`);
        }
      }),
    );
    this.catalog = this.build();
    return this.catalog;
  }

  /** The catalog from what the members said: the models in order, each with its pool. */
  private build(): Catalog {
    const byId = new Map<string, { model: ServedModel; members: PoolMember[] }>();
    for (const member of this.members) {
      for (const model of this.said.get(member) ?? []) {
        const entry = byId.get(model.id);
        if (!entry) {
          byId.set(model.id, { model: { ...model }, members: [member] });
          continue;
        }
        if (entry.members.includes(member)) continue;
        entry.members.push(member);
        const known = entry.model;
        if (model.version && known.version && model.version !== known.version) {
          this.onFailure(
            member.backend.id,
            `serves ${model.id} version ${model.version}, another member ${known.version}: one name, two weights`,
          );
        }
        known.version ??= model.version;
        if (model.context_length !== undefined) {
          known.context_length = Math.min(known.context_length ?? model.context_length, model.context_length);
        }
      }
    }
    const pools = new Map<string, BackendPool>();
    const used = new Set<string>();
    for (const [id, { members }] of byId) {
      const key = JSON.stringify([id, members.map((m) => this.members.indexOf(m))]);
      used.add(key);
      let pool = this.poolsByMembers.get(key);
      if (!pool) {
        pool = new BackendPool({ ...this.poolOptions, members });
        this.poolsByMembers.set(key, pool);
      }
      pools.set(id, pool);
    }
    for (const key of this.poolsByMembers.keys()) if (!used.has(key)) this.poolsByMembers.delete(key);
    return { models: [...byId.values()].map((e) => e.model), pools, at: this.now() };
  }
}
