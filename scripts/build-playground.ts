/**
 * Builds the playground (apps/playground) into dist/playground, the edge's static assets:
 * main.ts bundled by esbuild (with eventsource-parser) as playground.js, beside index.html and
 * the stylesheet. wrangler runs it before `wrangler dev` and `wrangler deploy` ([build] in
 * wrangler.toml); `npm test` runs it first too.
 */
import { copyFileSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { build } from "esbuild";

const root = fileURLToPath(new URL("..", import.meta.url));
const source = join(root, "apps/playground");
const out = join(root, "dist/playground");

mkdirSync(out, { recursive: true });
await build({
  entryPoints: [join(source, "main.ts")],
  outfile: join(out, "playground.js"),
  bundle: true,
  format: "esm",
  target: "es2022",
  minify: true,
  sourcemap: "linked",
  logLevel: "warning",
});
for (const file of ["index.html", "playground.css"]) copyFileSync(join(source, file), join(out, file));
