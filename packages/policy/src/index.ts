export * from "./errors.js";
export * from "./error-catalogue.js";
export * from "./clock.js";
export * from "./certificate-profile.js";
