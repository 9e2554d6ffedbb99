/**
 * Native `POST /v1/edits`: `{model, code, regions?}` → `{object: "edit", code, edits, usage}`.
 * With `regions` (character ranges of `code`), each is rewritten by infilling between the text
 * around it; without, the model repairs the code: it revises the tokens it confidently
 * disagrees with (`threshold`, `rounds`). `edits` gives each change as a range of the original
 * code with its text before and after.
 */
import { Hono } from "hono";
import { z } from "zod";
import { NodeEditRequest } from "../../../../adapters/src/index.ts";
import { backendFor } from "../backends.ts";
import type { EdgeEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { checkModel } from "../openai.ts";
import { jsonBody } from "../validate.ts";

export const EditsBody = z.object({ model: z.string().min(1) }).and(NodeEditRequest);

export const edits = new Hono<EdgeEnv>().post("/", jsonBody(EditsBody), async (c) => {
  const { model, ...request } = c.req.valid("json");
  checkModel(c, model);
  const backend = backendFor(c.env);
  if (!backend.edit) throw new ApiError(503, "edit_unavailable", "No backend here can edit code.");
  const result = await backend.edit(request);
  return c.json({
    object: "edit",
    model,
    code: result.code,
    edits: result.edits,
    usage: { forward_passes: result.forward_passes },
  });
});
