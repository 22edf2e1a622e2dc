import { createHash } from "node:crypto";
import { catalogue, describeError, type ErrorCode } from "@ukey/policy";
import type { PinPrompt } from "./operations.js";
import type { OperationRequest, OperationView } from "./protocol.js";

/*
 * The PIN page: the one place a PIN is typed for the portal. It is served
 * by the agent from its own origin (http://127.0.0.1:PORT), so the portal's
 * page cannot read it, and it cannot be framed, so no page can overlay it.
 * Plain HTML and one inline style whose hash the CSP names; no script.
 */

const style = `
body{font:16px/1.5 system-ui,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;background:#f4f6f8;color:#1b1f23}
main{max-width:34rem;margin:2rem auto;background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:1.5rem 1.75rem}
h1{font-size:1.3rem;margin:0 0 .25rem}
h1 span,.en{color:#57606a;font-weight:normal}
.en{font-size:.92rem}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.25rem 1rem;margin:1rem 0}
dt{color:#57606a}
dd{margin:0;word-break:break-all}
.origin{font-weight:600}
.alert{border-left:4px solid #cf222e;background:#ffebe9;padding:.6rem .9rem;margin:1rem 0}
.ok{border-left:4px solid #1a7f37;background:#dafbe1;padding:.6rem .9rem;margin:1rem 0}
.key{border:2px solid #bf8700;background:#fff8c5;padding:.8rem 1rem;margin:1rem 0;font-size:1.1rem;font-weight:600}
.note{border-left:4px solid #0969da;background:#ddf4ff;padding:.6rem .9rem;margin:1rem 0;font-size:.92rem}
label{display:block;margin:.9rem 0 .3rem;font-weight:600}
input[type=password]{box-sizing:border-box;width:100%;font-size:1.2rem;padding:.5rem .6rem;border:1px solid #8c959f;border-radius:6px}
button{margin-top:1.2rem;font-size:1rem;padding:.55rem 1.4rem;border:0;border-radius:6px;background:#1f6feb;color:#fff;cursor:pointer}
`;

const styleHash = createHash("sha256").update(style, "utf8").digest("base64");

/**
 * The headers of every PIN page answer: nothing may frame it, load into
 * it, run in it, or learn its URL from it; the form posts only to itself;
 * nothing is cached.
 */
export const pinPageHeaders: Readonly<Record<string, string>> = Object.freeze({
  "content-type": "text/html; charset=utf-8",
  "content-security-policy": `default-src 'none'; style-src 'sha256-${styleHash}'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'`,
  "x-frame-options": "DENY",
  "referrer-policy": "no-referrer",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "cross-origin-opener-policy": "same-origin",
  "cross-origin-resource-policy": "same-origin",
});

const operationWords: Record<OperationRequest["kind"], { zh: string; en: string }> = {
  renew: { zh: "更新 UKey 中的证书", en: "renew the certificate on the UKey" },
  download: { zh: "把证书下载到 UKey", en: "download a certificate onto the UKey" },
  initialise: { zh: "初始化 UKey（清除其中的证书并设置新 PIN）", en: "initialise the UKey (erase its certificates and set a new PIN)" },
  "change-pin": { zh: "修改 UKey 的 PIN", en: "change the UKey's PIN" },
  "clean-up": { zh: "删除 UKey 中无效的证书", en: "remove invalid certificates from the UKey" },
  doctor: { zh: "检查 UKey 和本机设置", en: "check the UKey and this computer" },
  "read-certificates": { zh: "读取 UKey 中的证书", en: "read the certificates on the UKey" },
};

/** Escapes text for HTML element content and quoted attribute values. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"']/g, (c) => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;" })[c]!);
}

function page(titleZh: string, titleEn: string, body: string): string {
  return `<!doctype html>
<html lang="zh-CN">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex">
<title>${escapeHtml(titleZh)} · ${escapeHtml(titleEn)}</title>
<style>${style}</style>
</head>
<body>
<main>
<h1>${escapeHtml(titleZh)} <span lang="en">${escapeHtml(titleEn)}</span></h1>
${body}
</main>
</body>
</html>
`;
}

function bilingual(zh: string, en: string, cls = ""): string {
  return `<p${cls ? ` class="${cls}"` : ""}>${escapeHtml(zh)}<br><span class="en" lang="en">${escapeHtml(en)}</span></p>`;
}

function problemBlock(code: string, params: Record<string, string | number> = {}): string {
  if (!(code in catalogue)) return bilingual(`错误 ${code}`, `Error ${code}`, "alert");
  const p = describeError(code as ErrorCode, params);
  return `<div class="alert"><p><strong>${escapeHtml(p.message["zh-CN"])}</strong><br><span class="en" lang="en">${escapeHtml(p.message.en)}</span></p>`
    + `<p>${escapeHtml(p.remedy["zh-CN"])}<br><span class="en" lang="en">${escapeHtml(p.remedy.en)}</span></p><p class="en">${escapeHtml(code)}</p></div>`;
}

/**
 * Where the window comes from, and where the PIN is typed: in this window ("field"), on the key's own pad ("keypad":
 * a page that asks for it on the computer is not to be answered), or nothing typed now ("none").
 */
function safetyNote(agentOrigin: string, where: "field" | "keypad" | "none" = "field"): string {
  const from = {
    zh: `此窗口由您电脑上的 ukey 代理（${agentOrigin}）提供，不属于任何网站。`,
    en: `This window comes from the ukey agent on your computer (${agentOrigin}), not from any website.`,
  };
  const rule = where === "keypad"
    ? {
      zh: "这把 UKey 的 PIN 只在 UKey 自己的键盘上输入：任何网页或窗口要求您在电脑上输入它，都不要输入。",
      en: "This UKey's PIN is typed on the UKey's own keypad only: if any page or window asks you to type it on the computer, do not.",
    }
    : where === "none"
      ? { zh: "网站看不到您的 PIN。", en: "The website cannot see your PIN." }
      : {
        zh: `PIN 只交给代理和 UKey，网站看不到您输入的 PIN。只在地址以 ${agentOrigin}/prompt/ 开头的窗口中输入 PIN。`,
        en: `The PIN goes only to the agent and the UKey; the website cannot see it. Type the PIN only in a window whose address starts with ${agentOrigin}/prompt/.`,
      };
  return bilingual(from.zh + rule.zh, `${from.en} ${rule.en}`, "note");
}

/** The PIN form for one ask; `problem` is a mistake in the last post (the two new PINs differ, nothing typed). */
export function renderPinPage(prompt: PinPrompt, agentOrigin: string, problem?: { zh: string; en: string }): string {
  const op = operationWords[prompt.operationKind];
  const what = prompt.keyPad
    ? { zh: "您在 UKey 的密码键盘上输入 PIN", en: "you to type the PIN on the UKey's own keypad" }
    : prompt.so
    ? { zh: "UKey 的管理员 PIN（SO PIN）", en: "the UKey's security officer PIN (SO PIN)" }
    : prompt.newPin
      ? { zh: "UKey 的新 PIN", en: "a new PIN for the UKey" }
      : prompt.file
        ? { zh: "证书文件的密码（PIN）", en: "the certificate file's password (PIN)" }
        : { zh: "UKey 的密码（PIN）", en: "the UKey's PIN" };
  const parts: string[] = [];
  parts.push(bilingual(`网站 ${prompt.origin} 请求${op.zh}，为此需要${what.zh}。`, `The site ${prompt.origin} asks to ${op.en}; for this the agent needs ${what.en}.`));
  parts.push(`<dl><dt>网站 <span class="en">Site</span></dt><dd class="origin">${escapeHtml(prompt.origin)}</dd>`
    + `<dt>UKey</dt><dd>${escapeHtml(prompt.tokenLabel)}</dd>`
    + `<dt>序列号 <span class="en">Serial</span></dt><dd>${escapeHtml(prompt.tokenSerial)}</dd>`
    + `</dl>`);
  if (prompt.retry) {
    const params: Record<string, string | number> = prompt.retry.triesLeft !== undefined ? { triesLeft: prompt.retry.triesLeft } : {};
    parts.push(problemBlock(prompt.retry.code, params));
  }
  if (prompt.retry?.triesLeft !== undefined) {
    parts.push(bilingual(`还可以再试 ${prompt.retry.triesLeft} 次，之后 UKey 会被锁定。`, `${prompt.retry.triesLeft} ${prompt.retry.triesLeft === 1 ? "try" : "tries"} left before the UKey locks.`, "alert"));
  }
  if (problem) parts.push(bilingual(problem.zh, problem.en, "alert"));
  if (prompt.keyPad) {
    // The key takes the PIN on its own pad: no field here, so no PIN can pass through the computer.
    parts.push(bilingual("这把 UKey 带有密码键盘：PIN 在 UKey 上输入，不在电脑上输入，本页不会要求您输入 PIN。",
      "This UKey has its own PIN pad: the PIN is typed on the UKey, not on the computer, and this page does not ask for it.", "note"));
    parts.push(bilingual("点“开始”后，请看 UKey 的屏幕，在 UKey 的键盘上输入 PIN，然后按确认键（OK 键）。",
      "After you press Start, watch the UKey's screen, type the PIN on the UKey's keypad, then press OK.", "key"));
    parts.push(`<form method="post"><button type="submit">开始 <span lang="en">Start</span></button></form>`);
    parts.push(safetyNote(agentOrigin, "keypad"));
    return page("在 UKey 上输入 PIN", "Type the PIN on the UKey", parts.join("\n"));
  }
  const field = (name: string, zh: string, en: string, autofocus: boolean) =>
    `<label for="${name}">${escapeHtml(zh)} <span class="en" lang="en">${escapeHtml(en)}</span></label>`
    + `<input type="password" id="${name}" name="${name}" autocomplete="off" maxlength="64" required${autofocus ? " autofocus" : ""}>`;
  let fields: string;
  if (prompt.newPin) {
    fields = field("pin", "新 PIN（至少 6 位字母或数字）", "New PIN (at least 6 letters or digits)", true)
      + field("pin2", "再次输入新 PIN", "New PIN again", false);
  } else if (prompt.so) {
    fields = field("pin", "管理员 PIN（SO PIN）", "SO PIN", true);
  } else {
    fields = field("pin", "PIN", "PIN", true);
  }
  parts.push(`<form method="post">${fields}<button type="submit">确定 <span lang="en">OK</span></button></form>`);
  parts.push(safetyNote(agentOrigin));
  return page(prompt.newPin ? "设置新 PIN" : prompt.so ? "输入管理员 PIN" : prompt.file ? "输入证书文件密码（PIN）" : "输入 UKey 密码（PIN）",
    prompt.newPin ? "Set a new PIN" : prompt.so ? "Enter the SO PIN" : prompt.file ? "Enter the certificate file's PIN" : "Enter the UKey PIN", parts.join("\n"));
}

/**
 * What the page says once the PIN was handed over and the operation moved
 * on (or did not in time). `onKey`: the key now waits for the holder (its
 * OK button, or its PIN pad), which the page then says first.
 */
export function renderAfterPinPage(state: OperationView["state"], agentOrigin: string, error?: OperationView["error"], onKey?: { zh: string; en: string }): string {
  if (state === "failed" && error) {
    return page("未能完成", "Not done", problemBlock(error.code, error.params ?? {})
      + bilingual("请回到原页面查看并继续。此窗口可以关闭。", "Go back to the page to see what to do next. You can close this window."));
  }
  if (state === "running" && onKey) {
    return page("请在 UKey 上操作", "Act on the UKey", bilingual(onKey.zh, onKey.en, "key")
      + bilingual("UKey 确认后操作会继续；结果请回到原页面查看。", "Once the UKey confirms, the operation goes on; see the result on the page you came from.") + safetyNote(agentOrigin, "none"));
  }
  const body = state === "done"
    ? bilingual("已完成。请回到原页面查看结果。此窗口可以关闭。", "Done. Go back to the page for the result. You can close this window.", "ok")
    : state === "needs-input"
      ? bilingual("PIN 已通过。请回到原页面，按页面提示继续。此窗口可以关闭。", "The PIN was accepted. Go back to the page and continue there. You can close this window.", "ok")
      : bilingual("PIN 已交给 UKey，操作正在进行。请回到原页面查看进度。此窗口可以关闭。", "The PIN was handed to the UKey and the operation is running. Go back to the page to follow it. You can close this window.", "ok");
  return page("已收到 PIN", "PIN received", body + safetyNote(agentOrigin));
}

/** The page for a used, expired or unknown prompt address. */
export function renderPromptExpiredPage(agentOrigin: string): string {
  return page("此窗口已失效", "This window is no longer valid", problemBlock("PIN_PROMPT_EXPIRED") + safetyNote(agentOrigin));
}
