/**
 * Which webhook URLs the edge will call: https only, and never an address inside a network —
 * private, loopback, link-local (cloud metadata lives at 169.254.169.254), carrier-grade NAT,
 * multicast, reserved, or IPv6 forms of these (IPv4-mapped, -compatible and -translated, NAT64,
 * 6to4 and Teredo included). The WHATWG URL parser normalises every IPv4 spelling first (decimal
 * `2130706433`, octal `0177.0.0.1`, hex, full-width digits), so they are all checked as the dotted
 * address they mean; a trailing dot (`localhost.`) is the same host and is checked as such.
 * Names that merely resolve to such addresses cannot be checked here (Workers have no DNS
 * lookup); Cloudflare's network does not route a Worker's fetch into private networks. In local development (`allowLoopback`) plain-http
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
  // `localhost.` and `metadata.google.internal.` (a trailing dot: the fully qualified spelling) are the same hosts.
  const host = url.hostname
    .replace(/^\[|\]$/g, "")
    .replace(/\.+$/, "")
    .toLowerCase();
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

/** The 8 groups of an IPv6 address as the URL parser writes it (lower-case hex, `::` compressed). */
function ipv6Groups(host: string): number[] | null {
  const [head = "", tail, extra] = host.split("::");
  if (extra !== undefined) return null;
  const parse = (part: string) => (part === "" ? [] : part.split(":").map((g) => Number.parseInt(g, 16)));
  const front = parse(head);
  const back = tail === undefined ? [] : parse(tail);
  const groups = [...front, ...Array(8 - front.length - back.length).fill(0), ...back];
  return groups.length === 8 && groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff)
    ? groups
    : null;
}

function isPrivateIPv6(host: string): boolean {
  if (!host.includes(":")) return false;
  const g = ipv6Groups(host);
  if (!g) return true; // not an address the parser would have written: refuse rather than guess
  const [g0 = 0, g1 = 0, g2 = 0, g3 = 0, g4 = 0, g5 = 0, g6 = 0, g7 = 0] = g;
  const embedded = `${g6 >> 8}.${g6 & 0xff}.${g7 >> 8}.${g7 & 0xff}`;
  // Unspecified, loopback, and every form that carries an IPv4 address in its last 32 bits:
  // compatible (::a.b.c.d), mapped (::ffff:a.b.c.d), translated (::ffff:0:a.b.c.d). A receiver
  // has no reason to be named so, and they are how filters get bypassed.
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && (g4 === 0 || (g4 === 0xffff && g5 === 0))) return true;
  if (g0 === 0 && g1 === 0 && g2 === 0 && g3 === 0 && g4 === 0 && (g5 === 0 || g5 === 0xffff)) return true;
  return (
    (g0 & 0xfe00) === 0xfc00 || // unique local
    (g0 & 0xffc0) === 0xfe80 || // link-local
    (g0 & 0xffc0) === 0xfec0 || // site-local (deprecated, still routed inside some networks)
    (g0 & 0xff00) === 0xff00 || // multicast
    (g0 === 0x64 && g1 === 0xff9b) || // NAT64 onto IPv4 (64:ff9b::/96 and 64:ff9b:1::/48)
    (g0 === 0x2001 && g1 === 0) || // Teredo: a tunnel to an IPv4 address
    (g0 === 0x2002 && isPrivateIPv4(`${g1 >> 8}.${g1 & 0xff}.${g2 >> 8}.${g2 & 0xff}`)) || // 6to4 of a private IPv4
    (g0 === 0 && isPrivateIPv4(embedded)) // anything else in ::/16 that embeds a private IPv4
  );
}
