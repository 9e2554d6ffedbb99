import { cpSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { loadModel, SHIPPED_MODEL_DIR } from "./index.ts";
import { DecodingSchema, loadManifest, ModelIntegrityError, SPROUT_DECODING } from "./manifest.ts";

describe("the model manifest", () => {
  let copy: string | undefined;
  afterEach(() => {
    if (copy) rmSync(copy, { recursive: true, force: true });
  });

  it("describes the shipped model and verifies every file", async () => {
    const manifest = await loadManifest(SHIPPED_MODEL_DIR);
    expect(manifest.special_tokens.mask).not.toBe(manifest.special_tokens.eos);
    expect(Object.keys(manifest.files)).toContain(manifest.graph.file);
    expect(Object.keys(manifest.graph.inputs)).toEqual(
      expect.arrayContaining(["input_ids", "positions", "past_key", "past_value", "attention_mask"]),
    );
  });

  it("refuses a model whose file no longer matches its sha256", async () => {
    copy = mkdtempSync(join(tmpdir(), "sprout-model-"));
    cpSync(SHIPPED_MODEL_DIR, copy, { recursive: true });
    const tokenizer = join(copy, "tokenizer.json");
    writeFileSync(tokenizer, readFileSync(tokenizer, "utf8").replace('"<|mask|>"', '"<|MASK|>"'));
    await expect(loadModel(copy)).rejects.toBeInstanceOf(ModelIntegrityError);
  });

  it("gives a manifest without decoding conventions Sprout's, and refuses an impossible set", async () => {
    const manifest = await loadManifest(SHIPPED_MODEL_DIR);
    expect(manifest.decoding).toEqual(SPROUT_DECODING);
    expect(manifest.special_tokens.eos_ids).toEqual([manifest.special_tokens.eos]);
    const firstTokenPass = { ...SPROUT_DECODING, commit: "pass_yields_next_first_token" };
    expect(DecodingSchema.safeParse(firstTokenPass).success).toBe(false); // needs logit_shift 1
    expect(DecodingSchema.safeParse({ ...firstTokenPass, logit_shift: 1 }).success).toBe(true);
  });
});
