/**
 * `npm run keys -- <command>`: API keys of the edge, kept in its `API_KEYS` KV namespace through
 * wrangler (local state by default, as `npm start` uses it; `--remote` for a deployment).
 *
 *   create --name NAME [--scopes completions,generate,verify] [--expires-in 30d|12h]
 *          [--rpm N] [--tpm N] [--concurrency N]     prints the new key, once
 *   list                                             ids, names, scopes, expiry, revocation
 *   revoke ID                                        the key stops working at once
 *
 * Only the key's sha256 digest and its record are stored or passed to wrangler; the key itself
 * is printed to this terminal and nowhere else.
 */
import { execFileSync } from "node:child_process";
import { createHash, randomBytes } from "node:crypto";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { KEY_PREFIX, KeyRecord, keyIdFor, kvKeyFor, SCOPES, type Scope } from "../apps/edge/src/keys.ts";

const root = fileURLToPath(new URL("..", import.meta.url));
const { values, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    name: { type: "string" },
    scopes: { type: "string", default: SCOPES.join(",") },
    "expires-in": { type: "string" },
    rpm: { type: "string" },
    tpm: { type: "string" },
    concurrency: { type: "string" },
    remote: { type: "boolean", default: false },
  },
});

function fail(message: string): never {
  console.error(message);
  process.exit(2);
}

function wrangler(args: string[]): string {
  const where = values.remote ? "--remote" : "--local";
  return execFileSync(
    join(root, "node_modules/.bin/wrangler"),
    ["kv", "key", ...args, "--binding", "API_KEYS", where],
    {
      cwd: root,
      encoding: "utf8",
      stdio: ["ignore", "pipe", "pipe"],
    },
  );
}

const positive = (flag: string, raw: string | undefined): number | null => {
  if (raw === undefined) return null;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) fail(`--${flag} must be a positive integer`);
  return value;
};

function expiry(raw: string | undefined): number | null {
  if (raw === undefined) return null;
  const match = /^(\d+)([dhm])$/.exec(raw);
  if (!match) fail("--expires-in looks like 30d, 12h or 45m");
  const seconds = Number(match[1]) * { d: 86_400, h: 3_600, m: 60 }[match[2] as "d" | "h" | "m"];
  return Math.floor(Date.now() / 1000) + seconds;
}

/** Writes a record as the value (what the edge reads) and as metadata (what `list` shows in one call). */
function store(name: string, record: KeyRecord): void {
  const json = JSON.stringify(KeyRecord.parse(record));
  wrangler(["put", name, json, "--metadata", json]);
}

/** Every stored record under `prefix`, in one listing. */
function records(prefix = "key:"): { name: string; record: KeyRecord }[] {
  const listed = JSON.parse(wrangler(["list", "--prefix", prefix])) as { name: string; metadata?: unknown }[];
  return listed.map(({ name, metadata }) => ({ name, record: KeyRecord.parse(metadata) }));
}

const [command, argument] = positionals;
switch (command) {
  case "create": {
    if (!values.name) fail("create needs --name");
    const scopes = (values.scopes ?? "").split(",").filter(Boolean);
    const unknown = scopes.filter((s) => !(SCOPES as readonly string[]).includes(s));
    if (unknown.length > 0 || scopes.length === 0) fail(`--scopes: choose from ${SCOPES.join(", ")}`);
    const key = `${KEY_PREFIX}${randomBytes(32).toString("base64url")}`;
    const digest = createHash("sha256").update(key).digest("hex");
    const record: KeyRecord = {
      id: keyIdFor(digest),
      name: values.name,
      scopes: scopes as Scope[],
      created_at: Math.floor(Date.now() / 1000),
      expires_at: expiry(values["expires-in"]),
      revoked_at: null,
      limits: {
        requests_per_minute: positive("rpm", values.rpm),
        tokens_per_minute: positive("tpm", values.tpm),
        concurrency: positive("concurrency", values.concurrency),
      },
    };
    store(kvKeyFor(digest), record);
    console.log(`created key ${record.id} (${record.name}; ${record.scopes.join(", ")})`);
    console.log(`\n  ${key}\n\nIt is shown only now: store it somewhere safe.`);
    break;
  }
  case "list": {
    const now = Date.now() / 1000;
    console.table(
      records().map(({ record: r }) => ({
        id: r.id,
        name: r.name,
        scopes: r.scopes.join(","),
        expires: r.expires_at === null ? "never" : new Date(r.expires_at * 1000).toISOString(),
        state:
          r.revoked_at !== null
            ? "revoked"
            : r.expires_at !== null && r.expires_at <= now
              ? "expired"
              : "active",
        limits: Object.entries(r.limits)
          .filter(([, v]) => v !== null)
          .map(([k, v]) => `${k}=${v}`)
          .join(" "),
      })),
    );
    break;
  }
  case "revoke": {
    if (!argument || !/^[0-9a-f]{16}$/.test(argument))
      fail("revoke needs a key id (16 hex characters, see list)");
    const found = records(kvKeyFor(argument));
    if (found.length === 0) fail(`no key with id ${argument}`);
    for (const { name, record } of found) {
      store(name, { ...record, revoked_at: Math.floor(Date.now() / 1000) });
    }
    console.log(`revoked key ${argument}`);
    break;
  }
  default:
    fail(
      "usage: npm run keys -- create --name NAME [--scopes …] [--expires-in 30d] [--rpm N] [--tpm N] [--concurrency N] | list | revoke ID  [--remote]",
    );
}
