// One lint configuration for the whole repository; `npm test` runs it.
import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["**/node_modules/**", "**/dist/**", "**/dist-test-*/**", "**/.dist-test-tmp-*/**", ".data/**", "tmp/**"] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { globals: { process: "readonly", console: "readonly", Buffer: "readonly", URL: "readonly", setTimeout: "readonly", clearTimeout: "readonly", setImmediate: "readonly", setInterval: "readonly", clearInterval: "readonly" } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_", varsIgnorePattern: "^_", caughtErrors: "none" }],
      "@typescript-eslint/consistent-type-imports": "error",
      "no-restricted-syntax": ["error", {
        selector: "MemberExpression[object.name='process'][property.name='env'] > .property[name='NODE_ENV']",
        message: "Never branch on NODE_ENV: put the behaviour in configuration.",
      }],
    },
  },
  {
    files: ["packages/policy/src/**/*.ts", "packages/ca/src/**/*.ts"],
    rules: {
      "no-restricted-syntax": ["error", {
        selector: "NewExpression[callee.name='Date'][arguments.length=0]",
        message: "Time comes in from outside: take a Clock.",
      }, {
        selector: "CallExpression[callee.object.name='Date'][callee.property.name='now']",
        message: "Time comes in from outside: take a Clock.",
      }],
    },
  },
);
