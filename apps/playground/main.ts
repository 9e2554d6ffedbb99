/**
 * The playground served by the edge at `/`: a prompt (and optional suffix), the speed/quality
 * dial, and a live view of diffusion — each block starts as placeholders and fills in step by
 * step, from the native event stream of `POST /v1/generate` with `emit_steps`. Edit mode sends the
 * code to `POST /v1/edits` (the selection is rewritten; no selection: repair).
 *
 * Built by scripts/build-playground.ts (esbuild) into dist/playground with index.html and the CSS.
 * The API key comes from the key field, remembered in this browser's localStorage, or once from
 * the page's `#key=` fragment (which never reaches a server), as `npm start` prints it.
 */
import { type Connection, edit, generate, SproutApiError } from "../client/src/index.ts";

const $ = <T extends HTMLElement>(id: string) => document.getElementById(id) as T;
const keyInput = $<HTMLInputElement>("key");
const prompt = $<HTMLTextAreaElement>("prompt");
const suffix = $<HTMLTextAreaElement>("suffix");
const threshold = $<HTMLInputElement>("threshold");
const blockSize = $<HTMLSelectElement>("block-size");
const maxTokens = $<HTMLInputElement>("max-tokens");
const verify = $<HTMLInputElement>("verify");
const slow = $<HTMLInputElement>("slow");
const run = $<HTMLButtonElement>("generate");
const stop = $<HTMLButtonElement>("stop");
const output = $<HTMLPreElement>("output");
const errorLine = $<HTMLParagraphElement>("error");
const verdict = $<HTMLSpanElement>("verdict");

const KEY_STORAGE = "sprout-api-key";
const fragmentKey = new URLSearchParams(location.hash.slice(1)).get("key");
if (fragmentKey) {
  localStorage.setItem(KEY_STORAGE, fragmentKey);
  history.replaceState(null, "", location.pathname); // keep the key out of the address bar
}
keyInput.value = localStorage.getItem(KEY_STORAGE) ?? "";
keyInput.addEventListener("change", () => localStorage.setItem(KEY_STORAGE, keyInput.value.trim()));
threshold.addEventListener("input", () => {
  $("threshold-value").textContent = Number(threshold.value).toFixed(2);
});

let mode: "generate" | "edit" = "generate";
for (const button of document.querySelectorAll<HTMLButtonElement>(".modes button")) {
  button.addEventListener("click", () => {
    mode = button.dataset.mode as typeof mode;
    document.body.classList.toggle("mode-edit", mode === "edit");
    for (const other of document.querySelectorAll(".modes button"))
      other.classList.toggle("active", other === button);
    $("prompt-label").textContent = mode === "edit" ? "Code" : "Prompt";
    run.textContent = mode === "edit" ? "Edit" : "Generate";
  });
}

const connection = (): Connection => ({ url: "", key: keyInput.value.trim() });
const span = (text: string, className?: string) => {
  const element = document.createElement("span");
  element.textContent = text;
  if (className) element.className = className;
  return element;
};
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

const stats = {
  set(values: Partial<Record<"steps" | "tokens" | "tpf" | "speed", string | number>>) {
    for (const [name, value] of Object.entries(values)) $(`stat-${name}`).textContent = String(value);
  },
};

function showVerdict(result: { verdict: string; score: number; cached?: boolean } | null) {
  verdict.hidden = !result;
  if (!result) return;
  verdict.className = `verdict ${result.verdict}`;
  verdict.textContent = `${result.verdict.replace("_", " ")} · score ${result.score.toFixed(3)}${result.cached ? " · cached" : ""}`;
}

/** The view of a generation: prompt, committed blocks, the block being denoised, suffix. */
class DiffusionView {
  private committed = "";
  private block: (string | null)[] = [];

  constructor(
    private readonly before: string,
    private readonly after: string,
  ) {
    this.render();
  }

  step(state: (string | null)[]) {
    const fresh = state.map((token, i) => token !== null && (this.block[i] ?? null) === null);
    this.block = state;
    this.render(fresh);
  }

  finishBlock(text: string) {
    this.committed += text;
    this.block = [];
    this.render();
  }

  get text() {
    return this.committed;
  }

  private render(fresh: boolean[] = []) {
    const parts = [span(this.before, "prompt-text"), span(this.committed)];
    this.block.forEach((token, i) => {
      parts.push(token === null ? span("▒", "mask") : span(token, fresh[i] ? "fresh" : undefined));
    });
    if (this.after) parts.push(span(this.after, "prompt-text"));
    output.replaceChildren(...parts);
  }
}

let controller: AbortController | null = null;

async function runGeneration(signal: AbortSignal) {
  const view = new DiffusionView(prompt.value, suffix.value);
  const started = performance.now();
  let steps = 0;
  let tokens = 0;
  const events = generate(
    connection(),
    {
      prompt: prompt.value,
      suffix: suffix.value || undefined,
      max_tokens: Number(maxTokens.value) || 96,
      block_size: Number(blockSize.value),
      threshold: Number(threshold.value),
      emit_steps: true,
      verify: verify.checked,
    },
    signal,
  );
  for await (const event of events) {
    const seconds = (performance.now() - started) / 1000;
    if (event.type === "step") {
      steps += 1;
      view.step(event.state);
      const inBlock = event.state.filter((t) => t !== null).length;
      stats.set({ steps, tokens: tokens + inBlock, tpf: ((tokens + inBlock) / steps).toFixed(2) });
      if (slow.checked) await sleep(120);
    } else if (event.type === "block") {
      tokens += event.tokens ?? 0;
      view.finishBlock(event.text);
      stats.set({ tokens, speed: (tokens / seconds).toFixed(0) });
    } else if (event.type === "verify") {
      showVerdict(event);
    } else if (event.type === "done") {
      const { completion_tokens, forward_passes } = event.usage;
      stats.set({
        tokens: completion_tokens,
        tpf: forward_passes ? (completion_tokens / forward_passes).toFixed(2) : "–",
        speed: (completion_tokens / seconds).toFixed(0),
      });
    }
  }
}

async function runEdit(signal: AbortSignal) {
  const code = prompt.value;
  const { selectionStart: start, selectionEnd: end } = prompt;
  const regions = end > start ? [{ start, end }] : undefined;
  const started = performance.now();
  const result = await edit(connection(), { code, regions }, signal);
  // Highlight each edit where it lands in the new code (edits are ranges of the original).
  const parts: HTMLElement[] = [];
  let from = 0;
  for (const change of result.edits.toSorted((a, b) => a.start - b.start)) {
    parts.push(span(code.slice(from, change.start)), span(change.after || "⌫", "edited"));
    from = change.end;
  }
  parts.push(span(code.slice(from)));
  output.replaceChildren(...parts);
  const seconds = (performance.now() - started) / 1000;
  $("edit-summary").textContent =
    `${result.edits.length} edit${result.edits.length === 1 ? "" : "s"} · ${result.usage.forward_passes} forwards · ${seconds.toFixed(2)} s`;
}

run.addEventListener("click", async () => {
  controller?.abort();
  controller = new AbortController();
  const { signal } = controller;
  errorLine.hidden = true;
  showVerdict(null);
  stats.set({ steps: 0, tokens: 0, tpf: "–", speed: "–" });
  $("edit-summary").textContent = "";
  run.disabled = true;
  stop.disabled = false;
  try {
    await (mode === "edit" ? runEdit(signal) : runGeneration(signal));
  } catch (error) {
    if (!signal.aborted) {
      errorLine.hidden = false;
      errorLine.textContent =
        error instanceof SproutApiError
          ? `${error.status || "network"} ${error.code}: ${error.message}`
          : String((error as Error).message ?? error);
    }
  } finally {
    run.disabled = false;
    stop.disabled = true;
  }
});
stop.addEventListener("click", () => controller?.abort());
