// node .ci/summary.cjs DIR NAME...: for each suite NAME, reads DIR/NAME.json (a vitest JSON report),
// DIR/NAME.seconds (its time) and DIR/NAME.note (what it left out, and why), and prints
// 'NAME suite: N passed, N failed[, N skipped] (S s)'; then the closing 'N passed, N failed' over
// all. A suite with no report, or one that failed without a failed test (a hook, an import), counts
// as failed, and so does one that ran no test. Exits 1 if anything failed.
const fs = require('node:fs');
const path = require('node:path');

const [dir, ...names] = process.argv.slice(2);
const read = (name, ext) => {
  const file = path.join(dir, `${name}.${ext}`);
  return fs.existsSync(file) ? fs.readFileSync(file, 'utf8').trim() : undefined;
};

let passed = 0;
let failed = 0;
for (const name of names) {
  const json = read(name, 'json');
  const seconds = read(name, 'seconds');
  const time = seconds === undefined ? '' : ` (${seconds} s)`;
  if (json === undefined) {
    console.log(`${name} suite: no report, counted as 1 failed${time}`);
    failed++;
    continue;
  }
  const report = JSON.parse(json);
  let suiteFailed = report.numFailedTests;
  if (suiteFailed === 0 && !report.success) suiteFailed = Math.max(1, report.numFailedTestSuites);
  const skipped = report.numPendingTests + report.numTodoTests;
  const note = read(name, 'note');
  console.log(
    `${name} suite: ${report.numPassedTests} passed, ${suiteFailed} failed${skipped ? `, ${skipped} skipped` : ''}${time}${note ? `; ${note}` : ''}`,
  );
  if (report.numTotalTests === 0) {
    console.log(`${name} suite: ran no test, counted as 1 failed`);
    suiteFailed = Math.max(suiteFailed, 1);
  }
  passed += report.numPassedTests;
  failed += suiteFailed;
}
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
