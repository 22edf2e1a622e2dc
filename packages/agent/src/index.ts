export * from "./keys/key-store.js";
export * from "./keys/pkcs11-backend.js";
export * from "./keys/module-paths.js";
export * from "./keys/token-vendor.js";
export * from "./keys/pin-rule.js";
export * from "./flows/flow-types.js";
export * from "./flows/index.js";
export * from "./server-client.js";
export { runUkeyCli, exitCodes, exitCodeFor, type UkeyCliIo } from "./cli.js";
