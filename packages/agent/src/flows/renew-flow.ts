import { UkeyError, formatPolicyDate, isUkeyError, keyAlgorithms, shortSerial, type KeyAlgorithm } from "@ukey/policy";
import { isEncryptionCertificate } from "../keys/certificate-fields.js";
import { objectLabels, type TokenCertificate, type TokenKey, type TokenSession } from "../keys/key-store.js";
import { ServerClient, type OrderChallenge, type OrderView, type PossessionSigner, type RenewalInfo } from "../server-client.js";
import { certIdOf, derOfPem, spkiOf } from "./certificate-id.js";
import { orderStateOf, planCleanUp, removeInvalid, serverViewOf } from "./clean-up.js";
import { maybeCrash } from "./fault.js";
import { encryptionHalfOf, installEncryptionHalf } from "./pair-install.js";
import { renewalPreviewOf } from "./preview.js";
import { previewText } from "./preview-text.js";
import type { FlowContext, RenewRequest, RenewResult } from "./flow-types.js";
import { openSession, report, sameSerial, sameSpki } from "./token-access.js";
import { institutionKeyVendors } from "./key-vendor-source.js";
import { withRoomOnToken, type RoomOptions } from "./storage-room.js";

/** The exact bytes the server checks for proof of possession (renewal-order-service.ts possessionMessage). */
export function possessionMessage(orderId: string, challenge: string): Uint8Array {
  return new Uint8Array(Buffer.from(`ukey-renew possession v1\n${orderId}\n${challenge}`, "utf8"));
}

const maxSteps = 40;
/** Proofs of possession one run makes after its first (a credential that expired or that another run replaced). */
const maxReproofs = 3;

/**
 * Renews one certificate on a token through a renewal order, or finishes
 * the order an earlier run left (found by the pending label on the token,
 * or returned by the server as the certificate's open order):
 * proof of possession with the current key (it answers the order
 * credential every later step sends; an earlier run's order is proved
 * again, with the new certificate's key once the old one is gone) → step-up / ID number /
 * one-time code as the order asks → a new key on the token labelled
 * pending(order) → CSR with an empty subject → install beside its key →
 * installed → complete → clean-up of invalid objects → the new objects
 * labelled current(serial). The pending label stays until the very end,
 * so every interruption is found again; the old certificate stays until
 * the new one is installed and the order complete.
 * @throws UkeyError NO_CERTIFICATE_FOUND, CERT_NOT_ON_TOKEN, CERT_CHOICE_REQUIRED, the server's refusals
 *   (RENEWAL_NOT_YET_OPEN with its date, RENEWAL_WINDOW_CLOSED, CERT_REVOKED, ...), TOKEN_*, SERVER_*.
 */
export async function renewFlow(ctx: FlowContext, request: RenewRequest): Promise<RenewResult> {
  const client = new ServerClient(ctx.server);
  const p = ctx.prompter;
  report(p, "read-token", "正在读取 UKey", "Reading the key");
  const previewed = await beforePin(ctx, client, request);
  const session = await openSession(ctx.backend, p, request.tokenSerial, "renew", { vendors: await institutionKeyVendors(ctx.server) });
  try {
    const certs = await session.listCertificates();
    const run = new RenewalRun(ctx, client, session, request.tokenSerial);
    let order: OrderView;
    let resumed: boolean;
    const pending = await findPendingOrder(client, certs, await session.listKeys(), request.certSerialHex);
    if (pending) {
      resumed = true;
      report(p, "resume", "继续上次未完成的更新", "Resuming the renewal an earlier run left");
      order = await run.prove(pending);
    } else {
      const target = await chooseCertificate(client, ctx.channel, certs, request.certSerialHex);
      // A file's certificates are seen only with its PIN: their preview comes now, still before anything changes.
      if (previewed === undefined || !sameSerial(previewed, target.serialHex)) await confirmRenewal(ctx, client, target);
      report(p, "start-order", `正在为证书（序列号尾号 ${shortSerial(target.serialHex)}）申请更新`, `Starting the renewal of the certificate (serial ending ${shortSerial(target.serialHex)})`);
      const started = await client.startOrder(certIdOf(target.der), ctx.channel);
      resumed = started.resumed;
      if (resumed) report(p, "resume", "继续已有的更新申请", "Resuming the open renewal order");
      order = await run.prove(started);
    }
    return await run.drive(order, resumed);
  } finally {
    await session.close();
  }
}

/**
 * Before the PIN is asked, from what the token shows without it: a
 * certificate whose online renewal is paused (an order failed on wrong
 * answers) is refused at once with the day the pause ends; else the
 * certificate to renew and the new one are shown and the holder confirms
 * (seed 004 §3.5). A token holding an unfinished renewal (a pending label)
 * is left to the resumption, and anything unclear (several certificates and
 * none named, a server that does not answer) to the checks after the PIN.
 * Answers the serial that was previewed, if one was.
 * @throws UkeyError RENEWAL_LOCKED, OPERATION_CANCELLED (the holder said no), CONFIRMATION_REQUIRED (no terminal to ask at).
 */
async function beforePin(ctx: FlowContext, client: ServerClient, request: RenewRequest): Promise<string | undefined> {
  let certs: TokenCertificate[];
  try {
    certs = await ctx.backend.listCertificates(request.tokenSerial);
  } catch {
    return undefined;
  }
  if (certs.some((c) => objectLabels.pendingOrder(c.label))) return undefined;
  let target: TokenCertificate;
  let info: RenewalInfo;
  try {
    target = await chooseCertificate(client, ctx.channel, certs, request.certSerialHex);
    info = await client.renewalInfo(certIdOf(target.der), ctx.channel);
  } catch {
    return undefined;
  }
  if (info.lockedUntil && Date.parse(info.lockedUntil) > Date.now()) throw new UkeyError("RENEWAL_LOCKED", { params: { until: info.lockedUntil } });
  return await confirmRenewal(ctx, client, target, info) ? target.serialHex : undefined;
}

/**
 * Shows the preview of renewing `target` and asks to go on, when the
 * server's advice says it may be renewed now; a refusal is left to the
 * order's start, which gives its reason and dates. Answers whether a
 * preview was shown.
 * @throws UkeyError OPERATION_CANCELLED when the holder says no, CONFIRMATION_REQUIRED, and what the prompter throws.
 */
async function confirmRenewal(ctx: FlowContext, client: ServerClient, target: TokenCertificate, known?: RenewalInfo): Promise<boolean> {
  let info = known;
  if (!info) {
    try {
      info = await client.renewalInfo(certIdOf(target.der), ctx.channel);
    } catch {
      return false;
    }
  }
  if (info.state !== "open" && info.state !== "open-step-up") return false;
  const preview = renewalPreviewOf(target, info);
  if (!preview) return false;
  const go = await ctx.prompter.confirm({
    question: "请核对将要更新的证书和更新后的新证书，确认后再输入 PIN。/ Check the certificate to renew and the new one, then confirm before the PIN.",
    consequences: [previewText(preview, "zh"), previewText(preview, "en")],
    preview,
  });
  if (!go) throw new UkeyError("OPERATION_CANCELLED");
  return true;
}

/**
 * An order an earlier run left: its id is on a pending label. The open
 * ones first, then completed ones whose clean-up may be unfinished (closed
 * orders that issued a certificate; a failed or cancelled one has nothing
 * left to finish). Asks only for each order's challenge, which says
 * whether it is open and which keys may prove possession.
 */
async function findPendingOrder(client: ServerClient, certs: TokenCertificate[], keys: TokenKey[], serial?: string): Promise<OrderChallenge | undefined> {
  const ids = [...new Set([...certs, ...keys].map((o) => objectLabels.pendingOrder(o.label)).filter((x): x is string => !!x && !x.startsWith("download-")))];
  const found: OrderChallenge[] = [];
  for (const id of ids) {
    try {
      const c = await client.challenge(id);
      const installed = certs.filter((x) => objectLabels.pendingOrder(x.label) === id);
      if (serial && !sameSerial(c.certificateSerial, serial) && !installed.some((x) => sameSerial(x.serialHex, serial))) continue;
      if (c.open || c.signers.includes("new-key")) found.push(c);
    } catch (e) {
      if (!isUkeyError(e, "ORDER_NOT_FOUND")) throw e;
    }
  }
  return found.find((c) => c.open) ?? found[0];
}

/**
 * The certificate to renew: the one named, else the only one with its key,
 * else the only one the server says is open for renewal now, else the only
 * one it still knows as live (so that its refusal gives the dates).
 */
async function chooseCertificate(client: ServerClient, channel: "web" | "cli", certs: TokenCertificate[], serial?: string): Promise<TokenCertificate> {
  if (serial) {
    const c = certs.find((x) => sameSerial(x.serialHex, serial));
    if (!c) throw new UkeyError("CERT_NOT_ON_TOKEN", { params: { serial } });
    return c;
  }
  const withKey = certs.filter((c) => c.hasKey && !objectLabels.pendingOrder(c.label));
  // A pair's encryption certificate is renewed with its signing one: the signing certificates are the choice.
  const signing = withKey.filter((c) => !isEncryptionCertificate(c.der));
  const candidates = signing.length ? signing : withKey;
  if (candidates.length === 0) throw new UkeyError("NO_CERTIFICATE_FOUND");
  if (candidates.length === 1) return candidates[0]!;
  const states: { c: TokenCertificate; state: string }[] = [];
  for (const c of candidates) {
    try {
      states.push({ c, state: (await client.renewalInfo(certIdOf(c.der), channel)).state });
    } catch (e) {
      if (!isUkeyError(e, "CERT_NOT_FOUND", "DER_MALFORMED")) throw e;
    }
  }
  const live = states.filter((s) => s.state !== "superseded" && s.state !== "revoked");
  const open = live.filter((s) => s.state === "open" || s.state === "open-step-up");
  if (open.length === 1) return open[0]!.c;
  if (open.length === 0 && live.length === 1) return live[0]!.c;
  if (live.length === 0) throw new UkeyError("NO_CERTIFICATE_FOUND");
  throw new UkeyError("CERT_CHOICE_REQUIRED", { params: { serials: (open.length ? open : live).map((s) => s.c.serialHex).join(", ") } });
}

class RenewalRun {
  constructor(
    private readonly ctx: FlowContext,
    private readonly client: ServerClient,
    private readonly session: TokenSession,
    private readonly tokenSerial: string,
  ) {}

  private get p() {
    return this.ctx.prompter;
  }

  /**
   * Proves possession for an order with the key the challenge allows: the
   * certificate's key while the order is open, else (or when that key is
   * gone) the key this order generated, once its certificate is issued.
   * The server's answer carries the order credential (kept by the client).
   * A challenge another run spent is replaced once.
   * @throws UkeyError CERT_NOT_ON_TOKEN when no key on the token may sign, the server's refusals.
   */
  async prove(challenge: OrderChallenge): Promise<OrderView> {
    report(this.p, "prove-possession", "正在用 UKey 中的当前密钥签名，证明持有该证书", "Signing with the current key to prove possession");
    let c = challenge;
    for (let attempt = 1; ; attempt++) {
      const [signer, keyId] = await this.signerFor(c);
      const signature = await this.session.sign(keyId, possessionMessage(c.id, c.challenge.value));
      try {
        return await this.client.provePossession(c.id, c.challenge.value, signature, signer);
      } catch (e) {
        if (!isUkeyError(e, "CHALLENGE_INVALID") || attempt >= 2) throw e;
        c = await this.client.challenge(c.id);
      }
    }
  }

  private async signerFor(c: OrderChallenge): Promise<[PossessionSigner, string]> {
    const certs = await this.session.listCertificates();
    const old = certs.find((x) => sameSerial(x.serialHex, c.certificateSerial) && x.hasKey);
    const label = objectLabels.pending(c.id);
    const mine = (await this.session.listKeys()).find((k) => k.label === label) ?? certs.find((x) => x.label === label && x.hasKey);
    if (c.open && old && c.signers.includes("certificate")) return ["certificate", old.id];
    if (mine && c.signers.includes("new-key")) return ["new-key", mine.id];
    if (old && c.signers.includes("certificate")) return ["certificate", old.id];
    throw new UkeyError("CERT_NOT_ON_TOKEN", { params: { serial: c.certificateSerial } });
  }

  /** The next step of the order, proving possession again when the credential expired or another run replaced it. */
  async drive(start: OrderView, resumed: boolean): Promise<RenewResult> {
    let order = start;
    let reproofs = 0;
    for (let i = 0; i < maxSteps; i++) {
      try {
        order = await this.advance(order);
      } catch (e) {
        if (!isUkeyError(e, "ORDER_CREDENTIAL_INVALID", "ORDER_CREDENTIAL_REQUIRED") || ++reproofs > maxReproofs) throw e;
        order = await this.prove(await this.client.challenge(order.id));
      }
      if (order.state === "completed") return this.finish(order, resumed);
    }
    throw new UkeyError("SERVER_RESPONSE_INVALID", { params: { server: this.client.url }, detail: `order ${order.id} did not finish in ${maxSteps} steps` });
  }

  /** Takes one step of an order; answers the order after it. */
  private async advance(order: OrderView): Promise<OrderView> {
    if (order.state === "failed") throw failedOrderError(order);
    if (order.state === "cancelled") throw new UkeyError("OPERATION_CANCELLED");
    if (order.state === "completed") return order;
    switch (order.nextStep) {
      case "possession": return this.prove(await this.client.challenge(order.id));
      case "step-up": return this.stepUp(order);
      case "id-number": return this.idNumber(order);
      case "one-time-code": return this.oneTimeCode(order);
      case "csr": return this.submitKey(order, false);
      case "install": return this.install(order);
      case "complete":
        report(this.p, "confirm", "正在确认更新完成", "Confirming the renewal");
        return this.client.complete(order.id);
      default:
        throw new UkeyError("SERVER_RESPONSE_INVALID", { params: { server: this.client.url }, detail: `order ${order.id} in state ${order.state} has no next step` });
    }
  }

  private async stepUp(order: OrderView): Promise<OrderView> {
    for (let attempt = 1; attempt <= 3; attempt++) {
      report(this.p, "step-up", "证书已过期较长时间，需要在另一台设备上确认身份", "The certificate expired a while ago: confirm on a second device");
      const s = await this.client.startStepUp(order.id);
      await this.p.stepUp({ approvalUrl: s.approvalUrl, expiresAt: new Date(s.expiresAt) });
      order = await this.client.getOrder(order.id);
      if (order.nextStep !== "step-up") return order;
    }
    throw new UkeyError("STEP_UP_REQUIRED");
  }

  private async idNumber(order: OrderView): Promise<OrderView> {
    let retry: { code: string; triesLeft?: number } | undefined;
    for (;;) {
      report(this.p, "verify-identity", "请输入登记的证件号码", "Enter the ID number on record");
      // The record's ID type; a server too old to say has only resident IDs.
      const idType = order.idType ?? "resident-id";
      const idNumber = await this.p.idNumber({ idType, ...(retry ? { retry } : {}) });
      try {
        return await this.client.proveIdentity(order.id, idType, idNumber.trim());
      } catch (e) {
        // The server counts the attempts and fails the order after five.
        if (!isUkeyError(e, "IDENTITY_MISMATCH")) throw e;
        const left = e.params.triesLeft;
        retry = { code: e.code, ...(typeof left === "number" ? { triesLeft: left } : {}) };
      }
    }
  }

  private async oneTimeCode(order: OrderView): Promise<OrderView> {
    const channel = order.requirements.oneTimeCode ?? "sms";
    if (!order.codeSentTo) order = await this.sendCode(order);
    let retry: { code: string } | undefined;
    for (let attempt = 1; attempt <= 12; attempt++) {
      report(this.p, "verify-code", `验证码已发送到 ${order.codeSentTo ?? ""}`, `A code was sent to ${order.codeSentTo ?? ""}`);
      const resendAt = order.codeResendAt ? new Date(order.codeResendAt) : new Date();
      const answer = await this.p.oneTimeCode({
        channel, maskedTo: order.codeSentTo ?? "", resendAfter: resendAt,
        // The code lives five minutes from when it was sent, one minute before it may be sent again.
        expiresAt: new Date(resendAt.getTime() - 60_000 + 5 * 60_000), ...(retry ? { retry } : {}),
      });
      if (answer === "resend") {
        try {
          order = await this.sendCode(order);
          retry = undefined;
        } catch (e) {
          if (!isUkeyError(e, "CODE_RESEND_TOO_SOON")) throw e;
          retry = { code: e.code };
        }
        continue;
      }
      try {
        return await this.client.verifyCode(order.id, answer.trim());
      } catch (e) {
        if (isUkeyError(e, "CODE_INVALID")) retry = { code: e.code };
        else if (isUkeyError(e, "CODE_EXPIRED")) {
          order = await this.sendCode(order);
          retry = { code: e.code };
        } else throw e;
      }
    }
    throw new UkeyError("CODE_ATTEMPTS_EXCEEDED");
  }

  private async sendCode(order: OrderView): Promise<OrderView> {
    try {
      return await this.client.sendCode(order.id);
    } catch (e) {
      // Sent a moment ago (by an earlier run): that code is still good.
      if (isUkeyError(e, "CODE_RESEND_TOO_SOON") && order.codeSentTo) return order;
      throw e;
    }
  }

  /**
   * The new key: the pending key of this order if it is still on the token
   * (the server then delivers the same certificate again), else a new one
   * (`fresh`, or none left: the server revokes an undelivered certificate).
   */
  private async submitKey(order: OrderView, fresh: boolean): Promise<OrderView> {
    const label = objectLabels.pending(order.id);
    const keys = await this.session.listKeys();
    let key = fresh ? undefined : keys.find((k) => k.label === label);
    if (fresh) {
      const stale = keys.filter((k) => k.label === label).map((k) => k.id);
      if (stale.length) await this.session.deleteObjects(stale);
    }
    if (!key) {
      report(this.p, "generate-key", "正在 UKey 中生成新的密钥对（私钥不会离开 UKey）", "Generating the new key pair on the key (the private key never leaves it)");
      const algorithm = await this.algorithmFor(order);
      key = await withRoomOnToken(this.session, () => this.session.generateKeyPair(algorithm, label), this.room(order));
      maybeCrash(this.ctx.fault, "after-keygen");
    }
    report(this.p, "submit-csr", "正在提交证书请求", "Sending the certificate request");
    const csr = await this.session.createCsr(key.id, "");
    let issued: OrderView;
    try {
      issued = await this.client.submitCsr(order.id, csr, this.tokenSerial, () => maybeCrash(this.ctx.fault, "after-csr"));
    } catch (e) {
      // The server will never take this key (its algorithm or strength, or the old key again): drop it, so the next run makes a fitting one.
      if (isUkeyError(e) && e.kind === "invalid" && /^(KEY_|CSR_)/.test(e.code)) await this.session.deleteObjects([key.id]);
      throw e;
    }
    maybeCrash(this.ctx.fault, "after-issue");
    return issued;
  }

  /** What a full token may lose to make room (withRoomOnToken): never the certificate being renewed nor the new key. */
  private room(order: OrderView, keyId?: string): RoomOptions {
    return {
      keep: keyId ? [keyId] : [],
      keepSerials: [order.certificate.serial],
      prompter: this.p,
      serverView: serverViewOf(this.client, this.ctx.channel),
      orderState: orderStateOf(this.client),
      ...(this.ctx.fault ? { fault: this.ctx.fault } : {}),
    };
  }

  /** The old key's algorithm when the profile still allows it, else the profile's first. */
  private async algorithmFor(order: OrderView): Promise<KeyAlgorithm> {
    const old = (await this.session.listCertificates()).find((c) => sameSerial(c.serialHex, order.certificate.serial));
    const oldKey = old && (await this.session.listKeys()).find((k) => k.id === old.id);
    const allowed = order.keyAlgorithms.filter((a): a is KeyAlgorithm => (keyAlgorithms as readonly string[]).includes(a));
    if (oldKey && allowed.includes(oldKey.algorithm)) return oldKey.algorithm;
    return allowed[0] ?? "p256";
  }

  /** Installs the issued certificate beside its key; re-keys when that key is gone. */
  private async install(order: OrderView): Promise<OrderView> {
    const nc = order.newCertificate;
    if (!nc) throw new UkeyError("SERVER_RESPONSE_INVALID", { params: { server: this.client.url }, detail: `order ${order.id} is issued without a certificate` });
    const der = derOfPem(nc.pem);
    const key = await this.keyOf(der);
    if (!key) {
      report(this.p, "generate-key", "已签发证书的密钥不在 UKey 中，重新生成密钥", "The issued certificate's key is not on the key: making a new one");
      return this.submitKey(order, true);
    }
    report(this.p, "install", "正在把新证书写入 UKey", "Writing the new certificate to the key");
    await withRoomOnToken(this.session, () => this.session.installCertificate(der, key.id, objectLabels.pending(order.id)), this.room(order, key.id));
    maybeCrash(this.ctx.fault, "after-install");
    await this.installPair(order, key.id);
    return this.client.installed(order.id);
  }

  /** A pair's encryption key and certificate, in the signing key's container (each step skipped when an earlier run did it). */
  private async installPair(order: OrderView, keyId: string): Promise<TokenCertificate | undefined> {
    const half = encryptionHalfOf(order, this.client.url);
    if (!half) return undefined;
    return installEncryptionHalf(this.session, keyId, half, { prompter: this.p, fault: this.ctx.fault, label: objectLabels.pending(order.id) });
  }

  private async keyOf(der: Uint8Array): Promise<TokenKey | undefined> {
    const spki = spkiOf(der);
    return (await this.session.listKeys()).find((k) => sameSpki(k.spki, spki));
  }

  /** After completion: the certificate is on the token, invalid objects go, the new objects get their final label. */
  private async finish(order: OrderView, resumed: boolean): Promise<RenewResult> {
    const nc = order.newCertificate;
    if (!nc) throw new UkeyError("SERVER_RESPONSE_INVALID", { params: { server: this.client.url }, detail: `order ${order.id} is completed without a certificate` });
    const der = derOfPem(nc.pem);
    let installed = (await this.session.listCertificates()).find((c) => sameSerial(c.serialHex, nc.serial));
    if (!installed) {
      const key = await this.keyOf(der);
      if (!key) throw new UkeyError("CERT_NOT_ON_TOKEN", { params: { serial: nc.serial } });
      report(this.p, "install", "正在把新证书写入 UKey", "Writing the new certificate to the key");
      installed = await this.session.installCertificate(der, key.id, objectLabels.pending(order.id));
    }
    const encryption = await this.installPair(order, installed.id);
    report(this.p, "clean-up", "正在清理 UKey 中已失效的证书和密钥", "Removing expired and superseded objects from the key");
    const certs = await this.session.listCertificates();
    const plan = await planCleanUp(certs, await this.session.listKeys(), new Date(), {
      keep: new Set([installed.id, ...(encryption ? [encryption.id] : [])]),
      superseded: [order.certificate.serial],
      serverView: serverViewOf(this.client, this.ctx.channel),
      orderState: orderStateOf(this.client),
    });
    const removed = await removeInvalid(this.session, plan, this.ctx.fault);
    await this.session.relabel(installed.id, objectLabels.current(installed.serialHex));
    report(this.p, "done", `更新完成：新证书（序列号尾号 ${shortSerial(installed.serialHex)}），有效期至 ${formatPolicyDate(Date.parse(nc.notAfter))}`, `Renewed: the new certificate (serial ending ${shortSerial(installed.serialHex)}) is valid until ${formatPolicyDate(Date.parse(nc.notAfter))}`);
    return {
      orderId: order.id, resumed,
      certificate: { serialHex: installed.serialHex, subject: installed.subject, notBefore: nc.notBefore, notAfter: nc.notAfter, pem: nc.pem + nc.chainPem },
      ...(encryption && order.encryptionCertificate ? {
        encryptionCertificate: {
          serialHex: encryption.serialHex, subject: encryption.subject, notBefore: order.encryptionCertificate.notBefore,
          notAfter: order.encryptionCertificate.notAfter, pem: order.encryptionCertificate.pem + nc.chainPem,
        },
      } : {}),
      removed,
    };
  }
}

/**
 * The refusal a failed order stands for. Orders fail only on wrong answers:
 * ID numbers (IDENTITY_ATTEMPTS_EXCEEDED, with how many and until when online
 * renewal rests) or one-time codes (CODE_ATTEMPTS_EXCEEDED).
 */
export function failedOrderError(order: Pick<OrderView, "failure" | "failedAttempts" | "failedUntil">): UkeyError {
  if (order.failure === "IDENTITY_MISMATCH") {
    return new UkeyError("IDENTITY_ATTEMPTS_EXCEEDED", {
      params: { ...(order.failedAttempts !== undefined ? { attempts: order.failedAttempts } : {}), ...(order.failedUntil ? { until: order.failedUntil } : {}) },
    });
  }
  return new UkeyError("CODE_ATTEMPTS_EXCEEDED");
}
