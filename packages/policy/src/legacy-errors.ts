import { catalogue, errorCodes, type ErrorCode } from "./error-catalogue.js";
import { describeError, type ErrorProblem } from "./errors.js";

/**
 * One code or message that a holder met in one of today's renewal systems
 * (the seeds in ../shared/seeds) and may type into a search box, with the
 * catalogue codes that tell what the same trouble means in ukey-renew.
 */
export interface LegacyErrorEntry {
  /** Seed id and the kind of institution, e.g. "001 bank net-banking shield FAQ". */
  source: string;
  /** Where in the guide, e.g. "Q10", "case 3", "5.5", "3.1". */
  section: string;
  /** The code shown by the old system, when it had one ("0124", "HTTP 403.7"). */
  legacyCode?: string;
  /** The message as the guide prints it (zh-CN). */
  legacyMessage: string;
  /** Other wordings of the same trouble in the guide (titles, symptoms), also searched. */
  variants?: string[];
  /** What it meant in that system, and what ukey-renew does instead. */
  meaningZh: string;
  meaningEn: string;
  /** Our codes, most likely first. Never empty. */
  ours: ErrorCode[];
}

const S000 = "000 retail bank personal UKey renewal guide";
const S001 = "001 bank net-banking shield FAQ";
const S003 = "003 securities gateway certificate portal";
const S004 = "004 provincial government supervision system";

/**
 * Every legacy code and message of the five seeds, in the order of the
 * guides. Order matters only as the tie-breaker of lookupError's ranking.
 */
export const legacyErrors: readonly LegacyErrorEntry[] = [
  // ---- seed 000 ----
  {
    source: S000, section: "3.5", legacyMessage: "可用内存不足，无法完成该命令",
    variants: ["证书更新安装时报内存不足"],
    meaningZh: "UKey 存储空间不够写入新证书；原指引要求先初始化 UKey 再重新下载。在本系统中，代理会先自动删除无效（过期、被替换）的证书和密钥再重试，只有仍然不够时才需要初始化。",
    meaningEn: "The UKey had no room for the new certificate; the guide had the holder initialise the key and download again. Here the agent first removes invalid (expired, superseded) objects and retries; initialising is needed only if there is still no room.",
    ours: ["TOKEN_STORAGE_FULL"],
  },
  {
    source: S000, section: "3.1", legacyMessage: "电脑 USB 端口不识别 Ukey",
    variants: ["电脑未识别到Ukey"],
    meaningZh: "电脑没有识别到 UKey：常因 UKey 开机后进入了蓝牙模式，或需要兼容模式（三代按住 C 键、四代按住上键插入）。本系统的代理会按 UKey 型号给出同样的连接提示。",
    meaningEn: "The computer did not see the UKey, often because it was switched on and went into Bluetooth mode, or needed compatibility mode (3rd generation: hold C while inserting; 4th: hold the up key). The agent gives the same model-specific hints.",
    ours: ["TOKEN_NOT_PRESENT", "TOKEN_DRIVER_MISSING"],
  },
  {
    source: S000, section: "3.2", legacyMessage: "没有自带 IE 浏览器，切换 Edge 或 360 浏览器内核为 IE 模式",
    variants: ["IE 模式", "IE 兼容模式", "仅支持 IE 浏览器进行更新"],
    meaningZh: "旧系统只能在 IE 或浏览器的 IE 模式下更新。本系统支持任意新版浏览器和命令行，不需要 IE。",
    meaningEn: "The old system renewed only in Internet Explorer or a browser's IE mode. ukey-renew works in any current browser and on the command line.",
    ours: ["BROWSER_PLUGIN_NOT_NEEDED"],
  },
  {
    source: S000, section: "3.3", legacyMessage: "无法调起 Ukey 密码框/调起 Ukey 密码框时黑屏或卡死",
    variants: ["调起 Ukey 密码框时背景变动", "输入完 Ukey 密码后无法返回到网银页面", "虚拟桌面"],
    meaningZh: "UKey 管理工具的“虚拟桌面”选项让密码框黑屏或卡住。本系统的 PIN 由代理自己的窗口或终端输入。",
    meaningEn: "The key manager's virtual desktop option made the PIN dialog go black or hang. Here the PIN is typed in the agent's own window or the terminal.",
    ours: ["TOKEN_PIN_PROMPT_FAILED"],
  },
  {
    source: S000, section: "3.4", legacyMessage: "提示未安装CFCA 控件，下载安装后仍然提示未安装",
    variants: ["CFCA 控件不支持 42 以上版本谷歌浏览器"],
    meaningZh: "旧系统依赖的 CFCA 浏览器控件不支持新版 Chrome。本系统不用任何浏览器控件，由本机代理访问 UKey。",
    meaningEn: "The CFCA browser control the old system relied on does not work in current Chrome. ukey-renew uses no browser control; the local agent talks to the UKey.",
    ours: ["BROWSER_PLUGIN_NOT_NEEDED", "AGENT_NOT_RUNNING"],
  },
  {
    source: S000, section: "2.1", legacyMessage: "当前仅支持3代及以上版本UKey更新功能，其他版本暂不支持",
    meaningZh: "较老的 UKey 不能在线更新，须到网点更换。本系统同样如此，但会说明原因。",
    meaningEn: "Older UKeys could not be renewed online and had to be replaced at a branch. The same holds here, with the reason given.",
    ours: ["TOKEN_UNSUPPORTED"],
  },
  {
    source: S000, section: "2.1", legacyMessage: "证书到期6个月以上需至我行营业网点办理",
    meaningZh: "超过在线更新期限的证书要到柜台办理。本系统显示期限的截止日期和原因。",
    meaningEn: "Past the online renewal period, the counter was the only way. Here the closing date and the reason are shown.",
    ours: ["RENEWAL_WINDOW_CLOSED"],
  },
  {
    source: S000, section: "1.1", legacyMessage: "Ukey 证书已失效，请在个人网银客户端首页-证书管理-证书更新进行在线更新",
    meaningZh: "证书已过期，不能再登录网银，但仍可在线更新。",
    meaningEn: "The certificate had expired: no more sign-in, but online renewal was still possible.",
    ours: ["CERT_EXPIRED"],
  },
  {
    source: S000, section: "2.2", legacyMessage: "忘记了 Ukey 密码",
    variants: ["重置密码"],
    meaningZh: "忘记 PIN 时，初始化 UKey 并设置新 PIN，然后重新下载证书。本系统相同：ukey init 后重新下载。",
    meaningEn: "With a forgotten PIN, initialise the UKey with a new PIN and download the certificate again; here: ukey init, then download.",
    ours: ["TOKEN_PIN_LOCKED", "TOKEN_PIN_INCORRECT"],
  },

  // ---- seed 001 ----
  {
    source: S001, section: "Q10", legacyCode: "0124", legacyMessage: "生成密钥对失败",
    meaningZh: "UKey 未能生成新密钥对：UKey 没插好、驱动（管理工具）过旧或选错厂商。本系统由代理生成密钥，并能识别厂商、检查驱动。",
    meaningEn: "The UKey did not generate the new key pair: key not inserted, or an old or wrong-vendor driver (key manager). Here the agent makes the key, detects the vendor and checks the driver.",
    ours: ["TOKEN_KEYGEN_FAILED", "TOKEN_NOT_PRESENT", "TOKEN_DRIVER_MISSING"],
  },
  {
    source: S001, section: "Q11", legacyCode: "9002", legacyMessage: "读取控件序列号为空,请您检查USBKEY是否插入",
    meaningZh: "浏览器控件读不到 UKey 序列号：UKey 未插入，或控件没有运行（原指引要求把安全级别调为“低”）。本系统由代理读取 UKey，不需要控件，也不降低安全设置。",
    meaningEn: "The browser control could not read the key's serial: the UKey was not inserted, or the control was not running (the guide had holders set browser security to low). Here the agent reads the UKey; no control and no lowered security.",
    ours: ["TOKEN_NOT_PRESENT", "AGENT_NOT_RUNNING", "BROWSER_PLUGIN_NOT_NEEDED"],
  },
  {
    source: S001, section: "Q12", legacyCode: "0116", legacyMessage: "此证书换证条件不满足或是已进行过换证申请",
    meaningZh: "含糊地合并了几种情况：不在换证期限内（太早或太晚）、已经申请过、或已换过证。本系统分别说明：何时开放、何时截止、哪一个申请正在进行以及如何完成。",
    meaningEn: "It lumped together several cases: outside the renewal period (too early or too late), an application already made, or already renewed. Here each is told apart: when it opens, when it closed, which order is open and how to finish it.",
    ours: ["RENEWAL_NOT_YET_OPEN", "RENEWAL_WINDOW_CLOSED", "ORDER_ALREADY_OPEN", "CERT_SUPERSEDED"],
  },
  {
    source: S001, section: "Q13", legacyCode: "HTTP 403.7", legacyMessage: "禁止访问:要求客户证书",
    variants: ["网页无法显示"],
    meaningZh: "网站要求浏览器出示 UKey 中的客户证书，但没有读到：UKey 未插入或驱动异常。本系统不要求浏览器出示证书，而是由代理用 UKey 签名证明持有私钥。",
    meaningEn: "The site required the browser to present the UKey's client certificate and got none: key not inserted or driver trouble. Here the browser presents nothing; the agent proves possession by signing with the UKey.",
    ours: ["TOKEN_NOT_PRESENT", "AGENT_NOT_RUNNING", "TOKEN_DRIVER_MISSING"],
  },
  {
    source: S001, section: "Q5/Q6", legacyMessage: "证书不在换证有效期内",
    meaningZh: "太早（到期前 30 天之前）或太晚（到期后 90 天之后）。本系统说明具体哪一种以及日期。",
    meaningEn: "Too early (before 30 days ahead of expiry) or too late (over 90 days after). Here the message says which, with the date.",
    ours: ["RENEWAL_NOT_YET_OPEN", "RENEWAL_WINDOW_CLOSED"],
  },
  {
    source: S001, section: "Q8", legacyMessage: "将可信站点的安全性自定义设置为“低”",
    variants: ["加入可信站点"],
    meaningZh: "旧系统要求降低浏览器安全级别。本系统从不要求这样做。",
    meaningEn: "The old system asked holders to lower browser security. ukey-renew never does.",
    ours: ["BROWSER_PLUGIN_NOT_NEEDED"],
  },

  // ---- seed 003: case 1 has two messages, cases 2 and 4 share one ----
  {
    source: S003, section: "case 1", legacyMessage: "浏览器 CertEnroll Control 插件安装版本错误，请确认已安装 2.0.4.8 版本 CertEnroll Control 插件并启用!",
    meaningZh: "需要特定版本的 ActiveX 插件。本系统不用浏览器插件；与之对应的是本机代理，版本过旧时会明确提示。",
    meaningEn: "A specific version of an ActiveX plug-in was required. ukey-renew uses no browser plug-in; its counterpart is the local agent, which says plainly when it is too old.",
    ours: ["BROWSER_PLUGIN_NOT_NEEDED", "AGENT_OUTDATED"],
  },
  {
    source: S003, section: "case 1", legacyMessage: "浏览器未安装 JILIN UNIVERSITY INFORMATION TECHNOLOGIES CO.LTD 插件，请按照环境设置步骤操作。",
    meaningZh: "缺少浏览器插件。本系统不用浏览器插件；页面需要的是本机运行的 ukey 代理。",
    meaningEn: "A browser plug-in was missing. ukey-renew uses none; the page needs the ukey agent running on the computer.",
    ours: ["BROWSER_PLUGIN_NOT_NEEDED", "AGENT_NOT_RUNNING"],
  },
  {
    source: S003, section: "case 2", legacyMessage: "产生申请书失败!",
    variants: ["请检查证书是否有效或硬证书驱动是否正确安装"],
    meaningZh: "未能生成证书请求：证书无效，或硬件证书驱动未正确安装。本系统分别报告 UKey 生成失败、驱动缺失或证书状态。",
    meaningEn: "The certificate request could not be made: the certificate was not valid, or the hardware certificate's driver was missing. Here key generation failure, a missing driver and the certificate's state are each reported.",
    ours: ["TOKEN_KEYGEN_FAILED", "TOKEN_DRIVER_MISSING"],
  },
  {
    source: S003, section: "case 3", legacyMessage: "未检测到硬证书 ukey 或 ukey 存储空间已满，请换取新的 ukey 重试更新操作。",
    meaningZh: "把“没插 UKey”“驱动与 UKey 不一致”和“存储已满”合成一条，并要求换新 UKey。本系统分别报告；存储满时先自动清理无效对象，不必换 UKey。",
    meaningEn: "It merged 'no key', 'driver does not match the key' and 'storage full', and told holders to get a new key. Here each is reported apart; when storage is full, invalid objects are cleaned up first, with no new key needed.",
    ours: ["TOKEN_NOT_PRESENT", "TOKEN_STORAGE_FULL", "TOKEN_DRIVER_MISSING"],
  },
  {
    source: S003, section: "case 4", legacyMessage: "产生申请书失败!",
    variants: ["请检查证书是否有效"],
    meaningZh: "证书已无效（过期太久、已注销等）因而不能生成更新请求。本系统直接说明证书的状态和日期。",
    meaningEn: "The certificate was no longer valid (expired too long, revoked...) so no renewal request could be made. Here the certificate's state and dates are stated.",
    ours: ["RENEWAL_WINDOW_CLOSED", "CERT_REVOKED", "CERT_ON_HOLD"],
  },
  {
    source: S003, section: "case 5", legacyMessage: "证书信息与 CA 系统不一致!",
    variants: ["文件证书命名必须以“#0”结尾，硬件证书不能以“#0”结尾"],
    meaningZh: "旧系统按证书名称是否以“#0”结尾区分文件证书和硬件证书，名称不符就失败。本系统中新证书的内容只来自机构的登记记录，名称无关紧要，所以这种情况不会发生；只有所选证书不是本机构为您登记的证书时才会报告。",
    meaningEn: "The old system told file from hardware certificates by whether the name ended in '#0' and failed on a mismatch. In ukey-renew the new certificate's contents come only from the institution's record and names do not matter, so this cannot happen; we report only a certificate that is not the one on record for you.",
    ours: ["CERT_INFO_MISMATCH"],
  },
  {
    source: S003, section: "case 6", legacyMessage: "未识别到旧证书信息",
    variants: ["客户端未安装旧证书"],
    meaningZh: "旧证书没有导入浏览器的证书库。本系统直接从 UKey 或 .pfx 文件读取旧证书，无需导入。",
    meaningEn: "The old certificate had not been imported into the browser's store. ukey-renew reads it straight from the UKey or the .pfx file; no import.",
    ours: ["NO_CERTIFICATE_FOUND"],
  },
  {
    source: S003, section: "case 7", legacyMessage: "由于网络原因或通信网关证书信息不正确导致更新失败，请重新更新或联系管理员。",
    variants: ["请求 CA 中心更新证书失败", "CA 中心证书是否已被冻结、注销、更新"],
    meaningZh: "网络故障、CA 不可用，或证书已被冻结、注销、更新，合成一条。本系统分别报告，网络故障可放心重试。",
    meaningEn: "Network failure, CA down, or the certificate frozen, revoked or already renewed, all in one. Here each is its own message, and network failures are safe to retry.",
    ours: ["CA_UNREACHABLE", "SERVER_UNREACHABLE", "CERT_ON_HOLD", "CERT_REVOKED", "CERT_SUPERSEDED"],
  },
  {
    source: S003, section: "case 8", legacyMessage: "Pfx 签名证书制作失败!",
    meaningZh: "浏览器插件没能生成 .pfx 文件证书。本系统由代理生成文件，失败时证书仍保存在服务器上，可再次生成。",
    meaningEn: "The browser plug-in failed to build the .pfx file. Here the agent writes the file; on failure the certificate stays on the server and the file can be written again.",
    ours: ["PFX_CREATION_FAILED"],
  },
  {
    source: S003, section: "case 9", legacyMessage: "证书更新成功，下载拦截导致证书保存失败",
    meaningZh: "证书已更新，但浏览器拦截了下载。本系统的证书文件由代理保存，不经浏览器下载。",
    meaningEn: "The certificate was renewed but the browser blocked its download. Here the agent saves the file; the browser downloads nothing.",
    ours: ["DOWNLOAD_BLOCKED"],
  },

  // ---- seed 004 ----
  {
    source: S004, section: "5.1", legacyMessage: "共有：0个key",
    variants: ["自行查看证书到期日期", "UKey证书没有插入，或接触不好/已损坏"],
    meaningZh: "管理工具没有找到 UKey：未插入、接触不良或已损坏（原指引用管理工具查看到期日期）。本系统中 ukey status 显示 UKey、证书和到期日期。",
    meaningEn: "The key manager found no UKey: not inserted, a bad contact or broken (the guide used the manager to see the expiry date). Here ukey status shows the key, its certificates and their dates.",
    ours: ["TOKEN_NOT_PRESENT"],
  },
  {
    source: S004, section: "5.2", legacyMessage: "您选择的证书不在本次更新范围",
    variants: ["选择证书后显示错误"],
    meaningZh: "证书不在更新期限内（到期前 90 天至到期后 300 天），或不是该系统的证书。本系统说明是哪一种以及日期。",
    meaningEn: "The certificate was outside the renewal period (90 days before to 300 days after expiry) or not one of that system's. Here the message says which, with dates.",
    ours: ["RENEWAL_NOT_YET_OPEN", "RENEWAL_WINDOW_CLOSED", "CERT_INFO_MISMATCH"],
  },
  {
    source: S004, section: "5.3", legacyMessage: "更新用户证书页【下一步】无响应",
    variants: ["您使用的浏览器不是IE浏览器"],
    meaningZh: "旧系统只支持 IE。本系统支持任意新版浏览器；页面无反应时通常是本机代理没有运行。",
    meaningEn: "The old system worked only in IE. ukey-renew works in any current browser; a page that does not respond usually means the local agent is not running.",
    ours: ["BROWSER_PLUGIN_NOT_NEEDED", "AGENT_NOT_RUNNING"],
  },
  {
    source: S004, section: "5.4", legacyMessage: "证书更新过程超过3分钟，且浏览器有提醒条",
    variants: ["浏览器阻止了或禁用了安全组件"],
    meaningZh: "浏览器拦截了安全组件。本系统没有浏览器组件；更新在几秒内完成，由本机代理完成。",
    meaningEn: "The browser had blocked the security component. ukey-renew has none; the local agent does the work in seconds.",
    ours: ["BROWSER_PLUGIN_NOT_NEEDED", "AGENT_NOT_RUNNING"],
  },
  {
    source: S004, section: "5.5", legacyMessage: "提示用户证书不存在",
    variants: ["证书更新出错", "上次更新的过程中出现错误，可能导致本地证书缺失或不匹配"],
    meaningZh: "上次更新中途出错，UKey 中的证书缺失或与密钥不匹配，只能找服务人员处理。本系统会找到未完成的申请并自动完成。",
    meaningEn: "An earlier update failed halfway, leaving the certificate missing or not matching its key, and only staff could fix it. ukey-renew finds the open order and finishes it.",
    ours: ["CERT_NOT_ON_TOKEN", "POSSESSION_PROOF_FAILED"],
  },
  {
    source: S004, section: "5.6", legacyMessage: "提示用户已经注销或未登录，请重新登录",
    variants: ["登录地址提示用户已注销或未登录"],
    meaningZh: "上次登录的状态没有清除，要关闭所有浏览器重来。本系统中登录过期只需重新打开页面，已开始的更新会继续。",
    meaningEn: "A stale sign-in got in the way and every browser had to be closed. Here an expired session only needs the page opened again; the renewal continues.",
    ours: ["SESSION_EXPIRED"],
  },
];

/** How a lookup result matched, best first. */
export type ErrorLookupMatch = "code" | "legacy-code" | "code-partial" | "legacy-message" | "text";

/** One answer of lookupError. */
export interface ErrorLookupResult {
  match: ErrorLookupMatch;
  /** Our codes, each rendered by describeError (placeholders left visible). */
  ours: ErrorProblem[];
  /** The legacy entry that matched, when one did. */
  legacy?: LegacyErrorEntry;
}

const matchOrder: Record<ErrorLookupMatch, number> = {
  code: 0, "legacy-code": 1, "code-partial": 2, "legacy-message": 3, text: 4,
};

/**
 * Folds what a holder types or pastes into one form: NFKC turns full-width
 * letters, digits and punctuation into half-width; case is dropped; spaces
 * and punctuation go, because guides print the same message with "，" or
 * ", " or none ("可用内存不足，无法完成该命令" vs "可用内存不足, 无法...").
 */
export function normaliseSearchText(s: string): string {
  return s.normalize("NFKC").toLowerCase().replace(/[\s\p{P}\p{S}]+/gu, "");
}

/**
 * A legacy code's forms, normalised as queries are (so the dot goes too):
 * "HTTP 403.7" → full "http4037", number "4037".
 */
function legacyCodeForms(code: string): { full: string; number: string } {
  const c = normaliseSearchText(code);
  return { full: c, number: c.replace(/^[a-z]+/, "") };
}

function codeQuery(q: string): string {
  return q.normalize("NFKC").trim().toUpperCase().replace(/[\s-]+/g, "_");
}

/**
 * Answers a search box: our codes, legacy codes and message fragments.
 *
 * Matches, ranked in this order:
 * 1. `code`: the query is one of our codes, case-insensitive, spaces or
 *    hyphens for underscores ("token not present").
 * 2. `legacy-code`: the query is a legacy code ("0116", "HTTP 403.7",
 *    "403.7"), begins with one ("0124生成密钥对失败", as pasted from the old
 *    page), or is a shorter number of one ("403").
 * 3. `code-partial`: a part of our codes, at least 3 characters ("PIN").
 * 4. `legacy-message`: a legacy message or one of its variants holds the
 *    query (see fragmentScore), or the query holds it (a longer paste).
 * 5. `text`: one of our messages or remedies (zh or en) holds the query;
 *    a hit in the message ranks before a hit in the remedy.
 * Within a rank, closer matches come first (the whole query as one piece
 * before its words apart, before its characters spread out, and fuller
 * coverage first), then catalogue or table order.
 *
 * A legacy entry or code appears once, under its best match. Returns [] for
 * an empty query or one that matches nothing. Never throws.
 */
export function lookupError(query: string): ErrorLookupResult[] {
  const q = prepareQuery(query);
  if (q.norm.length === 0) return [];
  const scored: { rank: number; score: number; order: number; result: ErrorLookupResult }[] = [];
  const describe = (codes: readonly ErrorCode[]) => codes.map((c) => describeError(c));

  const cq = codeQuery(query);
  errorCodes.forEach((code, i) => {
    let match: ErrorLookupMatch | undefined;
    let score = 0;
    if (code === cq) match = "code";
    else if (cq.length >= 3 && /^[A-Z0-9_]+$/.test(cq) && code.includes(cq)) match = "code-partial";
    else {
      const e = catalogue[code];
      // Messages may be spread out a little; remedies are long, so only exact pieces count there.
      score = Math.max(
        ...[e.zh, e.en].map((t) => fragmentScore(q, t, true) * 2),
        ...[e.remedyZh, e.remedyEn].map((t) => fragmentScore(q, t, false)),
      );
      if (score > 0) match = "text";
    }
    if (match) scored.push({ rank: matchOrder[match], score, order: i, result: { match, ours: describe([code]) } });
  });

  legacyErrors.forEach((entry, i) => {
    const best = matchLegacy(entry, q);
    if (best) scored.push({ rank: matchOrder[best.match], score: best.score, order: i, result: { match: best.match, ours: describe(entry.ours), legacy: entry } });
  });

  scored.sort((a, b) => a.rank - b.rank || b.score - a.score || a.order - b.order);
  return scored.map((s) => s.result);
}

interface PreparedQuery {
  /** The whole query, normalised. */
  norm: string;
  /** Its pieces between spaces and punctuation, normalised, each of 2 or more characters. */
  words: string[];
}

function prepareQuery(query: string): PreparedQuery {
  const words = query.normalize("NFKC").toLowerCase().split(/[\s\p{P}\p{S}]+/u).filter((w) => w.length >= 2);
  return { norm: normaliseSearchText(query), words };
}

/**
 * How well `text` holds the query, 0 for not at all:
 * - 1 + coverage: the whole query as one piece ("内存不足");
 * - 0.6: every word of a query of several words, anywhere ("ukey 不识别");
 * - 0.4 (only when `spread`): the query's characters in order, with at most
 *   two more others between them than the query is long ("忘记密码" in
 *   "忘记了Ukey密码"). For queries of 3 or more characters, because
 *   holders drop or add particles but seldom reorder.
 * Placeholders such as {serial} are not text a holder could have seen.
 * Single characters match too much to mean anything.
 */
function fragmentScore(q: PreparedQuery, text: string, spread: boolean): number {
  if (q.norm.length < 2) return 0;
  const t = normaliseSearchText(text.replace(/\{\w+\}/g, ""));
  if (t.length === 0) return 0;
  if (t.includes(q.norm)) return 1 + q.norm.length / t.length;
  if (q.words.length > 1 && q.words.every((w) => t.includes(w))) return 0.6;
  if (spread && q.norm.length >= 3 && spreadMatch(q.norm, t, q.norm.length * 2 + 2)) return 0.4;
  return 0;
}

/** True when the characters of `q` occur in `t` in order within a window of `maxSpan` characters. */
function spreadMatch(q: string, t: string, maxSpan: number): boolean {
  const qs = [...q];
  const ts = [...t];
  for (let start = 0; start < ts.length; start++) {
    if (ts[start] !== qs[0]) continue;
    let k = 1;
    let end = start;
    for (let j = start + 1; j < ts.length && k < qs.length && j - start < maxSpan; j++) {
      if (ts[j] === qs[k]) {
        k++;
        end = j;
      }
    }
    if (k === qs.length && end - start < maxSpan) return true;
  }
  return false;
}

function matchLegacy(entry: LegacyErrorEntry, q: PreparedQuery): { match: ErrorLookupMatch; score: number } | undefined {
  const norm = q.norm;
  if (entry.legacyCode !== undefined) {
    const { full, number } = legacyCodeForms(entry.legacyCode);
    if (norm === full || norm === number) return { match: "legacy-code", score: 2 };
    // Pasted "0124生成密钥对失败" or "HTTP 403.7 禁止访问": the code leads, and
    // the next character is not a digit, so "01245" is not "0124".
    for (const form of [full, number]) {
      if (norm.startsWith(form) && !/^\d/.test(norm.slice(form.length))) return { match: "legacy-code", score: 1 };
    }
    // "403" for "HTTP 403.7": a shorter number that the code's number begins with.
    if (/^\d{3,}$/.test(norm) && number.startsWith(norm)) return { match: "legacy-code", score: 0 };
  }
  let best = 0;
  for (const text of [entry.legacyMessage, ...(entry.variants ?? [])]) {
    best = Math.max(best, fragmentScore(q, text, true));
    // A longer paste that holds the whole message: the holder copied the page.
    const t = normaliseSearchText(text);
    if (t.length >= 2 && norm.includes(t)) best = Math.max(best, 1 + t.length / norm.length);
  }
  return best > 0 ? { match: "legacy-message", score: best } : undefined;
}
