// A node:test reporter that sums the top-level tests' durations per file and, at the end, writes the
// slowest files first: where the suite's time goes (scripts/run-tests.mjs prints it after the run).
export default async function* fileTimes(source) {
  const perFile = new Map();
  for await (const event of source) {
    if ((event.type === "test:pass" || event.type === "test:fail") && event.data.nesting === 0 && event.data.file) {
      const f = perFile.get(event.data.file) ?? { ms: 0, tests: 0 };
      f.ms += event.data.details?.duration_ms ?? 0;
      f.tests += 1;
      perFile.set(event.data.file, f);
    }
  }
  const rows = [...perFile].sort((a, b) => b[1].ms - a[1].ms);
  for (const [file, { ms, tests }] of rows) yield `${(ms / 1000).toFixed(1).padStart(7)} s  ${String(tests).padStart(3)} top-level  ${file.replace(process.cwd() + "/", "")}\n`;
}
