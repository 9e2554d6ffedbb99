/**
 * Native `POST /v1/edits`: the protocol's `EditsBody` (`{model, code, regions?, …}`) → its
 * `EditsResponse` (`{object: "edit", model, code, edits, usage}`). With `regions` (character
 * ranges of `code`), each is rewritten by infilling between the text around it; without, the
 * model repairs the code: it revises the tokens it confidently disagrees with (`threshold`,
 * `rounds`). `edits` gives each change as a range of the original code with its text before and
 * after. The edit runs on the model the body names. The tokens the edit read and wrote are booked against the key (metered.ts).
 */
import { Hono } from "hono";
import { EditsBody, type EditsResponse } from "../../../../protocol/src/index.ts";
import type { EdgeEnv } from "../env.ts";
import { ApiError } from "../errors.ts";
import { checkModel } from "../openai.ts";
import { jsonBody } from "../validate.ts";

export const edits = new Hono<EdgeEnv>().post("/", jsonBody(EditsBody), async (c) => {
  const request = c.req.valid("json");
  const { model } = request;
  await checkModel(c, model);
  const backend = c.var.backend;
  if (!backend.edit) throw new ApiError(503, "edit_unavailable", "No backend here can edit code.");
  // The client's signal: when it leaves, the node cancels the edit's work (its scheduler drops it).
  const result = await backend.edit(request, { signal: c.req.raw.signal });
  return c.json({
    object: "edit",
    model,
    code: result.code,
    edits: result.edits,
    usage: { tokens: result.tokens, forward_passes: result.forward_passes },
  } satisfies EditsResponse);
});
