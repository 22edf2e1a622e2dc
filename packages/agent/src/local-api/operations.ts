import { randomBytes, randomUUID, timingSafeEqual } from "node:crypto";
import { UkeyError, isUkeyError } from "@ukey/policy";
import type { FaultPoint, FlowContext, Flows, ServerConnection } from "../flows/flow-types.js";
import { institutionKeyVendors } from "../flows/key-vendor-source.js";
import type { KeyStoreBackend } from "../keys/key-store.js";
import type { ProgressEvent, Prompter } from "../prompter.js";
import type { OperationAnswer, OperationInput, OperationRequest, OperationView } from "./protocol.js";

/** How long an operation waits for the holder before it fails with SESSION_EXPIRED. */
export const defaultInputTimeoutMs = 10 * 60 * 1000;
/** How long a finished operation can still be read. */
const keepFinishedMs = 10 * 60 * 1000;

/** What the PIN page shows about the PIN it asks for (never the PIN). */
export interface PinPrompt {
  operationId: string;
  operationKind: OperationRequest["kind"];
  /** The site that started the operation. */
  origin: string;
  tokenSerial: string;
  tokenLabel: string;
  reason: string;
  so: boolean;
  newPin: boolean;
  /** The token is a PKCS#12 file: its PIN is the file's password. */
  file?: boolean;
  /** The key has its own PIN pad: the page asks for no PIN (see Prompter.pin). */
  keyPad?: boolean;
  retry?: { code: string; triesLeft?: number };
}

export interface OperationsOptions {
  flows: Flows;
  /** The key store the flows use (opened once by the caller and shared). */
  backend: () => Promise<KeyStoreBackend>;
  server: ServerConnection;
  /** The URL of the agent's PIN page for one ask. */
  promptUrl: (operationId: string, nonce: string) => string;
  now: () => Date;
  /** Default 10 minutes. */
  inputTimeoutMs?: number;
  /** One line per event; never receives a PIN, an ID number or a code. */
  log: (line: string) => void;
  fault?: FaultPoint;
  /** The agent's pairings file, which the doctor checks. */
  pairingsFile?: string;
}

interface PendingAsk {
  input: OperationInput;
  resolve(value: unknown): void;
  reject(err: UkeyError): void;
  timer: NodeJS.Timeout;
  /** For a PIN ask: the single-use nonce of its page and what the page shows. */
  pin?: { nonce: string; prompt: PinPrompt };
}

interface Operation {
  id: string;
  origin: string;
  kind: OperationRequest["kind"];
  /** Operations with the same key never run at once (the token's serial; "doctor" for the doctor). */
  lockKey: string;
  state: OperationView["state"];
  progress: OperationView["progress"];
  result?: unknown;
  error?: OperationView["error"];
  pending?: PendingAsk;
  revision: number;
  endedAt?: number;
  waiters: Set<() => void>;
  /**
   * The new PIN's second entry, typed in the same page as the first: it
   * answers the flow's confirming ask that follows at once, and is dropped
   * at anything else the flow does.
   */
  newPinAgain?: string;
}

/**
 * The operations the portal starts through the local API. Each runs one
 * flow with a Prompter that turns every ask into the operation's `input`
 * and waits for the answer: POST .../input for everything but the PIN,
 * the agent's own PIN page for the PIN. One operation at a time per token;
 * an operation belongs to the origin that started it and no other origin
 * can see or answer it. Operations live in memory: an agent restart ends
 * them, and the flows' resumable orders pick up what they left.
 */
export class Operations {
  private readonly ops = new Map<string, Operation>();
  private readonly inputTimeoutMs: number;
  private closed = false;

  constructor(private readonly o: OperationsOptions) {
    this.inputTimeoutMs = o.inputTimeoutMs ?? defaultInputTimeoutMs;
  }

  /**
   * Starts an operation for `origin` and returns its first view.
   * @throws UkeyError OPERATION_IN_PROGRESS while another operation runs on the same token.
   */
  start(origin: string, request: OperationRequest): OperationView {
    this.sweep();
    const lockKey = request.kind === "doctor" ? "doctor" : request.tokenSerial;
    for (const other of this.ops.values()) {
      if (other.lockKey === lockKey && other.endedAt === undefined) {
        throw new UkeyError("OPERATION_IN_PROGRESS", { params: { token: lockKey } });
      }
    }
    const op: Operation = {
      id: randomUUID(), origin, kind: request.kind, lockKey, state: "running", progress: [], revision: 0, waiters: new Set(),
    };
    this.ops.set(op.id, op);
    this.o.log(`operation ${op.id} ${op.kind} started by ${origin}`);
    void this.run(op, request);
    return this.view(op);
  }

  /**
   * The operation's view; with `waitMs`, waits until it has more progress
   * than `after`, a revision other than `revision`, or has ended (without
   * `revision`, an operation waiting for input answers at once).
   * @throws UkeyError OPERATION_NOT_FOUND for an unknown id or another origin's operation.
   */
  async get(origin: string, id: string, q: { after?: number; revision?: number; waitMs?: number } = {}): Promise<OperationView> {
    const op = this.find(origin, id);
    const ready = () =>
      op.endedAt !== undefined
      || (q.after !== undefined && op.progress.length > q.after)
      || (q.revision !== undefined ? op.revision !== q.revision : op.state === "needs-input");
    if (!q.waitMs || ready() || this.closed) return this.view(op);
    await new Promise<void>((resolve) => {
      const timer = setTimeout(done, q.waitMs);
      function done() {
        clearTimeout(timer);
        op.waiters.delete(check);
        resolve();
      }
      const check = () => { if (ready()) done(); };
      op.waiters.add(check);
    });
    return this.view(op);
  }

  /**
   * Answers the operation's current input (never the PIN: that is typed in the PIN page).
   * @throws UkeyError OPERATION_NOT_FOUND; REQUEST_INVALID when the operation is not waiting for this answer.
   */
  answer(origin: string, id: string, answer: OperationAnswer): OperationView {
    const op = this.find(origin, id);
    const ask = op.pending;
    if (!ask) throw new UkeyError("REQUEST_INVALID", { params: { reason: "the operation is not waiting for an answer" } });
    const a = answer as Record<string, unknown>;
    const wrong = (expected: string) =>
      new UkeyError("REQUEST_INVALID", { params: { reason: `the operation is waiting for ${ask.input.kind}: answer with ${expected}` } });
    let value: unknown;
    switch (ask.input.kind) {
      case "pin":
        throw new UkeyError("REQUEST_INVALID", { params: { reason: "the PIN is typed only in the agent's PIN page (input.promptUrl), never sent through the API" } });
      case "id-number":
        if (typeof a.idNumber !== "string") throw wrong("{idNumber}");
        value = a.idNumber.trim();
        break;
      case "one-time-code":
        if (a.resend === true) value = "resend";
        else if (typeof a.code === "string") value = a.code.trim();
        else throw wrong("{code} or {resend: true}");
        break;
      case "step-up":
        if (a.stepUpDone !== true) throw wrong("{stepUpDone: true}");
        value = undefined;
        break;
      case "confirm":
        if (typeof a.confirm !== "boolean") throw wrong("{confirm: true|false}");
        value = a.confirm;
        break;
    }
    this.settle(op, ask);
    ask.resolve(value);
    return this.view(op);
  }

  /** What the PIN page shows for this ask, or undefined when the nonce is not the current one (used, expired, unknown). */
  pinPrompt(operationId: string, nonce: string): PinPrompt | undefined {
    return this.pinAsk(operationId, nonce)?.pin?.prompt;
  }

  /**
   * Hands a PIN typed in the PIN page to the waiting flow. The nonce is
   * spent whatever follows. For a new PIN the page asks it twice; the
   * second entry (`again`, equal to `pin`) answers the flow's own
   * confirming ask, so the holder types it twice, not four times.
   * Returns false when the nonce was not the current one.
   */
  submitPin(operationId: string, nonce: string, pin: string, again?: string): boolean {
    const ask = this.pinAsk(operationId, nonce);
    const op = this.ops.get(operationId);
    if (!ask || !op) return false;
    this.settle(op, ask);
    if (ask.pin?.prompt.newPin && again !== undefined) op.newPinAgain = again;
    ask.resolve(pin);
    return true;
  }

  /**
   * After a PIN was handed over: waits (up to `waitMs`) until the operation
   * asks something again, ends, or waits on the key (its OK button or PIN pad), and returns what the PIN page should say
   * next (a following PIN, a wrong one's retry included, is shown in the
   * same window).
   */
  async afterPin(operationId: string, waitMs: number): Promise<{ state: OperationView["state"]; nextPin?: { url: string }; error?: OperationView["error"]; input?: OperationInput; onKey?: { zh: string; en: string } }> {
    const op = this.ops.get(operationId);
    if (!op) return { state: "failed" };
    const deadline = Date.now() + waitMs;
    // The key waiting for the holder (its OK button, its PIN pad) is news the page shows at once.
    const onKeyStep = () => ["press-button", "key-pad"].includes(op.progress.at(-1)?.step ?? "");
    while (op.state === "running" && !this.closed && !onKeyStep()) {
      const left = deadline - Date.now();
      if (left <= 0) break;
      await this.get(op.origin, op.id, { revision: op.revision, waitMs: left });
    }
    const next = op.pending?.input;
    // The key waits for the holder (its OK button, or its PIN pad): the page says so instead of "running".
    const last = op.progress.at(-1);
    const onKey = op.state === "running" && last && onKeyStep() ? { zh: last.zh, en: last.en } : undefined;
    return {
      state: op.state,
      ...(onKey ? { onKey } : {}),
      ...(next?.kind === "pin" ? { nextPin: { url: next.promptUrl } } : {}),
      ...(op.error ? { error: op.error } : {}),
      ...(next ? { input: next } : {}),
    };
  }

  /** Ends every wait and fails every ask; running flows then end with SESSION_EXPIRED. */
  close(): void {
    this.closed = true;
    for (const op of this.ops.values()) {
      const ask = op.pending;
      if (ask) {
        this.settle(op, ask);
        ask.reject(new UkeyError("SESSION_EXPIRED", { detail: "the agent stopped" }));
      }
      for (const w of [...op.waiters]) w();
    }
  }

  private pinAsk(operationId: string, nonce: string): PendingAsk | undefined {
    const ask = this.ops.get(operationId)?.pending;
    const expected = ask?.pin?.nonce;
    if (!ask || expected === undefined) return undefined;
    const a = Buffer.from(nonce, "utf8");
    const b = Buffer.from(expected, "utf8");
    return a.length === b.length && timingSafeEqual(a, b) ? ask : undefined;
  }

  private find(origin: string, id: string): Operation {
    const op = this.ops.get(id);
    if (!op || op.origin !== origin) throw new UkeyError("OPERATION_NOT_FOUND", { params: { id: id.slice(0, 64) } });
    return op;
  }

  private async run(op: Operation, request: OperationRequest): Promise<void> {
    try {
      const backend = await this.o.backend();
      const base = { backend, server: this.o.server, ...(this.o.fault ? { fault: this.o.fault } : {}) };
      const ctx: FlowContext = { ...base, prompter: this.prompter(op, request, backend.kind === "pkcs12"), channel: "web" };
      const { flows } = this.o;
      let result: unknown;
      switch (request.kind) {
        case "renew":
          result = await flows.renew(ctx, { tokenSerial: request.tokenSerial, ...(request.certSerialHex ? { certSerialHex: request.certSerialHex } : {}) });
          break;
        case "download":
          result = await flows.download(ctx, { tokenSerial: request.tokenSerial, referenceNumber: request.referenceNumber, authorizationCode: request.authorizationCode });
          break;
        case "initialise":
          result = await flows.initialise(ctx, { tokenSerial: request.tokenSerial, ...(request.label !== undefined ? { label: request.label } : {}) });
          break;
        case "change-pin":
          await flows.changePin(ctx, { tokenSerial: request.tokenSerial });
          result = {};
          break;
        case "clean-up":
          result = await flows.cleanUp(ctx, { tokenSerial: request.tokenSerial });
          break;
        case "doctor":
          result = await flows.doctor({
            ...base, ...(this.o.pairingsFile ? { pairingsFile: this.o.pairingsFile } : {}),
            vendors: await institutionKeyVendors(this.o.server), ...(request.knownSerial ? { knownSerial: request.knownSerial } : {}),
          });
          break;
        case "read-certificates":
          result = await flows.readCertificates(ctx, { tokenSerial: request.tokenSerial });
          break;
      }
      op.result = result;
      op.state = "done";
      this.o.log(`operation ${op.id} ${op.kind} done`);
    } catch (e) {
      const u = isUkeyError(e) ? e : new UkeyError("INTERNAL", { cause: e });
      if (!isUkeyError(e)) this.o.log(`operation ${op.id} ${op.kind} failed: ${(e as Error)?.stack ?? String(e)}`);
      else this.o.log(`operation ${op.id} ${op.kind} failed: ${u.code}`);
      const p = u.toProblem();
      op.error = {
        code: p.code,
        message: { zh: p.message["zh-CN"], en: p.message.en },
        remedy: { zh: p.remedy["zh-CN"], en: p.remedy.en },
        ...(Object.keys(u.params).length > 0 ? { params: u.params } : {}),
      };
      op.state = "failed";
    } finally {
      op.newPinAgain = undefined;
      if (op.pending) {
        // A flow that ends without waiting for its own question leaves nothing to answer.
        clearTimeout(op.pending.timer);
        op.pending = undefined;
      }
      op.endedAt = this.o.now().getTime();
      this.changed(op);
    }
  }

  private prompter(op: Operation, request: OperationRequest, file: boolean): Prompter {
    return {
      pin: (r) => {
        const again = op.newPinAgain;
        op.newPinAgain = undefined;
        if (r.newPin && again !== undefined) return Promise.resolve(again);
        const nonce = randomBytes(24).toString("base64url");
        const input: OperationInput = {
          kind: "pin",
          promptUrl: this.o.promptUrl(op.id, nonce),
          ...(r.so ? { so: true } : {}),
          ...(r.newPin ? { newPin: true } : {}),
          ...(r.keyPad ? { keyPad: true } : {}),
          ...(r.retry ? { retry: r.retry } : {}),
        };
        const prompt: PinPrompt = {
          operationId: op.id, operationKind: request.kind, origin: op.origin,
          tokenSerial: r.tokenSerial, tokenLabel: r.tokenLabel, reason: r.reason,
          so: r.so === true, newPin: r.newPin === true, ...(file ? { file: true } : {}), ...(r.keyPad ? { keyPad: true } : {}), ...(r.retry ? { retry: r.retry } : {}),
        };
        return this.ask<string>(op, input, { nonce, prompt });
      },
      idNumber: (r) => this.ask<string>(op, { kind: "id-number", idType: r.idType, ...(r.retry ? { retry: r.retry } : {}) }),
      oneTimeCode: (r) => this.ask<string | "resend">(op, {
        kind: "one-time-code", channel: r.channel, maskedTo: r.maskedTo,
        expiresAt: r.expiresAt.toISOString(), resendAfter: r.resendAfter.toISOString(),
        ...(r.retry ? { retry: r.retry } : {}),
      }),
      stepUp: (r) => this.ask<void>(op, { kind: "step-up", approvalUrl: r.approvalUrl, ...(r.expiresAt ? { expiresAt: r.expiresAt.toISOString() } : {}) }),
      confirm: (r) => this.ask<boolean>(op, { kind: "confirm", question: r.question, consequences: [...r.consequences], ...(r.preview ? { preview: r.preview } : {}) }),
      progress: (event: ProgressEvent) => {
        op.newPinAgain = undefined;
        op.progress.push({ step: event.step, zh: event.zh, en: event.en, at: this.o.now().toISOString(), ...(event.timeoutSeconds !== undefined ? { timeoutSeconds: event.timeoutSeconds } : {}) });
        this.changed(op);
      },
    };
  }

  private ask<T>(op: Operation, input: OperationInput, pin?: PendingAsk["pin"]): Promise<T> {
    op.newPinAgain = undefined;
    if (this.closed) return Promise.reject(new UkeyError("SESSION_EXPIRED", { detail: "the agent stopped" }));
    if (op.pending) return Promise.reject(new UkeyError("INTERNAL", { detail: `the flow asked for ${input.kind} while ${op.pending.input.kind} was open` }));
    return new Promise<T>((resolve, reject) => {
      const ask: PendingAsk = {
        input,
        resolve: resolve as (v: unknown) => void,
        reject,
        timer: setTimeout(() => {
          if (op.pending !== ask) return;
          this.settle(op, ask);
          this.o.log(`operation ${op.id} ${op.kind}: no ${input.kind} within ${Math.round(this.inputTimeoutMs / 1000)} s`);
          reject(new UkeyError("SESSION_EXPIRED", { detail: `no ${input.kind} was given within ${Math.round(this.inputTimeoutMs / 60_000)} minutes` }));
        }, this.inputTimeoutMs),
        ...(pin ? { pin } : {}),
      };
      ask.timer.unref();
      op.pending = ask;
      op.state = "needs-input";
      this.o.log(`operation ${op.id} ${op.kind} waits for ${input.kind}`);
      this.changed(op);
    });
  }

  /** The ask is over (answered, timed out or abandoned): the operation runs on. */
  private settle(op: Operation, ask: PendingAsk): void {
    clearTimeout(ask.timer);
    if (op.pending === ask) op.pending = undefined;
    if (op.endedAt === undefined) op.state = "running";
    this.changed(op);
  }

  private changed(op: Operation): void {
    op.revision++;
    for (const w of [...op.waiters]) w();
  }

  private view(op: Operation): OperationView {
    const input = op.pending?.input;
    return {
      id: op.id,
      kind: op.kind,
      state: op.state,
      revision: op.revision,
      progress: op.progress.map((p) => ({ ...p })),
      ...(input ? { input: structuredClone(input) } : {}),
      ...(op.state === "done" ? { result: op.result } : {}),
      ...(op.error ? { error: op.error } : {}),
    };
  }

  private sweep(): void {
    const t = this.o.now().getTime();
    for (const [id, op] of this.ops) {
      if (op.endedAt !== undefined && t - op.endedAt > keepFinishedMs && op.waiters.size === 0) this.ops.delete(id);
    }
  }
}
