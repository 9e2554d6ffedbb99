/** The edge worker's entry point (wrangler.toml `main`). */
import { createEdgeApp } from "./app.ts";

export default createEdgeApp();
