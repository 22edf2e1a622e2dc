// Adds the demo's "demo-file" profile to a data directory's config.json:
// file certificates (PKCS#12) valid 60 days, renewable from 90 days before
// expiry, verified by proof of possession and the ID number (no one-time
// code, so the demo needs no SMS gateway). Used by scripts/start.sh only.
import { readFileSync, writeFileSync } from "node:fs";

const file = process.argv[2];
if (!file) {
  console.error("usage: node scripts/demo-profile.mjs <data-dir>/config.json");
  process.exit(2);
}
const config = JSON.parse(readFileSync(file, "utf8"));
if (!config.profiles.some((p) => p.id === "demo-file")) {
  const base = config.profiles.find((p) => p.id === "personal");
  const window = { opensDaysBefore: 90, closesDaysAfter: 365 };
  config.profiles.push({
    ...base,
    id: "demo-file",
    name: { "zh-CN": "演示文件证书（60 天）", en: "Demo file certificate (60 days)" },
    keyAlgorithms: ["p256", "rsa2048"],
    validity: { days: 60 },
    certificateKind: "file",
    verification: { idNumber: true, oneTimeCode: null },
    renewal: { ...base.renewal, windows: { web: window, mobile: window, cli: window, est: null }, noticeDaysBefore: 90 },
  });
  writeFileSync(file, JSON.stringify(config, null, 2) + "\n");
}
