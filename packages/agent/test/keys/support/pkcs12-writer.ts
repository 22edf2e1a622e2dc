// Child process of the kill-safety test: replaces a file token again and
// again, alternating between its contents under two passwords, and prints
// the number of completed writes every 20 writes, until it is killed.
// The encryption is done once beforehand, so nearly all of the time (and
// so the kill) falls inside writeFileAtomic.
// Usage: node --import tsx pkcs12-writer.ts FILE PIN_A PIN_B
import { readFileSync } from "node:fs";
import { decodePkcs12, encodePkcs12, writeFileAtomic } from "../../../src/keys/pkcs12-file.js";

const [file, pinA, pinB] = process.argv.slice(2) as [string, string, string];
const contents = decodePkcs12(readFileSync(file), pinA, file);
const versions = [await encodePkcs12(contents, pinB), await encodePkcs12(contents, pinA)];
for (let i = 1; ; i++) {
  writeFileAtomic(file, versions[i % 2]!);
  if (i % 20 === 0) process.stdout.write(`${i}\n`);
}
