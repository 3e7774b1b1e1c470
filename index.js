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
require('./dist/index.js').main(process.argv.slice(2));
