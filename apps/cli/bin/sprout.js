#!/usr/bin/env node
// `npx sprout …` after `npm link` / `npm install -g .` (in this repo: `npm run cli -- …`).
import { register } from "tsx/esm/api";

register();
await import("../src/bin.ts");
