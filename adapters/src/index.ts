export {
  type Backend,
  BackendError,
  type BackendErrorCode,
  type StreamOptions,
} from "./backend.ts";
export { DenoiserNodeBackend, type DenoiserNodeOptions } from "./denoiser-node.ts";
export { OpenAiCompatibleBackend, type OpenAiCompatibleOptions } from "./openai-compatible.ts";
export { BackendPool, type PoolMember, type PoolOptions } from "./pool.ts";
