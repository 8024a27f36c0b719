'use strict';
// Reads the JSON report vitest writes with --reporter=json. The dot reporter the platform
// suites use prints no test names, so a failure would show only as a count: the failed tests
// are printed from the report, with the start of their messages, so a CI log says which one.

const fs = require('node:fs');
const path = require('node:path');

// Returns { passed, failed, skipped, total } and prints one `FAIL file > test` line per failure,
// or null where vitest wrote no report. A test file that failed to load (no test ran in it)
// counts as one failure. The report file is removed.
function readVitestReport(file, root = process.cwd()) {
  if (!fs.existsSync(file)) return null;
  const r = JSON.parse(fs.readFileSync(file, 'utf8'));
  fs.rmSync(file);
  let unloaded = 0;
  for (const suite of r.testResults ?? []) {
    const name = path.relative(root, suite.name ?? '');
    const failedTests = (suite.assertionResults ?? []).filter((t) => t.status === 'failed');
    // A file that failed to load has no assertion results, only its message.
    if (failedTests.length === 0 && suite.status === 'failed') {
      console.log(`FAIL ${name}: ${firstLines(suite.message)}`);
      unloaded += 1;
    }
    for (const t of failedTests) {
      console.log(`FAIL ${name} > ${t.fullName ?? t.title}: ${firstLines((t.failureMessages ?? []).join('\n'))}`);
    }
  }
  return {
    passed: r.numPassedTests, failed: r.numFailedTests + unloaded,
    skipped: (r.numPendingTests ?? 0) + (r.numTodoTests ?? 0), total: r.numTotalTests + unloaded,
  };
}

function firstLines(text = '', n = 6) {
  return text.split('\n').slice(0, n).join('\n    ');
}

module.exports = { readVitestReport };
