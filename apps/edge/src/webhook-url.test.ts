import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { refuseWebhookUrl } from "./webhook-url.ts";

describe("webhook URLs", () => {
  it.each([
    "https://hooks.example.com/sprout",
    "https://203.0.113.7:8443/hook",
    "https://[2001:db8::1]/hook",
  ])("accepts %s", (url) => expect(refuseWebhookUrl(url, false)).toBeNull());

  it.each([
    ["http://hooks.example.com/", /https/],
    ["https://user:pw@hooks.example.com/", /credentials/],
    ["https://localhost/", /private/],
    ["https://127.0.0.1/", /private/],
    ["https://2130706433/", /private/], // 127.0.0.1 in decimal
    ["https://0177.0.0.1/", /private/], // in octal
    ["https://0x7f.1/", /private/], // in hex, shortened
    ["https://10.1.2.3/", /private/],
    ["https://172.20.0.1/", /private/],
    ["https://192.168.1.1/", /private/],
    ["https://169.254.169.254/latest/meta-data", /private/], // cloud metadata
    ["https://100.64.0.1/", /private/],
    ["https://0.0.0.0/", /private/],
    ["https://[::1]/", /private/],
    ["https://[::ffff:127.0.0.1]/", /private/],
    ["https://[::ffff:a9fe:a9fe]/", /private/],
    ["https://[fe80::1]/", /private/],
    ["https://[fd00::1]/", /private/],
    ["https://metadata.google.internal/", /private/],
    ["https://printer.local/", /private/],
    ["https://intranet/", /private/],
    ["https://localhost./", /private/], // a trailing dot: the same host
    ["https://metadata.google.internal./", /private/],
    ["https://127.1/", /private/], // shortened
    ["https://0/", /private/],
    ["https://①②⑦.0.0.1/", /private/], // full-width digits
    ["https://[::127.0.0.1]/", /private/], // IPv4-compatible
    ["https://[::ffff:0:7f00:1]/", /private/], // IPv4-translated
    ["https://[64:ff9b::a9fe:a9fe]/", /private/], // NAT64 of the metadata address
    ["https://[2002:7f00:1::]/", /private/], // 6to4 of 127.0.0.1
    ["https://[2001:0:4136:e378::1]/", /private/], // Teredo
    ["https://[fec0::1]/", /private/], // site-local
    ["ftp://hooks.example.com/", /https/],
    ["javascript:alert(1)", /https/],
    ["not a url", /not a URL/],
  ])("refuses %s", (url, reason) => expect(refuseWebhookUrl(url, false)).toMatch(reason));

  it("allows plain-http loopback receivers in local development only", () => {
    expect(refuseWebhookUrl("http://127.0.0.1:9999/hook", true)).toBeNull();
    expect(refuseWebhookUrl("http://127.0.0.1:9999/hook", false)).not.toBeNull();
    expect(refuseWebhookUrl("http://10.0.0.1/hook", true)).not.toBeNull();
  });

  /** A private IPv4 address in one of the spellings a URL accepts for it. */
  const privateAddress = fc
    .tuple(
      fc.oneof(
        fc.tuple(fc.constant(10), fc.nat(255), fc.nat(255), fc.nat(255)),
        fc.tuple(fc.constant(127), fc.nat(255), fc.nat(255), fc.nat(255)),
        fc.tuple(fc.constant(172), fc.integer({ min: 16, max: 31 }), fc.nat(255), fc.nat(255)),
        fc.tuple(fc.constant(192), fc.constant(168), fc.nat(255), fc.nat(255)),
        fc.tuple(fc.constant(169), fc.constant(254), fc.nat(255), fc.nat(255)),
        fc.tuple(fc.constant(100), fc.integer({ min: 64, max: 127 }), fc.nat(255), fc.nat(255)),
        fc.tuple(fc.constant(0), fc.nat(255), fc.nat(255), fc.nat(255)),
      ),
      fc.constantFrom("dotted", "decimal", "hex", "octal", "mapped", "6to4", "trailing-dot"),
    )
    .map(([[a, b, c, d], spelling]) => {
      const n = ((a << 24) >>> 0) + (b << 16) + (c << 8) + d;
      const hex = (x: number) => x.toString(16);
      switch (spelling) {
        case "decimal":
          return String(n);
        case "hex":
          return `0x${hex(n)}`;
        case "octal":
          return [a, b, c, d].map((x) => `0${x.toString(8)}`).join(".");
        case "mapped":
          return `[::ffff:${hex((a << 8) + b)}:${hex((c << 8) + d)}]`;
        case "6to4":
          return `[2002:${hex((a << 8) + b)}:${hex((c << 8) + d)}::1]`;
        case "trailing-dot":
          return `${a}.${b}.${c}.${d}.`;
        default:
          return `${a}.${b}.${c}.${d}`;
      }
    });

  it("refuses a private address however it is spelled", () => {
    fc.assert(
      fc.property(privateAddress, fc.constantFrom("", ":443", ":8080"), (host, port) => {
        expect(refuseWebhookUrl(`https://${host}${port}/hook`, false)).toMatch(/private/);
      }),
      { numRuns: 500, seed: 8 },
    );
  });

  it("accepts public addresses", () => {
    const octet = fc
      .integer({ min: 1, max: 223 })
      .filter((a) => ![10, 100, 127, 169, 172, 192, 198].includes(a));
    fc.assert(
      fc.property(octet, fc.nat(255), fc.nat(255), fc.nat(255), (a, b, c, d) => {
        expect(refuseWebhookUrl(`https://${a}.${b}.${c}.${d}/hook`, false)).toBeNull();
      }),
      { numRuns: 300, seed: 8 },
    );
  });
});
