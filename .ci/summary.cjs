// Prints 'name suite: N passed, N failed' for each vitest JSON report, then 'N passed, N failed'.
const fs = require('node:fs');
const path = require('node:path');
let passed = 0;
let failed = 0;
for (const file of process.argv.slice(2)) {
  const name = path.basename(file, '.json');
  if (!fs.existsSync(file)) {
    console.log(`${name} suite: no report`);
    failed++;
    continue;
  }
  const report = JSON.parse(fs.readFileSync(file, 'utf8'));
  console.log(`${name} suite: ${report.numPassedTests} passed, ${report.numFailedTests} failed`);
  passed += report.numPassedTests;
  failed += report.numFailedTests;
}
console.log(`${passed} passed, ${failed} failed`);
