import { openStore } from "../src/index.js";
import { createTestDatabase } from "./support/postgres.js";
import { repositoryContract } from "./support/repository-contract.js";

repositoryContract("PostgreSQL", async () => {
  const db = await createTestDatabase();
  return {
    open: () => openStore({ databaseUrl: db.url }),
    sharedByInstances: true,
    dispose: () => db.drop(),
  };
});
