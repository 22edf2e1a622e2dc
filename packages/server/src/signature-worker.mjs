// The signature worker's entry: worker threads do not inherit the TypeScript
// loader of the thread that starts them, so the worker registers its own.
import { register } from "tsx/esm/api";

register();
await import("./signature-worker-body.ts");
