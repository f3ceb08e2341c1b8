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

function failedTests(suite, report) {
  const lines = [];
  for (const file of report.testResults ?? []) {
    const where = path.relative(process.cwd(), file.name ?? '');
    const failedAssertions = (file.assertionResults ?? []).filter((test) => test.status === 'failed');
    if (failedAssertions.length === 0 && file.status === 'failed') {
      lines.push(`${suite} FAILED ${where}: ${firstLines(file.message)}`);
    }
    for (const test of failedAssertions) {
      lines.push(`${suite} FAILED ${where} > ${test.fullName}: ${firstLines((test.failureMessages ?? []).join(' '))}`);
    }
  }
  return lines;
}
function firstLines(text) {
  return String(text ?? '').split('\n').slice(0, 4).join(' | ').slice(0, 600);
}

const failures = [];
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
  failures.push(...failedTests(name, report));
}
// The failed tests by name, with the first lines of each message, printed last so the end of the
// log says what failed and where.
for (const line of failures) console.log(line);
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 ? 1 : 0);
