#!/usr/bin/env node
// The `eventful` command: runs the compiled CLI (built by `npm install` through `prepare`).
import '../dist/cli/run.js';
