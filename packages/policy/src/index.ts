export * from "./errors.js";
export * from "./error-catalogue.js";
export * from "./clock.js";
export * from "./certificate-profile.js";
export * from "./policy-calendar.js";
export * from "./profile-presets.js";
export * from "./profile-parser.js";
export * from "./renewal-policy.js";
