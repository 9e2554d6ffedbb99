import { createHash, timingSafeEqual } from "node:crypto";
import type { MiddlewareHandler } from "hono";

export interface EdgeSecretOptions {
  /** The secret shared with the edge; requests must carry `Authorization: Bearer <secret>`. */
  secret: string;
}

const digest = (value: string) => createHash("sha256").update(value).digest();

/** Lets through only requests from the edge. Compares digests in constant time. */
export const edgeSecret = ({ secret }: EdgeSecretOptions): MiddlewareHandler => {
  const expected = digest(secret);
  return async function edgeSecret(c, next) {
    const header = c.req.header("authorization") ?? "";
    const presented = header.startsWith("Bearer ") ? header.slice(7) : "";
    if (!timingSafeEqual(digest(presented), expected)) {
      return c.json({ error: { code: "unauthorized", message: "this node serves only its edge" } }, 401);
    }
    await next();
  };
};
