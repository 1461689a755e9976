#!/usr/bin/env node
// The `damselfly` executable: runs the bundled CLI (dist/bundle/, built by `npm ci` / `npm run
// build`: tsc, then scripts/bundle.mjs).
import '../dist/bundle/main.js';
