/**
 * The OpenAPI 3.1 document of the edge, generated from the same zod schemas that validate the
 * requests and define the answers (the protocol's, protocol/src/public.ts, and the OpenAI
 * routes'; zod's JSON Schema output is draft 2020-12, which OpenAPI 3.1 uses), served at
 * `/openapi.json`, with a plain docs page at `/docs` that renders it (no CDN, no script).
 */
import { z } from "zod";
import {
  EditsBody,
  EditsResponse,
  ErrorBody,
  GenerateBody,
  NativeEvent,
  VerifyBody,
  VerifyResponse,
} from "../../../protocol/src/index.ts";
import { ChatRequest } from "./routes/chat.ts";
import { CompletionRequest } from "./routes/completions.ts";

const schema = (type: z.ZodType, io: "input" | "output" = "input") => {
  const { $schema: _, ...rest } = z.toJSONSchema(type, { io, unrepresentable: "any" }) as Record<
    string,
    unknown
  >;
  return rest;
};
const ref = (name: string) => ({ $ref: `#/components/schemas/${name}` });
const json = (name: string) => ({ "application/json": { schema: ref(name) } });
const errors = {
  "400": { description: "Invalid body (the message names the field)", content: json("Error") },
  "401": { description: "Missing or unknown API key", content: json("Error") },
  "404": {
    description: "Unknown model (code model_not_found, param model; the message names the available models)",
    content: json("Error"),
  },
  "413": { description: "Body over 1 MiB", content: json("Error") },
  "503": { description: "No model backend available", content: json("Error") },
};

export function openApiDocument() {
  return {
    openapi: "3.1.0",
    info: {
      title: "Sprout",
      version: "0.1.0",
      description:
        "A discrete-diffusion code model behind an OpenAI-compatible API, plus native endpoints for what only diffusion does: block streams with intermediate steps and edits, a speed/quality dial, resuming, self-verification.",
    },
    security: [{ bearer: [] }],
    paths: {
      "/v1/models": {
        get: {
          summary:
            "Every model the edge's backends serve, the default (for a request naming none) first; each request goes only to backends serving its model",
          responses: {
            "200": {
              description:
                "{object: list, data: [{id, object: model, created, owned_by, context_length?}]}: context_length, where the backends say, is the tokens a request may fill",
            },
            ...errors,
          },
        },
      },
      "/v1/completions": {
        post: {
          summary: "OpenAI-compatible completion (suffix infills); streamed as data: chunks then [DONE]",
          requestBody: { required: true, content: json("CompletionRequest") },
          responses: { "200": { description: "A text_completion, or an SSE stream of them" }, ...errors },
        },
      },
      "/v1/chat/completions": {
        post: {
          summary:
            "OpenAI-compatible chat completion: the node renders the messages with the model's chat template (message text stays text), or as a code prompt of docstrings for a model without one; a last assistant message is continued",
          requestBody: { required: true, content: json("ChatRequest") },
          responses: { "200": { description: "A chat.completion, or an SSE stream of chunks" }, ...errors },
        },
      },
      "/v1/generate": {
        post: {
          summary:
            "Native generation of a prompt (and suffix) or of messages (rendered by the node as for chat): named SSE events (start, step, edit, block, verify, done, error)",
          requestBody: { required: true, content: json("GenerateRequest") },
          responses: {
            "200": {
              description:
                "text/event-stream; each event is named by its type, and its data is one GenerateEvent (which carries that type)",
              content: { "text/event-stream": { schema: ref("GenerateEvent") } },
            },
            ...errors,
          },
        },
      },
      "/v1/edits": {
        post: {
          summary: "Native editing: rewrite marked regions of code by infilling, or repair it",
          requestBody: { required: true, content: json("EditsRequest") },
          responses: {
            "200": { description: "The edited code and its edits", content: json("EditsResponse") },
            ...errors,
          },
        },
      },
      "/v1/jobs": {
        post: {
          summary: "A background job (completion or edit): 202 with its id; webhooks report its end",
          responses: { "202": { description: "{id, object: job, status: queued}" }, ...errors },
        },
      },
      "/v1/jobs/{id}": {
        get: {
          summary: "A job's status, and its result or error once finished",
          responses: { "200": { description: "The job" }, ...errors },
        },
      },
      "/v1/webhooks": {
        post: {
          summary:
            "Register an endpoint for job.completed / job.failed; 201 with its whsec_ signing secret, shown once",
          responses: { "201": { description: "{id, url, events, secret}" }, ...errors },
        },
        get: {
          summary: "This key's webhook endpoints (without secrets)",
          responses: { "200": { description: "A list" } },
        },
      },
      "/v1/webhooks/{id}": {
        delete: {
          summary: "Remove a webhook endpoint",
          responses: { "204": { description: "Removed" }, ...errors },
        },
      },
      "/v1/verify": {
        post: {
          summary: "Self-verification: syntax, the model's score, a verdict; cached",
          requestBody: { required: true, content: json("VerifyRequest") },
          responses: {
            "200": { description: "The verification", content: json("VerifyResponse") },
            ...errors,
          },
        },
      },
    },
    components: {
      securitySchemes: { bearer: { type: "http", scheme: "bearer" } },
      schemas: {
        CompletionRequest: schema(CompletionRequest),
        ChatRequest: schema(ChatRequest),
        GenerateRequest: schema(GenerateBody),
        GenerateEvent: schema(NativeEvent, "output"),
        VerifyRequest: schema(VerifyBody),
        EditsRequest: schema(EditsBody),
        EditsResponse: schema(EditsResponse, "output"),
        VerifyResponse: schema(VerifyResponse, "output"),
        Error: schema(ErrorBody, "output"),
      },
    },
  };
}

/** A page that lists the document's endpoints and request fields, rendered here (no script). */
export function docsPage(document: ReturnType<typeof openApiDocument>): string {
  const html = (s: string) => s.replace(/[&<>"]/g, (ch) => `&#${ch.charCodeAt(0)};`);
  const schemas = document.components.schemas as Record<
    string,
    { properties?: Record<string, { description?: string }> }
  >;
  const sections = Object.entries(document.paths).flatMap(([path, methods]) =>
    Object.entries(
      methods as Record<
        string,
        { summary: string; requestBody?: { content: Record<string, { schema: { $ref: string } }> } }
      >,
    ).map(([method, op]) => {
      const name = op.requestBody?.content["application/json"]?.schema.$ref.split("/").pop();
      const fields = name ? Object.keys(schemas[name]?.properties ?? {}) : [];
      return `<section><h2><code>${method.toUpperCase()} ${html(path)}</code></h2><p>${html(op.summary)}</p>${
        fields.length > 0 ? `<p>Fields: ${fields.map((f) => `<code>${html(f)}</code>`).join(", ")}</p>` : ""
      }</section>`;
    }),
  );
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Sprout API</title>
<style>body{font:16px/1.5 system-ui,sans-serif;max-width:52rem;margin:2rem auto;padding:0 1rem}code{background:#f3f3f3;padding:0 .2em}</style></head>
<body><h1>${html(document.info.title)} API</h1><p>${html(document.info.description)}</p>
<p>Authenticate with <code>Authorization: Bearer &lt;key&gt;</code>. The full schema: <a href="/openapi.json">/openapi.json</a> (OpenAPI 3.1).</p>
${sections.join("\n")}</body></html>`;
}
