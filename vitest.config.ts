import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["{apps,adapters,models,scripts,test}/**/*.test.ts"],
    testTimeout: 30_000,
    hookTimeout: 120_000,
    // The model runs on 2 CPU cores; parallel files would only fight over them.
    fileParallelism: false,
  },
});
