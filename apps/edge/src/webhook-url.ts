/**
 * Which webhook URLs the edge will call: https only, and never an address inside a network —
 * private, loopback, link-local (cloud metadata lives at 169.254.169.254), carrier-grade NAT,
 * multicast, reserved, or IPv6 forms of these (IPv4-mapped included). The WHATWG URL parser
 * normalises every IPv4 spelling first (decimal `2130706433`, octal `0177.0.0.1`, hex), so they
 * are all checked as the dotted address they mean. Names that merely resolve to such addresses
 * cannot be checked here (Workers have no DNS lookup); Cloudflare's network does not route a
 * Worker's fetch into private networks. In local development (`allowLoopback`) plain-http
 * loopback receivers are allowed, so the whole flow can be tried on one machine.
 */

/** Null when the edge may call `raw`, else why not. */
export function refuseWebhookUrl(raw: string, allowLoopback: boolean): string | null {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    return "is not a URL";
  }
  if (url.username || url.password) return "must not carry credentials";
  const host = url.hostname.replace(/^\[|\]$/g, "").toLowerCase();
  const loopback = isLoopback(host);
  if (allowLoopback && loopback && (url.protocol === "http:" || url.protocol === "https:")) return null;
  if (url.protocol !== "https:") return "must use https";
  if (loopback || isInternalName(host) || isPrivateIPv4(host) || isPrivateIPv6(host)) {
    return "points at a private, loopback, link-local or metadata address";
  }
  return null;
}

function isLoopback(host: string): boolean {
  return host === "localhost" || host.endsWith(".localhost") || host === "::1" || /^127\./.test(host);
}

function isInternalName(host: string): boolean {
  return (
    /(^|\.)(local|internal|localdomain|home\.arpa)$/.test(host) ||
    host === "metadata" ||
    (!host.includes(".") && !host.includes(":"))
  );
}

function ipv4(host: string): number[] | null {
  const parts = host.split(".");
  if (parts.length !== 4 || !parts.every((p) => /^\d{1,3}$/.test(p) && Number(p) <= 255)) return null;
  return parts.map(Number);
}

function isPrivateIPv4(host: string): boolean {
  const ip = ipv4(host);
  if (!ip) return false;
  const [a = 0, b = 0, c = 0] = ip;
  return (
    a === 0 ||
    a === 10 ||
    a === 127 ||
    a >= 224 || // this network, private, loopback, multicast and reserved
    (a === 100 && b >= 64 && b <= 127) || // carrier-grade NAT
    (a === 169 && b === 254) || // link-local, cloud metadata
    (a === 172 && b >= 16 && b <= 31) ||
    (a === 192 && b === 168) ||
    (a === 192 && b === 0 && c === 0) ||
    (a === 198 && (b === 18 || b === 19)) // benchmarking
  );
}

function isPrivateIPv6(host: string): boolean {
  if (!host.includes(":")) return false;
  if (host === "::" || host === "::1") return true;
  // IPv4-mapped and -compatible forms (the URL parser writes ::ffff:127.0.0.1 as ::ffff:7f00:1):
  // a receiver has no reason to be named so, and they are how filters get bypassed. Refused.
  if (/^::(?:ffff:)?[0-9a-f]{1,4}:[0-9a-f]{1,4}$/.test(host)) return true;
  const first = Number.parseInt(host.split(":")[0] || "0", 16);
  return (
    (first & 0xfe00) === 0xfc00 || // unique local
    (first & 0xffc0) === 0xfe80 || // link-local
    (first & 0xff00) === 0xff00 || // multicast
    host.startsWith("64:ff9b:") // NAT64 onto IPv4
  );
}
