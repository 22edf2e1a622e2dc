// The agent's local API for the portal: the protocol's types, the server, its pairings and the `ukey agent` command.
export * from "./protocol.js";
export { startLocalApi, defaultAgentHome, localApiHost, type LocalApi, type LocalApiOptions } from "./local-api-server.js";
export { runAgentCommand, type AgentCommandIo } from "./agent-command.js";
export { agentConfigSchema, readAgentConfig, type AgentConfig } from "./agent-config.js";
export {
  PairingFile, PairingAttemptFile, normaliseOrigin, hashBearerToken, pairingLifetimeMs, pairingMaxTries, pairingMaxWrongPerDay, type StoredPairing,
} from "./pairings.js";
