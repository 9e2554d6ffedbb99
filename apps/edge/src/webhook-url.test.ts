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
    ["not a url", /not a URL/],
  ])("refuses %s", (url, reason) => expect(refuseWebhookUrl(url, false)).toMatch(reason));

  it("allows plain-http loopback receivers in local development only", () => {
    expect(refuseWebhookUrl("http://127.0.0.1:9999/hook", true)).toBeNull();
    expect(refuseWebhookUrl("http://127.0.0.1:9999/hook", false)).not.toBeNull();
    expect(refuseWebhookUrl("http://10.0.0.1/hook", true)).not.toBeNull();
  });
});
