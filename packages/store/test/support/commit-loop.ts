// Child process of the fsync test: a few commits, one after another.
import { openStore } from "../../src/index.js";

const store = await openStore({ dataDir: process.argv[2]! });
for (let i = 0; i < 5; i++) {
  await store.transaction((r) => r.holders.insert({ id: `H${i}`, kind: "person", name: "x", idType: "t", idHash: "h", idMasked: "m", phone: null, email: null, organisationId: null, createdAt: 1 }));
  process.stdout.write(`committed ${i}\n`);
}
await store.close();
