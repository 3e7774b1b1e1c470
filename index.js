#!/usr/bin/env node
// Entry point kept at the top, as in the original: `node index.js [flags]`.
// The TypeScript sources (index.ts, src/) are compiled to dist/ by `npm install` (prepare) or `npm run build`.
'use strict';
try {
  require.resolve('./dist/index.js');
} catch {
  console.error('ClusterODM is not built yet: run `npm install` (or `npm run build`) in ' + __dirname);
  process.exit(1);
}
// The daemon runs with the V8 flags of NODE_FLAGS (dist/src/core/node-flags.js explains them): when they were not
// given on the command line, it runs in a child node that has them, and this process only waits for it.
const { withNodeFlags } = require('./dist/src/core/node-flags.js');
if (!withNodeFlags(__filename, process.argv.slice(2))) {
  require('./dist/index.js').main(process.argv.slice(2));
}
