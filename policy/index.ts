// The policy engine's public API (what qubesd and other tools import).
export { PolicyEngine, type EngineOptions } from './policy-engine.js';
export { PolicyWatcher, type WatcherOptions } from './watcher.js';
export {
  Policy, approveAsk, refuseAsk, allowResponse,
  type PolicyRequest, type Resolution, type AllowResolution, type AskResolution, type DenyResolution, type ErrorResolution,
} from './engine.js';
export { responseFor, resolutionRecord } from './answer.js';
export { loadPolicy, lintPolicy, DEFAULT_POLICY_DIR, DEFAULT_RUNTIME_DIR, DEFAULT_LEGACY_DIR, type LoadOptions } from './loader.js';
export { ruleLocation, type Rule } from './rule.js';
export { AccessDenied, PolicySyntaxError, RequestError, EvaluationError } from './errors.js';
export type { SystemInfo, SystemInfoDomain } from './system-info.js';
export { PolicyAdmin, computeToken, PolicyAdminException } from './admin.js';
export { PolicyDaemon, fetchSystemInfo, type PolicyDaemonOptions, type AskAgent } from './daemon.js';
export { explain, type Explanation } from './explain.js';
