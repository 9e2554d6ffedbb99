import { existsSync } from "node:fs";
import { fileURLToPath } from "node:url";

/** The project's Python (.venv), which `npm test` creates first through scripts/python-env.sh. */
export function venvPython(): string {
  const python = fileURLToPath(new URL("../../.venv/bin/python", import.meta.url));
  if (!existsSync(python)) {
    throw new Error("no .venv: run `npm test` (or scripts/python-env.sh) once to create it, then vitest");
  }
  return python;
}
