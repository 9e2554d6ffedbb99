/**
 * Sprout's protocol: every message that crosses a process boundary, each defined once as a zod
 * schema, with its TypeScript type inferred from it. zod only: no HTTP, no model code, nothing
 * of the other rooms, so every room may import it (biome.json enforces both directions).
 *
 * - requests.ts: what a node is asked (generate, verify, edit); every `Backend` takes these.
 * - events.ts: a generation's events, from the model runtime through the node and adapters to the edge.
 * - results.ts: a verification and an edit result.
 * - node.ts: the node's version header and error body.
 * - public.ts: the edge's native bodies, answers, event stream and error body.
 */
export * from "./events.ts";
export * from "./node.ts";
export * from "./public.ts";
export * from "./requests.ts";
export * from "./results.ts";
