/** The node's settings from its environment that main.ts and scripts/start.ts share. */

/**
 * `SPROUT_MODELS` (comma-separated directories; the first serves requests that name no model),
 * or `SPROUT_MODEL_DIR` (one directory, the older name), or `fallback`. Throws, with a message
 * for the operator, when both are set (which wins would be a guess) or a list holds an empty entry.
 */
export function modelDirs(env: Record<string, string | undefined>, fallback: string): string[] {
  const list = env.SPROUT_MODELS;
  const one = env.SPROUT_MODEL_DIR;
  if (list && one) {
    throw new Error(
      "set SPROUT_MODELS (a comma-separated list) or SPROUT_MODEL_DIR (one directory), not both",
    );
  }
  if (one) return [one];
  if (!list) return [fallback];
  const dirs = list.split(",").map((dir) => dir.trim());
  if (dirs.some((dir) => dir === "")) {
    throw new Error(`SPROUT_MODELS has an empty entry: ${JSON.stringify(list)}`);
  }
  return dirs;
}

/**
 * `SPROUT_MAX_CONTEXT`: the most tokens of context any request may fill on this node, below each
 * model's manifest `context_length` (a model with a smaller one keeps its own); undefined when
 * unset. Throws, with a message for the operator, for anything but a positive integer.
 */
export function maxContext(env: Record<string, string | undefined>): number | undefined {
  const raw = env.SPROUT_MAX_CONTEXT;
  if (raw === undefined || raw.trim() === "") return undefined;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) {
    throw new Error(`SPROUT_MAX_CONTEXT must be a positive integer (tokens), not ${JSON.stringify(raw)}`);
  }
  return value;
}
