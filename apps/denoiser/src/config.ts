/** The node's model directories from its environment (main.ts; scripts/start.ts reads the first). */

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
