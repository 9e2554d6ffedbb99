/** The edge worker's entry point (wrangler.toml `main`). */
import { createEdgeApp } from "./app.ts";

export { KeyLimiter } from "./limiter.ts";

export default createEdgeApp();
