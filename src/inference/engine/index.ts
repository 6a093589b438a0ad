// The bundled engine: a small OpenAI-compatible server that really generates text on the CPU, so
// deployments, the gateway and the demo run end to end without a GPU.
export {
  contentText,
  countMessageTokens,
  createEngine,
  embed,
  REASONING_TOKENS,
  startEngine,
  type EngineOptions,
  type RunningEngine,
} from './server.js';
export { buildModel, corpusModel, generate, type MarkovModel } from './model.js';
