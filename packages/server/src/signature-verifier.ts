import { Worker } from "node:worker_threads";
import type { VerifiedCsr } from "@ukey/ca";
import { UkeyError, type ErrorCode } from "@ukey/policy";
import {
  possessionSignatureValid, runSignatureJob, verifiedCsrFrom, verifyCsrData,
  type SignatureJob, type SignatureOutcome, type VerifiedCsrData,
} from "./signature-checks.js";

export type { SignatureJob, SignatureOutcome } from "./signature-checks.js";

interface Pending {
  job: SignatureJob;
  resolve(o: SignatureOutcome): void;
  /** Answered already (a message's outcomes come back in parts). */
  settled?: boolean;
}

/** Default checks per second above which they move to the worker. */
const OFFLOAD_ABOVE = 50;

/**
 * Checks the signatures a renewal brings: the proof of possession and the
 * CSR. Parsing a public key and verifying a signature cost about as much
 * as the rest of a renewal step on the event loop, so under load (more than
 * `offloadAbove` checks within one second; default 50) they move to one
 * worker thread, where they run on another core while the event loop serves
 * requests. The worker runs the very same functions (signature-checks.ts)
 * and the same errors come back (their cause stays in the worker). Until
 * the worker is up, after it failed, and below the threshold, checks run on
 * the calling thread. `close` stops the worker.
 */
export class SignatureVerifier {
  private worker: Worker | undefined;
  private ready = false;
  private failed = false;
  private closed = false;
  private queue: Pending[] = [];
  private flushScheduled = false;
  private readonly inFlight = new Map<number, Pending[]>();
  private nextId = 1;
  private windowStart = 0;
  private windowCount = 0;

  constructor(private readonly opts: { offloadAbove?: number } = {}) {}

  /** verifyCsr of @ukey/ca. @throws UkeyError REQUEST_TOO_LARGE, CSR_MALFORMED, KEY_TOO_WEAK, KEY_ALGORITHM_UNSUPPORTED, CSR_SIGNATURE_INVALID. */
  async verifyCsr(csr: Buffer | string): Promise<VerifiedCsr> {
    if (!this.offload()) return verifiedCsrFrom(verifyCsrData(csr));
    const o = await this.submit({ kind: "csr", csr });
    if (!o.ok) throw errorOf(o);
    return verifiedCsrFrom(o.value as VerifiedCsrData);
  }

  /** Whether `signature` over `message` was made by the key of certificate `certDer` (see possessionSignatureValid). Never throws for bad input. */
  async possessionValid(certDer: Buffer, message: Buffer, signature: Buffer): Promise<boolean> {
    if (!this.offload()) return possessionSignatureValid(certDer, message, signature);
    const o = await this.submit({ kind: "possession", certDer, message, signature });
    if (!o.ok) throw errorOf(o);
    return o.value as boolean;
  }

  /** Whether checks go to the worker now (it is up). */
  get offloaded(): boolean {
    return this.ready;
  }

  /** Stops the worker; checks still asked for run on the calling thread. Idempotent. */
  async close(): Promise<void> {
    this.closed = true;
    const w = this.worker;
    this.lost(w);
    await w?.terminate();
  }

  /** Whether this check goes to the worker; counts checks and starts the worker when they pass the threshold. */
  private offload(): boolean {
    if (this.ready) return true;
    if (this.closed || this.failed || this.worker) return false;
    const now = performance.now();
    if (now - this.windowStart >= 1000) {
      this.windowStart = now;
      this.windowCount = 0;
    }
    this.windowCount += 1;
    if (this.windowCount > (this.opts.offloadAbove ?? OFFLOAD_ABOVE)) this.start();
    return false;
  }

  private start(): void {
    let w: Worker;
    try {
      w = new Worker(new URL("./signature-worker.mjs", import.meta.url));
    } catch {
      // No worker here (threads unavailable): checks stay on this thread; the request goes on.
      this.failed = true;
      return;
    }
    // Never what keeps the process alive: requests waiting for it are held by the server.
    w.unref();
    w.on("message", (m: { ready?: true; id?: number; from?: number; outcomes?: SignatureOutcome[] }) => {
      if (m.ready) {
        this.ready = !this.closed;
        return;
      }
      // A message's outcomes come back in parts, in order (see the worker's ANSWER_EVERY_MS).
      const batch = this.inFlight.get(m.id!);
      if (!batch) return;
      const from = m.from ?? 0;
      m.outcomes!.forEach((o, i) => {
        const p = batch[from + i]!;
        p.settled = true;
        p.resolve(o);
      });
      if (from + m.outcomes!.length >= batch.length) this.inFlight.delete(m.id!);
    });
    w.on("error", () => {
      this.failed = true;
      this.lost(w);
    });
    w.on("exit", () => this.lost(w));
    this.worker = w;
  }

  /** The worker is gone (or closing): whatever it had not answered is checked here. */
  private lost(w: Worker | undefined): void {
    if (!w || this.worker !== w) return;
    this.worker = undefined;
    this.ready = false;
    const left = [...this.inFlight.values()].flat().filter((p) => !p.settled).concat(this.queue);
    this.inFlight.clear();
    this.queue = [];
    for (const p of left) p.resolve(runSignatureJob(p.job));
  }

  private submit(job: SignatureJob): Promise<SignatureOutcome> {
    return new Promise((resolve) => {
      this.queue.push({ job, resolve });
      if (!this.flushScheduled) {
        this.flushScheduled = true;
        // Checks asked for by the requests of one turn of the event loop cross to the worker in one message.
        setImmediate(() => this.flush());
      }
    });
  }

  private flush(): void {
    this.flushScheduled = false;
    const jobs = this.queue;
    this.queue = [];
    if (jobs.length === 0) return;
    if (!this.worker || !this.ready) {
      for (const p of jobs) p.resolve(runSignatureJob(p.job));
      return;
    }
    const id = this.nextId++;
    this.inFlight.set(id, jobs);
    this.worker.postMessage({ id, jobs: jobs.map((p) => p.job) });
  }
}

function errorOf(o: Extract<SignatureOutcome, { ok: false }>): UkeyError {
  return new UkeyError(o.code as ErrorCode, { params: o.params, detail: o.detail });
}
