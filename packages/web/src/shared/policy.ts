// The parts of @ukey/policy the browser needs, imported file by file so that
// the bundle carries the catalogue and the calendar, not the profile parser.
export { catalogue, errorCodes, type ErrorCode } from "../../../policy/src/error-catalogue.js";
export { describeError, type ErrorProblem } from "../../../policy/src/errors.js";
export { legacyErrors, lookupError, type ErrorLookupResult, type LegacyErrorEntry } from "../../../policy/src/legacy-errors.js";
export { DAY_MS, formatPolicyDate, policyDay } from "../../../policy/src/policy-calendar.js";
export { keyAlgorithmLabel, shortSerial, subjectFields, type SubjectFields } from "../../../policy/src/subject-fields.js";
export { describeErrorExample } from "../../../policy/src/error-examples.js";
