import { describe, expect, it } from "vitest";
import { checkPythonSyntax } from "./syntax.ts";

const valid: Record<string, string> = {
  "a function": "def add(a, b):\n    return a + b\n",
  "a class with a docstring":
    'class Point:\n    """A point."""\n\n    def __init__(self, x):\n        self.x = x\n',
  "f-strings": 'name = "x"\nprint(f"{name!r:>10} {name=} {{braces}}")\n',
  decorators: "@functools.lru_cache(maxsize=None)\n@staticmethod\ndef f(n):\n    return n\n",
  async:
    "async def main():\n    async with lock:\n        await asyncio.sleep(1)\n    async for x in xs:\n        pass\n",
  "a match statement":
    "match command.split():\n    case [action]:\n        pass\n    case [action, obj]:\n        pass\n    case _:\n        pass\n",
  "the walrus operator": "while (chunk := f.read(10)):\n    print(chunk)\n",
  "type hints":
    "def f(xs: list[int], d: dict[str, int] | None = None) -> tuple[int, ...]:\n    y: int = 0\n    return (y,)\n",
  "try / except / else / finally":
    "try:\n    x = 1\nexcept (ValueError, KeyError) as e:\n    raise\nelse:\n    pass\nfinally:\n    pass\n",
  "comprehensions and lambdas":
    "squares = {k: v ** 2 for k, v in d.items() if v}\nkey = lambda p: (-p[1], p[0])\n",
  "tab indentation with CRLF line endings": "def f(x):\r\n\tif x:\r\n\t\treturn 1\r\n\treturn 2",
  "a bracketed line continued anywhere": "def f():\n    return g(1,\n  2) + \\\n        3\n",
  semicolons: "x = 1; y = 2;\nif x: a; b\nelse: c\nclass A: pass\n",
  "the empty string": "",
  "a comment only": "# nothing here\n",
  "a line continued into a blank line": 'x = \\\n"a" \\\n\n# done\ny = 1\n',
  "Python 3 uses of `print` and `*`":
    "print >> sys.stderr, 'x'\nhead, *rest = xs\nf(*args, *[1] * 3, *a[1].b(), **kw)\nt = (*xs,)\nfor x in *a, *b:\n    pass\n",
};

describe("checkPythonSyntax on valid code", () => {
  it.each(Object.entries(valid))("accepts %s", async (_, code) => {
    expect(await checkPythonSyntax(code)).toEqual({ ok: true });
  });
});

const invalid: [name: string, code: string, line: number][] = [
  ["an unclosed paren", "def f(x):\n    return g(x\n\ny = 1\n", 2],
  ["a body that is not indented", "def f():\nreturn 1\n", 2],
  ["an empty block at the end", "x = 1\nif x:\n", 2],
  ["a doubled operator", "y = 2\nx = = 1\n", 2],
  ["a missing colon", "for i in range(3)\n    print(i)\n", 1],
  ["a stray paren", "x = 1\ny = x + 1)\n", 2],
  ["an unexpected indent", "def f():\n    x = 1\n      y = 2\n", 3],
  ["an unindent to no outer level", "def f():\n    if x:\n        a\n  b\n", 4],
  ["an `else` misaligned with its `if`", "if x:\n    a\n  else:\n    b\n", 3],
  ["an indented first line", "  x = 1\n", 1],
  ["a tab that Python cannot compare with spaces", "if x:\n        a\n\tb\n", 3],
  ["a block under spaces indented with a tab", "def f():\n    if x:\n\ty = 1\n", 3],
  ["a lone carriage return as a line break", "x = 1\ry = 2\r  z = 3\r", 3],
  ["a Python 2 print statement", "def f():\n    print 'hi'\n", 2],
  ["two statements on one line", "def f(d1, d2):\n    return Counter(d1)  Counter(d2)\n", 2],
  ["a starred operand", "def volume(l):\n    return l *  * l\n", 2],
  ["a starred expression in parentheses", "x = 1\nwhile ( * i <= n):\n    pass\n", 2],
  ["a starred expression alone in parentheses", "x = 1\ny = (*x)\n", 2],
  ["a starred subscript as an operand", "for i in r:\n    dp[i] = dp[i - 1] +  * dp[i - 2];\n", 2],
  ["an unterminated string", "x = 1\ns = 'abc\n", 2],
  ["a keyword as a name", "def f():\n    class = 1\n", 2],
];

describe("checkPythonSyntax on invalid code", () => {
  it.each(invalid)("refuses %s, on the right line", async (_, code, line) => {
    expect(await checkPythonSyntax(code)).toMatchObject({ ok: false, error: { line } });
  });

  it("says what is wrong, and where", async () => {
    expect(await checkPythonSyntax("def f(:\n    pass\n")).toEqual({
      ok: false,
      error: { line: 1, column: 7, message: "missing `)`" },
    });
    expect(await checkPythonSyntax("x = 1)\n")).toEqual({
      ok: false,
      error: { line: 1, column: 6, message: "syntax error near `)`" },
    });
    expect(await checkPythonSyntax("def f():\nreturn 1\n")).toEqual({
      ok: false,
      error: { line: 2, column: 1, message: "expected an indented block" },
    });
  });

  it("reports the first problem in document order", async () => {
    const code = "def f():\n    x = (1\n\ndef g():\n      y = 1\n     z = 2\n";
    expect(await checkPythonSyntax(code)).toMatchObject({ ok: false, error: { line: 2 } });
  });

  it("reuses one parser across many concurrent checks", async () => {
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) => checkPythonSyntax(i % 2 ? `x = ${i}\n` : `x = (${i}\n`)),
    );
    expect(results.map((r) => r.ok)).toEqual(Array.from({ length: 50 }, (_, i) => i % 2 === 1));
  });
});
