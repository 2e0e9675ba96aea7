// ESLint for the whole tree (npm run lint, run by npm test): typescript-eslint's
// recommended rules, without type information (the type-aware set doubles the
// run time on a 2-core machine for little gain here: tsc --strict already runs).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'tmp/**', 'rest/console/**/*.js'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    languageOptions: { ecmaVersion: 2023, sourceType: 'module' },
    rules: {
      // `_`-prefixed parameters and variables are deliberate
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none' }],
      // control characters are the protocol here (NUL-separated frames)
      'no-control-regex': 'off',
      // the tests' regular expressions show XML indentation as it is written
      'no-regex-spaces': 'off',
      'max-len': [
        'error',
        { code: 160, ignoreUrls: true, ignoreStrings: true, ignoreTemplateLiterals: true, ignoreRegExpLiterals: true, ignoreComments: false },
      ],
    },
  },
  {
    // tests read JSON replies field by field
    files: ['test/**/*.ts'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
);
