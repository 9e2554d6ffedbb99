/**
 * A Python syntax check with tree-sitter's Python grammar (WebAssembly from node_modules, loaded once).
 *
 * tree-sitter never fails: it recovers, marking what it skipped (ERROR) or invented (MISSING), and we
 * report the first such node in document order. Its grammar is looser than CPython's, so we add what
 * it let through in broken code, measured against `ast.parse` on the MBPP solutions with one
 * character deleted or one line re-indented: indentation, compared as Python's tokenizer compares it;
 * empty blocks (`def f():\nreturn 1`); two statements on one line with no `;`; Python 2 `print x`
 * and `exec x`; a `*` as an operand or in parentheses (`a * *b`, `(*a)`). With these, the two agree
 * on 99.8% of one-character deletions and 99.9% of re-indented lines (100% on the solutions).
 *
 * Still accepted, though Python refuses them: a broken line the grammar joins to the next one
 * (`x =` + `y = 1` reads as `x = y = 1`, `els:` + an indented body as an annotation), a few other
 * `*` misplacements (`[*a or b]`), argument order (`def f(a=1, b)`, `f(a=1, b)`), targets Python
 * cannot assign or delete (`del f()`), `0777`, and the 3.12 syntax (`type X = int`, `def f[T]()`).
 * Refused, though `ast.parse` takes them: a bracketed line continued left of its block's
 * indentation, a starred `[` or `(` after a comma in an unbracketed list (`x = a, *[b]`), and what
 * only the compiler refuses (`x = *a`, `from __future__ import *`).
 * Columns count UTF-16 code units, not Python's UTF-8 bytes.
 */
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import { Language, type Node, Parser } from "web-tree-sitter";
import type { SyntaxResult } from "../../protocol/src/index.ts";

export type { SyntaxResult };
export type PythonSyntaxError = Extract<SyntaxResult, { ok: false }>["error"];

let parser: Promise<Parser> | undefined;

function pythonParser(): Promise<Parser> {
  parser ??= (async () => {
    await Parser.init();
    const packageDir = dirname(createRequire(import.meta.url).resolve("tree-sitter-python/package.json"));
    const parser = new Parser();
    parser.setLanguage(await Language.load(join(packageDir, "tree-sitter-python.wasm")));
    return parser;
  })();
  return parser;
}

export async function checkPythonSyntax(code: string): Promise<SyntaxResult> {
  // Python reads a lone "\r" as a line break; tree-sitter does not.
  const text = code.replace(/\r\n?/g, "\n");
  const tree = (await pythonParser()).parse(text);
  if (!tree) throw new Error("tree-sitter returned no tree");
  try {
    const error = firstError(tree.rootNode, text);
    return error ? { ok: false, error } : { ok: true };
  } finally {
    tree.delete();
  }
}

/** Pre-order, so that the first problem in document order wins. */
function firstError(node: Node, text: string): PythonSyntaxError | undefined {
  if (node.isError) return errorWithin(node, text);
  const message = problem(node);
  if (message) return at(message === EMPTY_BLOCK ? (nextStatement(node) ?? node) : node, message);
  let lineUp: string | undefined; // the indentation that the statements (or clauses) under `node` share
  let previous: Node | undefined;
  for (const child of node.children) {
    if (!child) continue;
    if (alignsWithSiblings(node, child)) {
      const own = indentation(child, text);
      // tree-sitter also takes two statements on one line with no `;` between them.
      if (own === undefined && previous && previous.type !== ";") return at(child, near(text, child, child));
      if (own !== undefined) {
        lineUp ??= sharedIndentation(node, own, text);
        if (lineUp === undefined || !same(own, lineUp)) return at(child, "inconsistent indentation");
      }
    }
    const error = firstError(child, text);
    if (error) return error;
    previous = child;
  }
  return undefined;
}

/** An ERROR node often starts with the complete statements before the real problem: skip those. */
function errorWithin(error: Node, text: string): PythonSyntaxError {
  for (const child of error.children) {
    if (!child) continue;
    if (child.isError) return errorWithin(child, text);
    if (!/_(statement|definition)$/.test(child.type)) return at(child, near(text, child, error));
    const inner = firstError(child, text);
    if (inner) return inner;
  }
  return at(error, near(text, error, error));
}

const EMPTY_BLOCK = "expected an indented block";
const MISPLACED_STAR = "cannot use `*` here";
const OPERATORS = new Set(["binary_operator", "comparison_operator", "boolean_operator"]);
/** Where tree-sitter takes a starred expression and Python does not: an operand, or in parentheses. */
const NO_STAR = new Set([...OPERATORS, "parenthesized_expression"]);
/** What a leading `*` covers in Python, where tree-sitter may star only the first part. */
const STAR_COVERS = new Set([...OPERATORS, "subscript", "call", "attribute"]);

/** What tree-sitter accepts in `node` itself and Python does not. */
function problem(node: Node): string | undefined {
  const type = node.type; // each read is a call into the WebAssembly module
  if (node.isMissing) return node.isNamed ? `missing ${type}` : `missing \`${type}\``;
  if (type === "block" && node.namedChildren.every((child) => child?.type === "comment")) return EMPTY_BLOCK;
  // `print >>f, x` is also a Python 3 expression.
  if (type === "exec_statement" || (type === "print_statement" && node.child(1)?.type !== "chevron")) {
    return `Python 2 \`${type.replace("_statement", "")}\` statement`;
  }
  if (type === "list_splat" && NO_STAR.has(starredExpression(node).parent?.type ?? "")) return MISPLACED_STAR;
  // Without a comma, `(*a)` is no tuple (tree-sitter makes it one).
  const lonelySplat = type === "tuple" && node.childCount === 3 && node.child(1)?.type === "list_splat";
  return lonelySplat ? MISPLACED_STAR : undefined;
}

/** What the `*` of a list splat covers: `*a[i] * b` is `*(a[i] * b)`. */
function starredExpression(splat: Node): Node {
  let starred = splat;
  while (starred.parent && !starred.previousSibling && STAR_COVERS.has(starred.parent.type)) {
    starred = starred.parent;
  }
  return starred;
}

function near(text: string, from: Node, to: Node): string {
  const firstLine = text.slice(from.startIndex, to.endIndex).trim().split("\n")[0] ?? "";
  return `syntax error near \`${firstLine.length > 20 ? `${firstLine.slice(0, 20)}…` : firstLine}\``;
}

/** Where Python reports an empty block: at the statement after it. */
function nextStatement(node: Node): Node | undefined {
  for (let ancestor: Node | null = node; ancestor; ancestor = ancestor.parent) {
    let next = ancestor.nextSibling;
    while (next?.type === "comment") next = next.nextSibling;
    if (next) return next;
  }
  return undefined;
}

function at(node: Node, message: string): PythonSyntaxError {
  return { line: node.startPosition.row + 1, column: node.startPosition.column + 1, message };
}

// Indentation. tree-sitter lets a block's statements sit anywhere deeper than the first one, and
// counts a tab as 8 more columns where Python goes to the next multiple of 8.

const CLAUSES = new Set([
  "elif_clause",
  "else_clause",
  "except_clause",
  "except_group_clause",
  "finally_clause",
]);

/** Whether `child` is a statement or a clause: it begins a line, in line with the others. */
function alignsWithSiblings(parent: Node, child: Node): boolean {
  const type = child.type;
  if (type === "comment" || type === "line_continuation" || type === ";") return false;
  if (parent.type === "module" || parent.type === "block") return true;
  // A decorated definition's `def` or `class` lines up with its decorators.
  return CLAUSES.has(type) || parent.type === "decorated_definition";
}

/**
 * The indentation that the statements (or clauses) under `node` must share, given the first one's;
 * none when even the first is wrong (a block must be indented deeper than its header).
 */
function sharedIndentation(node: Node, first: string, text: string): string | undefined {
  if (node.type === "module") return "";
  if (node.type !== "block") return indentation(node, text) ?? first;
  const header = node.parent ? indentation(node.parent, text) : undefined;
  return header === undefined || deeper(first, header) ? first : undefined;
}

/** The whitespace before `node` when it begins a line. */
function indentation(node: Node, text: string): string | undefined {
  const before = text.slice(text.lastIndexOf("\n", node.startIndex - 1) + 1, node.startIndex);
  return /^[ \t\f]*$/.test(before) ? before : undefined;
}

// Python compares indentations twice, with tabs to multiples of 8 and of 1, and refuses any
// comparison on which the two disagree (TabError).

function same(a: string, b: string): boolean {
  return a === b || (columns(a, 8) === columns(b, 8) && columns(a, 1) === columns(b, 1));
}

function deeper(a: string, b: string): boolean {
  return columns(a, 8) > columns(b, 8) && columns(a, 1) > columns(b, 1);
}

function columns(indentation: string, tabSize: number): number {
  let column = 0;
  for (const char of indentation) {
    if (char === "\t") column = (Math.floor(column / tabSize) + 1) * tabSize;
    else column = char === "\f" ? 0 : column + 1;
  }
  return column;
}
