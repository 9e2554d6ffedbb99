/**
 * The benchmarks' MBPP prompts and candidates are models/python/mbpp.py's (the one owner of those
 * rules): the test split in task-id order, from SPROUT_EVAL_DIR, and its candidate rule.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { candidates, mbppTasks } from "../bench/quality.ts";

const task = (id: number) => ({
  task_id: id,
  text: `Add two numbers (${id}).`,
  code: `def helper():\n    pass\n\ndef add${id}(a, b):\n    return a + b`,
  test_list: [`assert add${id}(1, 2) == 3`],
  test_setup_code: "",
});

describe("bench/quality.ts reads MBPP through mbpp.py", () => {
  const saved = process.env.SPROUT_EVAL_DIR;
  beforeAll(() => {
    const dir = mkdtempSync(join(tmpdir(), "sprout-eval-"));
    mkdirSync(join(dir, "mbpp"));
    const lines = [600, 12, 3, 11].map((id) => JSON.stringify(task(id)));
    writeFileSync(join(dir, "mbpp", "mbpp.jsonl"), `${lines.join("\n")}\n`);
    process.env.SPROUT_EVAL_DIR = dir;
  });
  afterAll(() => {
    if (saved === undefined) delete process.env.SPROUT_EVAL_DIR;
    else process.env.SPROUT_EVAL_DIR = saved;
  });

  it("takes the test split (task ids 11-510) in order, prompting for the function the tests call", () => {
    const tasks = mbppTasks(5);
    expect(tasks.map((t) => t.task_id)).toEqual([11, 12]);
    expect(tasks[0]).toEqual({
      task_id: 11,
      entry_point: "add11",
      prompt: '"""Add two numbers (11).\nassert add11(1, 2) == 3\n"""\ndef add11(',
    });
    expect(mbppTasks(1)).toHaveLength(1);
  });

  it("cuts candidates by mbpp.py's rule", () => {
    expect(
      candidates([
        { task_id: 11, completion: "a, b):\n    s = '''\nx\n'''\n    return s\nprint(", cut_off: false },
        { task_id: 12, completion: "a, b):\n    return a\n    y = (", cut_off: true },
      ]),
    ).toEqual(["def add11(a, b):\n    s = '''\nx\n'''\n    return s\n", "def add12(a, b):\n    return a\n"]);
    expect(candidates([])).toEqual([]);
  });
});
