// The linter `make lint` runs on the page's scripts (server/static/*.js), from
// the repository's root with --config: the paths here are the repository's.
// The scripts are ES modules the browser runs as written (no build step).
import js from "@eslint/js";
import globals from "globals";

export default [
  // Vendored from npm as published; not ours to restyle.
  { ignores: ["server/static/vendor/**"] },
  {
    files: ["server/static/*.js"],
    languageOptions: {
      ecmaVersion: 2022,
      sourceType: "module",
      globals: {
        ...globals.browser,
        // Classic scripts (vendor/) the templates load before the modules.
        uPlot: "readonly",
        io: "readonly",
      },
    },
    linterOptions: { reportUnusedDisableDirectives: "error" },
    rules: {
      ...js.configs.recommended.rules,
      "no-unused-vars": "error",
      "no-redeclare": "error",
      "no-undef": "error",
      "no-shadow": "error",
      "no-var": "error",
      "prefer-const": "error",
      eqeqeq: ["error", "always"],
    },
  },
];
