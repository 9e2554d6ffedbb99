export {
  type Backend,
  BackendError,
  type BackendErrorCode,
  modelNotFound,
  type ServedModel,
  type StreamOptions,
} from "./backend.ts";
export { DenoiserNodeBackend, type DenoiserNodeOptions } from "./denoiser-node.ts";
export { OpenAiCompatibleBackend, type OpenAiCompatibleOptions } from "./openai-compatible.ts";
export { BackendPool, type PoolMember, type PoolOptions } from "./pool.ts";
export { ModelRouter, type RouterOptions } from "./router.ts";
