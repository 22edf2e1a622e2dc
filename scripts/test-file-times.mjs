// A node:test reporter that, per file, sums the top-level tests' durations and takes the file's own wall time (its
// process from start to end, before hooks and module loading included) and, at the end, writes the slowest files
// first: where the suite's time goes (scripts/run-tests.mjs prints it after the run and keeps the wall times to
// start the longest files first next time).
// One line per file: "<sum> s  <n> top-level  <wall> s wall  <file>".
export default async function* fileTimes(source) {
  const perFile = new Map();
  const entry = (file) => {
    let f = perFile.get(file);
    if (!f) perFile.set(file, (f = { ms: 0, tests: 0, wallMs: 0 }));
    return f;
  };
  for await (const event of source) {
    const { data } = event;
    if (!data?.file || data.nesting !== 0) continue;
    if (data.name === data.file) {
      // The file itself (the runner's test for its process): its duration is the file's wall time.
      if (event.type === "test:complete" || event.type === "test:pass" || event.type === "test:fail") entry(data.file).wallMs = data.details?.duration_ms ?? 0;
    } else if (event.type === "test:pass" || event.type === "test:fail") {
      const f = entry(data.file);
      f.ms += data.details?.duration_ms ?? 0;
      f.tests += 1;
    }
  }
  const rows = [...perFile].sort((a, b) => b[1].ms - a[1].ms);
  for (const [file, { ms, tests, wallMs }] of rows) {
    yield `${(ms / 1000).toFixed(1).padStart(7)} s  ${String(tests).padStart(3)} top-level  ${(wallMs / 1000).toFixed(1).padStart(7)} s wall  ${file.replace(process.cwd() + "/", "")}\n`;
  }
}
