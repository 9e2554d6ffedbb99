import { cloudflareTest } from "@cloudflare/vitest-pool-workers";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // The model runs on 2 CPU cores; parallel files would only fight over them.
    fileParallelism: false,
    projects: [
      {
        extends: true,
        test: {
          name: "node",
          include: ["{apps,adapters,models,protocol,scripts,test}/**/*.test.ts"],
          exclude: ["apps/edge/**", "**/node_modules/**"],
        },
      },
      {
        // The edge's tests run inside workerd, the Workers runtime; what they call (the real
        // denoiser node, an upstream, a webhook receiver) is started in Node by the global setup.
        extends: true,
        plugins: [cloudflareTest({ wrangler: { configPath: "./wrangler.toml" } })],
        test: {
          name: "edge (workerd)",
          include: ["apps/edge/**/*.test.ts"],
          globalSetup: ["test/support/edge-setup.ts"],
        },
      },
    ],
  },
});
