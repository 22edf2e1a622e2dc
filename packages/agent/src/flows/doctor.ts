import { existsSync, readFileSync } from "node:fs";
import { UkeyError, defaultKeyVendors, detectKeyVendor, isUkeyError, type ErrorCode, type KeyVendorTable } from "@ukey/policy";
import type { KeyStoreBackend, TokenInfo } from "../keys/key-store.js";
import { checkPkcs11Sm2, type MechanismSource } from "../keys/pkcs11-sm2.js";
import { vendorOf } from "../keys/token-vendor.js";
import { ServerClient } from "../server-client.js";
import type { DoctorCheck, FlowContext } from "./flow-types.js";

/** Below this many free bytes a new key pair and certificate may not fit. */
const minFreeBytes = 4096;
/** More than this between the computer's clock and the server's is reported. */
const maxSkewSeconds = 300;

const codeOf = (e: unknown): ErrorCode => (e instanceof UkeyError ? e.code : "INTERNAL");
const fail = (id: DoctorCheck["id"], e: unknown, zh: string, en: string): DoctorCheck => ({
  id, ok: false, zh, en, code: codeOf(e), ...(e instanceof UkeyError && Object.keys(e.params).length > 0 ? { params: e.params } : {}),
});

/**
 * Checks, in the order a holder would fix them: the PKCS#11 module (or
 * file) loads, a token is present (one, or the one named), its PIN is not
 * locked, it has room (when the module tells), its PKCS#11 module offers
 * the SM2 mechanisms the vendor table names for it (only when the table
 * names any: TOKEN_MECHANISM_MISSING, as renewal would refuse), it holds a certificate, the
 * server answers as a ukey-renew server, its HTTPS certificate is trusted,
 * the clocks agree within five minutes, the pairings file is readable.
 * Each failing check carries the catalogue code whose remedy applies.
 * Never throws for what it checks.
 */
export async function doctorFlow(ctx: Omit<FlowContext, "prompter" | "channel" | "backend"> & {
  backend: KeyStoreBackend | { error: unknown; location: string };
  tokenSerial?: string;
  pairingsFile?: string;
  /**
   * The backend is the default file token only because no PKCS#11 module
   * or SKF library was found (the holder did not ask for a file). When that
   * file does not exist either, the check says no UKey driver is installed
   * instead of "loaded file-token.p12" and "no key found".
   */
  fileTokenFallback?: boolean;
  /**
   * The institution's key vendor table, for the advice when no key is seen
   * and the SM2 mechanism check (default: the backend's keyVendors, else
   * the built-in one).
   */
  vendors?: KeyVendorTable;
  /**
   * The serial of the holder's key as the server recorded it at the last
   * issuance (or as the holder named it with --token), when known: the
   * advice is then that key's generation's alone.
   */
  knownSerial?: string;
}): Promise<DoctorCheck[]> {
  const checks: DoctorCheck[] = [];
  const b = ctx.backend;
  const vendors = ctx.vendors ?? ("error" in b ? undefined : b.keyVendors) ?? defaultKeyVendors;
  const noKeyAdvice = () => checks.push(...adviceWhenNoKey(vendors, ctx.knownSerial ?? ctx.tokenSerial));
  let token: TokenInfo | undefined;
  if (!("error" in b) && b.kind === "pkcs12" && ctx.fileTokenFallback && !existsSync(b.location)) {
    checks.push({
      id: "module", ok: false, code: "TOKEN_DRIVER_MISSING",
      zh: "这台电脑没有安装 UKey 驱动程序（没有找到 PKCS#11 模块或国密 SKF 驱动库）：请安装开户银行或机构提供的 UKey 驱动程序",
      en: "No UKey driver is installed on this computer (no PKCS#11 module or SKF library was found): install the UKey driver your bank or institution provides",
    });
    noKeyAdvice();
  } else if ("error" in b) {
    checks.push(fail("module", b.error, `无法加载 ${b.location}`, `Cannot load ${b.location}`));
  } else {
    let tokens: TokenInfo[] | undefined;
    try {
      tokens = await b.listTokens();
      checks.push({ id: "module", ok: true, zh: `已加载 ${b.location}`, en: `Loaded ${b.location}` });
    } catch (e) {
      checks.push(fail("module", e, `无法使用 ${b.location}`, `Cannot use ${b.location}`));
    }
    if (tokens) {
      const chosen = ctx.tokenSerial ? tokens.filter((t) => t.serial === ctx.tokenSerial) : tokens;
      if (chosen.length === 1) {
        token = chosen[0]!;
        checks.push({ id: "token", ok: true, zh: `UKey ${token.label}（序列号 ${token.serial}，${token.manufacturer} ${token.model}）`, en: `Key ${token.label} (serial ${token.serial}, ${token.manufacturer} ${token.model})` });
      } else if (chosen.length === 0) {
        checks.push({ id: "token", ok: false, zh: "没有检测到 UKey", en: "No key found", code: "TOKEN_NOT_PRESENT" });
        noKeyAdvice();
      } else {
        const list = chosen.map((t) => t.serial).join(", ");
        checks.push({ id: "token", ok: false, zh: `插着多把 UKey：${list}；请用 --token 指定`, en: `Several keys: ${list}; name one with --token`, code: "TOKEN_MULTIPLE_PRESENT" });
      }
    }
    if (token) {
      const pin = token.pin;
      if (token.backend === "pkcs12") checks.push({ id: "pin", ok: true, zh: "证书文件由它的密码（PIN）保护；文件不会因输错而锁定", en: "The certificate file is protected by its password (PIN); a file does not lock after wrong tries" });
      else if (pin.locked) checks.push({ id: "pin", ok: false, zh: "PIN 已锁定", en: "The PIN is locked", code: "TOKEN_PIN_LOCKED" });
      else if (!pin.initialized) checks.push({ id: "pin", ok: false, zh: "UKey 尚未设置 PIN", en: "The key has no PIN set", code: "TOKEN_PIN_LOCKED" });
      else if (pin.finalTry) checks.push({ id: "pin", ok: true, zh: "PIN 未锁定，但只剩最后一次尝试机会", en: "The PIN is not locked, but one wrong try locks it" });
      else checks.push({ id: "pin", ok: true, zh: pin.countLow ? "PIN 未锁定（已有输错记录）" : "PIN 未锁定", en: pin.countLow ? "The PIN is not locked (earlier wrong tries)" : "The PIN is not locked" });
      const free = [token.freePublicMemory, token.freePrivateMemory].filter((x): x is number => typeof x === "number");
      if (free.length === 0) checks.push({ id: "storage", ok: true, zh: "UKey 未报告剩余空间", en: "The key does not report its free space" });
      else {
        const least = Math.min(...free);
        checks.push(least < minFreeBytes
          ? { id: "storage", ok: false, zh: `剩余空间 ${least} 字节`, en: `${least} bytes free`, code: "TOKEN_STORAGE_FULL" }
          : { id: "storage", ok: true, zh: `剩余空间 ${least} 字节`, en: `${least} bytes free` });
      }
      if (b.kind === "pkcs11" && hasMechanisms(b) && vendorOf(token, vendors)?.pkcs11Sm2) checks.push(await mechanismCheck(b, token, vendors));
      try {
        const certs = await b.listCertificates(token.serial);
        const hidden = certs.length === 0 && b.certificatesNeedPin?.(token.serial) === true;
        checks.push(hidden
          ? { id: "certificate", ok: true, zh: "证书文件中的证书要输入密码后才能读取：请在“我的证书”中点“输入 PIN 查看证书”", en: "The file's certificates are read once its password is typed: on \"My certificates\", press \"Type the PIN to see the certificates\"" }
          : certs.length > 0
          ? { id: "certificate", ok: true, zh: `找到 ${certs.length} 张证书`, en: `${certs.length} certificate(s) found` }
          : { id: "certificate", ok: false, zh: "没有找到证书（文件证书需要密码才能读取）", en: "No certificate found (a file needs its password to be read)", code: "NO_CERTIFICATE_FOUND" });
      } catch (e) {
        checks.push(fail("certificate", e, "无法读取证书", "Cannot read the certificates"));
      }
    }
  }
  checks.push(...await serverChecks(ctx.server.url, ctx.server.caPem));
  checks.push(pairingsCheck(ctx.pairingsFile));
  return checks;
}

const hasMechanisms = (b: KeyStoreBackend): b is KeyStoreBackend & MechanismSource =>
  typeof (b as Partial<MechanismSource>).mechanisms === "function";

/** The check renewal makes before it generates an SM2 key (checkPkcs11Sm2), made before the holder tries. */
async function mechanismCheck(b: MechanismSource, token: TokenInfo, vendors: KeyVendorTable): Promise<DoctorCheck> {
  try {
    await checkPkcs11Sm2(b, token, vendors);
    return { id: "mechanisms", ok: true, zh: "UKey 驱动提供国密 SM2 所需的机制", en: "The UKey driver offers the SM2 mechanisms" };
  } catch (e) {
    const what = isUkeyError(e, "TOKEN_MECHANISM_MISSING") ? String(e.params.mechanism) : "SM2";
    return fail("mechanisms", e, `UKey 驱动没有提供 ${what}`, `The UKey driver does not offer ${what}`);
  }
}

/**
 * What the vendor table advises when no key is seen (seed 000: hold C
 * while plugging in a PF16 key, the up key for PF20, switch a 4th
 * generation off or it enters Bluetooth mode). With the holder's serial
 * known: that key's entry alone, named. Otherwise: each generation the
 * table knows by a printed serial prefix, so the holder finds theirs.
 */
export function adviceWhenNoKey(vendors: KeyVendorTable, knownSerial?: string): DoctorCheck[] {
  const line = (zhHead: string, enHead: string, guidance: { zh: string; en: string }[]): DoctorCheck =>
    ({ id: "advice", ok: true, zh: `${zhHead}${guidance.map((g) => g.zh).join("")}`, en: `${enHead}${guidance.map((g) => g.en).join(" ")}` });
  const known = knownSerial ? detectKeyVendor({ serial: knownSerial }, vendors) : undefined;
  if (known && known.guidance.length > 0) {
    const product = known.product ?? known.vendor;
    return [line(`您的 UKey（${product.zh}，序列号 ${knownSerial}）：`, `Your UKey (${product.en}, serial ${knownSerial}): `, known.guidance)];
  }
  return vendors
    .filter((e) => e.generation !== undefined && e.match.serialPrefix !== undefined && (e.guidance?.length ?? 0) > 0)
    .map((e) => {
      const product = e.product ?? e.vendor;
      return line(`${product.zh}（序列号以 ${e.match.serialPrefix} 开头）：`, `${product.en} (serial starting ${e.match.serialPrefix}): `, e.guidance!);
    });
}

async function serverChecks(url: string, caPem: string | undefined): Promise<DoctorCheck[]> {
  let client: ServerClient;
  try {
    client = new ServerClient({ url, ...(caPem ? { caPem } : {}) }, 15_000);
  } catch (e) {
    return [fail("server", e, `服务器地址不正确：${url}`, `Not a server address: ${url}`)];
  }
  const out: DoctorCheck[] = [];
  const https = url.startsWith("https:");
  try {
    await client.ping();
    out.push({ id: "server", ok: true, zh: `更新服务器 ${client.url} 可以连接`, en: `The renewal server ${client.url} answers` });
    out.push(https
      ? { id: "trust", ok: true, zh: "服务器的 HTTPS 证书受信任", en: "The server's HTTPS certificate is trusted" }
      : { id: "trust", ok: true, zh: "未加密连接（http），只应用于本机测试", en: "Unencrypted (http): for local testing only" });
  } catch (e) {
    if (isUkeyError(e, "SERVER_CERT_UNTRUSTED")) {
      out.push({ id: "server", ok: true, zh: `更新服务器 ${client.url} 可以连接`, en: `The renewal server ${client.url} answers` });
      out.push(fail("trust", e, `服务器的 HTTPS 证书不受信任（${e.params.reason}）`, `The server's HTTPS certificate is not trusted (${e.params.reason})`));
    } else {
      out.push(fail("server", e, `无法连接更新服务器 ${client.url}`, `Cannot reach the renewal server ${client.url}`));
    }
    return out;
  }
  const d = client.lastDate;
  if (!d) {
    out.push({ id: "clock", ok: true, zh: "服务器未提供时间，无法比较", en: "The server sent no time to compare with" });
  } else {
    const skew = Math.round((d.local.getTime() - d.server.getTime()) / 1000);
    out.push(Math.abs(skew) > maxSkewSeconds
      ? { id: "clock", ok: false, zh: `电脑时间与服务器相差 ${skew} 秒`, en: `The computer's clock is ${skew} s off the server's`, code: "CLOCK_SKEW" }
      : { id: "clock", ok: true, zh: `电脑时间与服务器相差 ${skew} 秒以内`, en: `The clock is within ${Math.abs(skew)} s of the server's` });
  }
  return out;
}

function pairingsCheck(path: string | undefined): DoctorCheck {
  if (!path) return { id: "pairings", ok: true, zh: "未配置配对文件", en: "No pairings file configured" };
  let text: string;
  try {
    text = readFileSync(path, "utf8");
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === "ENOENT") return { id: "pairings", ok: true, zh: "尚无已配对的网站", en: "No site paired yet" };
    return { id: "pairings", ok: false, zh: `无法读取 ${path}`, en: `Cannot read ${path}`, code: "FILE_UNREADABLE" };
  }
  try {
    const j = JSON.parse(text) as { pairings?: unknown[] };
    const n = Array.isArray(j.pairings) ? j.pairings.length : 0;
    return { id: "pairings", ok: true, zh: `已配对 ${n} 个网站`, en: `${n} site(s) paired` };
  } catch {
    return { id: "pairings", ok: false, zh: `${path} 内容已损坏`, en: `${path} is damaged`, code: "CONFIG_INVALID" };
  }
}
