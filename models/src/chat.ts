/**
 * A conversation as the prompt a model reads. One owner for it: the edge sends messages as data
 * (the node request's `messages`), and the node turns them into token ids here.
 *
 * A model with a chat template (`chat_template` in its manifest: an imported checkpoint's own
 * Jinja template, e.g. Qwen's ChatML) gets that template rendered with @huggingface/jinja, as
 * Hugging Face's `apply_chat_template` renders it: `messages`, `add_generation_prompt: true`,
 * `tools`/`documents` none, `bos_token`/`eos_token` (the texts of the manifest's bos and first
 * eos id). Two differences, both on purpose:
 *
 * - Message text is text. The template's own text is read with the tokenizer's control tokens
 *   recognized (its `<|im_start|>`, `<|im_end|>`…), every message's content as plain text, the
 *   same way a completion's prompt is (tokenizer.ts): a user who writes `<|im_end|>` gets the
 *   characters, never the end of their turn. How: before rendering, every spelling of a control
 *   token in a content (and a content's start or end that could join the template's text into
 *   one) is broken by a mark, a private-use character found nowhere in the conversation or the
 *   template; the rendered text is split at the control tokens found in it, which can then only
 *   be the template's; the marks are removed from the text between them, and that text is
 *   encoded as text. So the template may still trim or test a content as it likes, and the
 *   template's text and a content that meet without a control token between them are encoded
 *   together, as Hugging Face encodes them (the ids equal `apply_chat_template`'s whenever no
 *   content spells a control token). A consequence: a template's tests for control tokens in a
 *   content are false (Qwen3's template does not split an earlier answer's `<think>…</think>`
 *   off: that text stays, as text).
 * - A conversation whose last message is the assistant's is continued (Hugging Face's
 *   `continue_final_message`): rendered without the generation prompt and cut after that
 *   message's content, so the model writes on from it (a prefill). Cut after the content as
 *   written where the template kept it so: Hugging Face cuts after the trimmed content, which
 *   would drop the final newline of a prefill such as `def f(n):\n`.
 *
 * A model without a template (Sprout's own: it completes code and was never trained on
 * conversations) reads `chatPrompt`'s text, a completion's prompt like any other.
 */
import { Template } from "@huggingface/jinja";
import type { Manifest } from "./manifest.ts";
import { DecodeInputError } from "./prompt.ts";
import type { TextTokenizer } from "./tokenizer.ts";

export interface ChatMessage {
  /** system, developer, user or assistant; a template reads a developer message as a system one. */
  role: string;
  content: string;
}

/**
 * Sprout's docstring convention, for models without a chat template: instructions (system,
 * developer and user messages) become docstrings, `"""\n<content>\n"""\n`, as its training data
 * reads, and earlier assistant messages the code they wrote, each followed by a newline. When the
 * last message is the assistant's, its content is a prefill: the model continues it (no newline
 * added), e.g. `def fibonacci(n):\n` to get a body.
 */
export function chatPrompt(messages: readonly ChatMessage[]): string {
  return messages
    .map((m, i) => {
      if (m.role !== "assistant") return `"""\n${m.content.trim()}\n"""\n`;
      return i === messages.length - 1 ? m.content : `${m.content.replace(/\n*$/, "")}\n`;
    })
    .join("");
}

/** Whether the model renders conversations with its own template (else `chatPrompt`). */
export const hasChatTemplate = (manifest: Pick<Manifest, "chat_template">): boolean =>
  typeof manifest.chat_template === "string" && manifest.chat_template.length > 0;

export interface ChatOptions {
  /** More template variables, as `apply_chat_template`'s keyword arguments (e.g. Qwen3's `enable_thinking`). */
  variables?: Record<string, unknown>;
}

/**
 * The token ids of a conversation's prompt under the model's chat template: the rendered
 * template (see the module comment), all of it, for the model to continue. (A model without a
 * template reads `chatPrompt`'s text as a completion prompt: prompt.ts's `promptTokens`.)
 * Throws DecodeInputError when the template refuses the conversation (`raise_exception`).
 */
export function chatPromptIds(
  manifest: Pick<Manifest, "chat_template" | "special_tokens">,
  tokenizer: TextTokenizer,
  messages: readonly ChatMessage[],
  options: ChatOptions = {},
): number[] {
  if (messages.length === 0) throw new DecodeInputError("a conversation needs at least one message");
  const source = manifest.chat_template;
  if (!source) throw new Error("chatPromptIds needs a model with a chat template");
  const tokenText = (id: number | null | undefined) =>
    typeof id === "number" ? tokenizer.decode([id]) : undefined;
  const bosToken = tokenText(manifest.special_tokens.bos);
  const eosToken = tokenText(manifest.special_tokens.eos);

  const controls = tokenizer.controlTokens;
  const finder = controlFinder(controls);
  const mark = freeMark([source, bosToken ?? "", eosToken ?? "", ...messages.map((m) => m.content)]);
  const contents = messages.map((m) => defuse(m.content, controls, finder, mark));
  const prefill = messages.at(-1)?.role === "assistant";
  let rendered: string;
  try {
    rendered = template(source).render({
      ...options.variables,
      messages: messages.map((m, i) => ({
        role: m.role === "developer" ? "system" : m.role,
        content: contents[i],
      })),
      add_generation_prompt: !prefill,
      tools: null,
      documents: null,
      ...(bosToken === undefined ? {} : { bos_token: bosToken }),
      ...(eosToken === undefined ? {} : { eos_token: eosToken }),
    });
  } catch (error) {
    throw new DecodeInputError(
      `the model's chat template refused the conversation: ${error instanceof Error ? error.message : String(error)}`,
    );
  }
  if (prefill) {
    // As Hugging Face's continue_final_message, cut after the last message's content; as written
    // where the template kept it so (Hugging Face cuts after the trimmed content: a prefill's
    // final newline, as in `def f(n):\n`, would be lost), else trimmed.
    const content = contents.at(-1) ?? "";
    const whole = rendered.lastIndexOf(content);
    const last = whole >= 0 ? content : content.trim();
    const at = whole >= 0 ? whole : rendered.lastIndexOf(last);
    if (at < 0) {
      throw new DecodeInputError(
        "the model's chat template does not show the last (assistant) message as written: it cannot be continued",
      );
    }
    rendered = rendered.slice(0, at + last.length);
  }
  return encodeRendered(rendered, controls, finder, mark, tokenizer);
}

const templates = new Map<string, Template>();

function template(source: string): Template {
  let parsed = templates.get(source);
  if (!parsed) {
    parsed = new Template(source);
    templates.set(source, parsed);
  }
  return parsed;
}

/** Finds control tokens in a text, the longest at each place (as the tokenizer matches its added tokens). */
function controlFinder(controls: ReadonlyMap<string, number>): RegExp | undefined {
  const texts = [...controls.keys()].filter((t) => t.length > 0).sort((a, b) => b.length - a.length);
  if (texts.length === 0) return undefined;
  return new RegExp(texts.map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")).join("|"), "g");
}

/** A private-use character none of `texts` holds. */
function freeMark(texts: readonly string[]): string {
  for (let code = 0xe000; code <= 0xf8ff; code++) {
    const mark = String.fromCharCode(code);
    if (!texts.some((t) => t.includes(mark))) return mark;
  }
  throw new DecodeInputError("the conversation uses every private-use character");
}

/**
 * `content` with a mark after the first character of every control token it spells, before it
 * when it starts with what ends a control token, and after it when it ends with what begins one,
 * so that no control token can be found in the rendered text using any of its characters.
 */
function defuse(
  content: string,
  controls: ReadonlyMap<string, number>,
  finder: RegExp | undefined,
  mark: string,
): string {
  if (!finder || content === "") return content;
  let text = content;
  // Overlapping spellings are found on a later pass; each pass breaks at least one.
  for (let found = true; found; ) {
    found = false;
    text = text.replace(finder, (token) => {
      found = true;
      return `${token.slice(0, 1)}${mark}${token.slice(1)}`;
    });
  }
  const tokens = [...controls.keys()];
  const splits = (t: string) => Array.from({ length: Math.max(t.length - 1, 0) }, (_, i) => i + 1);
  const endsOne = tokens.some((t) =>
    splits(t).some((k) => content.startsWith(t.slice(k)) || t.slice(k).startsWith(content)),
  );
  const beginsOne = tokens.some((t) =>
    splits(t).some((k) => content.endsWith(t.slice(0, k)) || t.slice(0, k).endsWith(content)),
  );
  return `${endsOne ? mark : ""}${text}${beginsOne ? mark : ""}`;
}

/** The rendered template's ids: its control tokens as themselves, the text between them (marks removed) as text. */
function encodeRendered(
  rendered: string,
  controls: ReadonlyMap<string, number>,
  finder: RegExp | undefined,
  mark: string,
  tokenizer: TextTokenizer,
): number[] {
  const ids: number[] = [];
  const text = (part: string) => {
    const plain = part.replaceAll(mark, "");
    if (plain.length > 0) ids.push(...tokenizer.encode(plain));
  };
  let from = 0;
  for (const match of finder ? rendered.matchAll(finder) : []) {
    text(rendered.slice(from, match.index));
    ids.push(controls.get(match[0]) as number);
    from = match.index + match[0].length;
  }
  text(rendered.slice(from));
  return ids;
}
