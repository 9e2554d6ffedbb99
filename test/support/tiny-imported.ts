/**
 * Tiny imported models, one per family (models/python/tests/build_tiny_models.py: random
 * transformers checkpoints of each family's shape, imported by import_checkpoint.py), built once
 * per version of the code that makes them and shared by the test files that serve them.
 */
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, renameSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { venvPython } from "./python.ts";

export const TINY_IMPORTED = ["tiny-sdar", "tiny-fast-dllm", "tiny-bd3lm"] as const;
export type TinyImported = (typeof TINY_IMPORTED)[number];

const python = (path: string) => fileURLToPath(new URL(`../../models/python/${path}`, import.meta.url));
const SOURCES = [
  "tests/build_tiny_models.py",
  "tests/tiny_checkpoints.py",
  "import_checkpoint.py",
  "graph_io.py",
];

/** The model directories by name, built now unless this version of the builder already did. */
export function buildTinyImportedModels(): Record<TinyImported, string> {
  const hash = createHash("sha256");
  for (const source of SOURCES) hash.update(readFileSync(python(source)));
  const root = join(tmpdir(), `sprout-tiny-imported-${hash.digest("hex").slice(0, 16)}`);
  if (!existsSync(root)) {
    const staging = `${root}.${process.pid}`;
    rmSync(staging, { recursive: true, force: true });
    execFileSync(venvPython(), [python("tests/build_tiny_models.py"), "--out", staging], { stdio: "pipe" });
    try {
      renameSync(staging, root);
    } catch {
      rmSync(staging, { recursive: true, force: true }); // another process built it first
    }
  }
  return Object.fromEntries(TINY_IMPORTED.map((name) => [name, join(root, name)])) as Record<
    TinyImported,
    string
  >;
}
