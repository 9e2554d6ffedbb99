import { describe, expect, it } from "vitest";
import {
  checkExecutionProvider,
  describeProviderFailure,
  ExecutionProviderError,
  parseExecutionProvider,
  sessionProviders,
} from "./providers.ts";

const both = { cudaProviderInstalled: true, vulkanLoaderFound: true };

describe("execution providers", () => {
  it("reads SPROUT_EXECUTION_PROVIDER: cpu by default, cuda and webgpu, nothing else", () => {
    expect(parseExecutionProvider(undefined)).toBe("cpu");
    expect(parseExecutionProvider("")).toBe("cpu");
    expect(parseExecutionProvider("webgpu")).toBe("webgpu");
    expect(parseExecutionProvider("cuda")).toBe("cuda");
    expect(() => parseExecutionProvider("gpu")).toThrow(ExecutionProviderError);
    expect(() => parseExecutionProvider("gpu")).toThrow(/one of cpu, cuda, webgpu, not "gpu"/);
  });

  it("puts a GPU provider first and the CPU after it (for operators it lacks)", () => {
    expect(sessionProviders("cpu")).toEqual(["cpu"]);
    expect(sessionProviders("webgpu")).toEqual(["webgpu", "cpu"]);
    expect(sessionProviders("cuda")).toEqual(["cuda", "cpu"]);
  });

  it("needs no check for the CPU", async () => {
    await expect(checkExecutionProvider("cpu")).resolves.toBeUndefined();
  });

  it("names what is missing, in one line, from what onnxruntime and Dawn print", () => {
    const lines = [
      describeProviderFailure(
        "cuda",
        "error: OrtSessionOptionsAppendExecutionProvider_Cuda: Failed to load shared library",
        {
          ...both,
          cudaProviderInstalled: false,
        },
      ),
      describeProviderFailure(
        "cuda",
        "Failed to load library libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: cannot open shared object file: No such file or directory\nerror: Failed to load shared library",
        both,
      ),
      describeProviderFailure(
        "cuda",
        "CUDA failure 100: no CUDA-capable device is detected\nerror: boom",
        both,
      ),
      describeProviderFailure(
        "webgpu",
        "Warning: Couldn't load Vulkan: libvulkan.so.1: cannot open shared object file: No such file or directory\nerror: Failed to get a WebGPU adapter: No supported adapters",
        both,
      ),
      describeProviderFailure(
        "webgpu",
        "Warning: maxDynamicUniformBuffersPerPipelineLayout artificially reduced from 1000000 to 16\nWarning: Vulkan shaderUniform*ArrayDynamicIndexing required.\nerror: ... Failed to get a WebGPU adapter: No supported adapters",
        both,
      ),
    ];
    expect(lines[0]).toMatch(
      /^SPROUT_EXECUTION_PROVIDER=cuda: onnxruntime-node's CUDA provider is not installed .*EP=cuda12/,
    );
    expect(lines[1]).toMatch(/cannot load libcublasLt\.so\.12 .*CUDA 12 and cuDNN 9/);
    expect(lines[2]).toMatch(/no usable CUDA device/);
    expect(lines[3]).toMatch(
      /^SPROUT_EXECUTION_PROVIDER=webgpu: libvulkan\.so\.1 \(the Vulkan loader\) is missing/,
    );
    expect(lines[4]).toMatch(
      /no WebGPU adapter: .*; Dawn: Vulkan shaderUniform\*ArrayDynamicIndexing required\.$/,
    );
    for (const line of lines) expect(line).not.toContain("\n");
  });

  it("refuses a WebGPU provider with no Vulkan driver (a real start, in a child process)", async () => {
    const env = {
      ...process.env,
      VK_DRIVER_FILES: "/nonexistent/icd.json",
      VK_ICD_FILENAMES: "/nonexistent/icd.json",
    };
    const error = await checkExecutionProvider("webgpu", env).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ExecutionProviderError);
    expect((error as Error).message).toMatch(
      /^SPROUT_EXECUTION_PROVIDER=webgpu: (libvulkan\.so\.1 \(the Vulkan loader\) is missing|no WebGPU adapter)/,
    );
  });
});
