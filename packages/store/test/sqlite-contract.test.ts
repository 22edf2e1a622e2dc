import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { openStore } from "../src/index.js";
import { repositoryContract } from "./support/repository-contract.js";

repositoryContract("SQLite", async () => {
  const dataDir = mkdtempSync(join(tmpdir(), "ukey-store-"));
  return {
    open: () => openStore({ dataDir }),
    sharedByInstances: false,
    dispose: async () => rmSync(dataDir, { recursive: true, force: true }),
  };
});
