import { test } from "node:test";
import assert from "node:assert/strict";
import { detectOs, primaryInstaller, sizeText, type PublishedFile } from "../src/portal/installer-choice.js";

// Issue 14, part 5: which published installer the download page offers first, and how its size reads.
const file = (name: string, platform: string): PublishedFile => ({ name, platform, version: "0.1.0", size: 1, sha256: "0".repeat(64) });
const published = [
  file("ukey-0.1.0-win-x64.exe", "win32-x64"), file("ukey-agent-0.1.0-x64.msi", "win32-x64"),
  file("ukey-agent_0.1.0_amd64.deb", "linux-x64"), file("README.txt", "any"),
];

test("the holder's system from the user agent", () => {
  for (const [ua, os] of [
    ["Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 Chrome/156.0.0.0 Safari/537.36", "windows"],
    ["Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 Version/17.0 Safari/605.1.15", "macos"],
    ["Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/156.0.0.0 Safari/537.36", "linux"],
    ["Mozilla/5.0 (X11; UOS; Linux x86_64) AppleWebKit/537.36 Chrome/120.0.0.0 Safari/537.36", "linux"],
    ["Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 Chrome/156.0.0.0 Mobile Safari/537.36", "mobile"],
    ["Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15 Mobile/15E148", "mobile"],
  ] as const) assert.equal(detectOs(ua), os, ua);
});

test("offers the installer before the bare executable, only for the holder's platform, and nothing where none fits", () => {
  assert.equal(primaryInstaller(published, "windows")?.name, "ukey-agent-0.1.0-x64.msi");
  assert.equal(primaryInstaller(published.filter((f) => !f.name.endsWith(".msi")), "windows")?.name, "ukey-0.1.0-win-x64.exe");
  assert.equal(primaryInstaller(published, "linux")?.name, "ukey-agent_0.1.0_amd64.deb");
  assert.equal(primaryInstaller(published, "macos"), null, "no macOS build is published");
  assert.equal(primaryInstaller(published, "mobile"), null);
  assert.equal(primaryInstaller([file("ukey-agent-0.1.0.pkg", "darwin-arm64")], "macos")?.name, "ukey-agent-0.1.0.pkg");
});

test("sizes in MB with one decimal, small files in KB", () => {
  assert.equal(sizeText(31.2 * 1_048_576), "31.2 MB");
  assert.equal(sizeText(25_479_987), "24.3 MB");
  assert.equal(sizeText(104_858), "0.1 MB");
  assert.equal(sizeText(52_000), "51 KB");
  assert.equal(sizeText(9), "1 KB");
});
