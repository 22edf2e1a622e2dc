import { renewalChannels, type CertificateProfile, type RenewalChannel } from "./certificate-profile.js";
import { DAY_MS, POLICY_UTC_OFFSET_MS, formatPolicyDate, policyDay, startOfPolicyDay } from "./policy-calendar.js";
import { channelNames } from "./renewal-policy.js";

/** Options of renderPolicyTimelineSvg. */
export interface PolicyTimelineOptions {
  /** The heading; default the profile's zh-CN and en names. */
  title?: { "zh-CN": string; en: string };
  /**
   * The expiry day of the worked example whose dates are printed under the
   * day labels, as YYYY-MM-DD (a CST day); default "2027-03-10".
   */
  exampleExpiry?: string;
}

const W = 960;
const left = 170;
const right = 40;
const rowH = 34;
const top = 78;

function esc(s: string): string {
  return s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/"/g, "&quot;");
}
const n = (x: number) => String(Math.round(x * 10) / 10);
const signed = (d: number) => (d > 0 ? `+${d}` : d < 0 ? `−${-d}` : "0");

/**
 * A picture of a profile's renewal policy for holders, as SVG text: one
 * row per channel with its window (green; orange where step-up applies, grey
 * "not offered" where there is none), the notice start, the expiry day and
 * the step-up start as vertical lines, day labels relative to the expiry
 * day with the dates of a worked example under them, and zh-CN and en
 * captions. Day positions use a signed logarithmic scale so that a 3650-day
 * window and a 30-day one both stay readable; the caption says it is not to
 * scale. Pure and deterministic (the same profile gives the same bytes).
 * @throws RangeError when exampleExpiry is not a YYYY-MM-DD date.
 */
export function renderPolicyTimelineSvg(profile: Pick<CertificateProfile, "name" | "renewal">, options: PolicyTimelineOptions = {}): string {
  const r = profile.renewal;
  const title = options.title ?? profile.name;
  const ex = options.exampleExpiry ?? "2027-03-10";
  if (!/^\d{4}-\d{2}-\d{2}$/.test(ex) || Number.isNaN(Date.parse(`${ex}T00:00:00Z`))) throw new RangeError(`exampleExpiry must be YYYY-MM-DD, got ${ex}`);
  const E = policyDay(Date.parse(`${ex}T00:00:00Z`) - POLICY_UTC_OFFSET_MS + DAY_MS / 2);
  const dateOf = (d: number) => formatPolicyDate(startOfPolicyDay(E + d));

  // Events, in days relative to the expiry day. A window covers [−opens, closes + 1) in day starts.
  const windows = renewalChannels.map((c) => [c, r.windows[c]] as const);
  const starts = windows.flatMap(([, w]) => (w ? [-w.opensDaysBefore] : []));
  const ends = windows.flatMap(([, w]) => (w ? [w.closesDaysAfter + 1] : []));
  const stepUpDay = r.stepUp ? r.stepUp.afterDaysExpired + 1 : null;
  const minD = Math.min(-r.noticeDaysBefore, 0, ...starts) - 5;
  const maxD = Math.max(5, ...ends, stepUpDay ?? 0) + 5;
  const f = (d: number) => Math.sign(d) * Math.log1p(Math.abs(d) / 15);
  const x = (d: number) => left + ((f(d) - f(minD)) / (f(maxD) - f(minD))) * (W - left - right);

  const rowsTop = top;
  const rowsBottom = rowsTop + rowH * renewalChannels.length;
  const out: string[] = [];
  const H_PLACEHOLDER = "@@HEIGHT@@";
  out.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H_PLACEHOLDER}" viewBox="0 0 ${W} ${H_PLACEHOLDER}" font-family="'Noto Sans CJK SC','PingFang SC','Microsoft YaHei',sans-serif" font-size="13">`);
  out.push(`<title>${esc(`${title["zh-CN"]} / ${title.en}`)}</title>`);
  out.push(`<rect x="0" y="0" width="${W}" height="${H_PLACEHOLDER}" fill="#ffffff"/>`);
  out.push(`<text x="20" y="28" font-size="18" font-weight="bold">${esc(title["zh-CN"])}：在线更新时间</text>`);
  out.push(`<text x="20" y="50" font-size="14" fill="#444">${esc(title.en)}: when it can be renewed online</text>`);

  // Row stripes first, then the markers behind the windows.
  windows.forEach((_, i) => {
    if (i % 2 === 0) out.push(`<rect x="0" y="${rowsTop + i * rowH}" width="${W}" height="${rowH}" fill="#f6f7f9"/>`);
  });
  // Vertical markers: notice, expiry, step-up.
  const marker = (d: number, color: string, dash: string, zh: string, en: string) => {
    const xm = x(d);
    out.push(`<line x1="${n(xm)}" y1="${rowsTop - 6}" x2="${n(xm)}" y2="${rowsBottom + 4}" stroke="${color}" stroke-width="2"${dash ? ` stroke-dasharray="${dash}"` : ""}/>`);
    out.push(`<text x="${n(xm)}" y="${rowsTop - 10}" text-anchor="middle" font-size="12" fill="${color}">${esc(zh)} ${esc(en)}</text>`);
  };
  marker(-r.noticeDaysBefore, "#1f6feb", "5,4", "提醒", "notice");
  marker(0, "#c62828", "", "到期", "expiry");
  if (stepUpDay !== null) marker(stepUpDay, "#b35c00", "5,4", "加强验证", "step-up");

  // Rows: one per channel, drawn over the markers so that the windows stay whole.
  windows.forEach(([c, w], i) => {
    const y = rowsTop + i * rowH;
    out.push(`<text x="20" y="${y + 21}">${esc(channelLabel(c))}</text>`);
    if (!w) {
      // A backing box keeps the markers from striking through the words.
      out.push(`<rect x="${left + 4}" y="${y + 7}" width="380" height="20" rx="3" fill="${i % 2 === 0 ? "#f6f7f9" : "#ffffff"}"/>`);
      out.push(`<text x="${left + 8}" y="${y + 21}" fill="#777">不提供在线更新（请用其他途径或到柜台） / not offered online</text>`);
      return;
    }
    const a = x(-w.opensDaysBefore);
    const b = x(w.closesDaysAfter + 1);
    const su = stepUpDay !== null && stepUpDay < w.closesDaysAfter + 1 ? x(Math.max(stepUpDay, -w.opensDaysBefore)) : null;
    out.push(`<rect x="${n(a)}" y="${y + 8}" width="${n((su ?? b) - a)}" height="${rowH - 16}" rx="3" fill="#2e9d5b"/>`);
    if (su !== null) out.push(`<rect x="${n(su)}" y="${y + 8}" width="${n(b - su)}" height="${rowH - 16}" rx="3" fill="#e08a1e"/>`);
  });

  // Day ticks: every event, labelled relative to the expiry day, with the example's dates.
  const tickDays = [...new Set([-r.noticeDaysBefore, 0, ...starts, ...windows.flatMap(([, w]) => (w ? [w.closesDaysAfter] : [])), ...(stepUpDay !== null ? [stepUpDay] : [])])].sort((p, q) => p - q);
  const axisY = rowsBottom + 14;
  out.push(`<line x1="${left}" y1="${axisY}" x2="${W - right}" y2="${axisY}" stroke="#333"/>`);
  let lastX = [-1e9, -1e9, -1e9];
  let rowsUsed = 1;
  for (const d of tickDays) {
    // A tick at the start of day d for opening/notice/step-up; a last day is labelled on that day too.
    const xm = x(d) + (ends.includes(d + 1) && !starts.includes(d) && d !== 0 && d !== -r.noticeDaysBefore && d !== stepUpDay ? (x(d + 1) - x(d)) : 0);
    const row = lastX.findIndex((lx) => xm - lx > 78);
    const lr = row < 0 ? 0 : row;
    rowsUsed = Math.max(rowsUsed, lr + 1);
    lastX = lastX.map((lx, k) => (k === lr ? xm : lx));
    const ty = axisY + 18 + lr * 34;
    out.push(`<line x1="${n(xm)}" y1="${axisY - 4}" x2="${n(xm)}" y2="${axisY + 4 + lr * 34}" stroke="#333"/>`);
    out.push(`<text x="${n(xm)}" y="${ty}" text-anchor="middle" font-size="12">${esc(signed(d))} 天/d</text>`);
    out.push(`<text x="${n(xm)}" y="${ty + 14}" text-anchor="middle" font-size="11" fill="#555">${dateOf(d)}</text>`);
  }

  // Legend and captions.
  const ly = axisY + 28 + rowsUsed * 34;
  out.push(`<rect x="20" y="${ly - 11}" width="14" height="12" fill="#2e9d5b"/><text x="40" y="${ly}">可在线更新 / renew online</text>`);
  if (stepUpDay !== null) out.push(`<rect x="250" y="${ly - 11}" width="14" height="12" fill="#e08a1e"/><text x="270" y="${ly}">需加强身份验证 / with an extra identity check</text>`);
  out.push(`<text x="20" y="${ly + 20}" font-size="12" fill="#444">${esc(`按中国标准时间（UTC+8）自然日计算：开放日 00:00 起，截止日 23:59:59 止。日期为示例：证书于 ${dateOf(0)} 到期。比例示意，非等距。`)}</text>`);
  out.push(`<text x="20" y="${ly + 38}" font-size="12" fill="#444">${esc("Days are calendar days in China Standard Time (UTC+8): from 00:00 on the opening day to the end of the last day.")}</text>`);
  out.push(`<text x="20" y="${ly + 56}" font-size="12" fill="#444">${esc(`Dates are an example: a certificate expiring on ${dateOf(0)}. Not to scale.`)}</text>`);
  out.push(`</svg>`);
  const H = String(ly + 70);
  return out.join("\n").replaceAll(H_PLACEHOLDER, H) + "\n";
}

function channelLabel(c: RenewalChannel): string {
  const short: Record<RenewalChannel, string> = { web: "网页 web", mobile: "手机 mobile", cli: "命令行 cli", est: "EST 自动 est" };
  return short[c] ?? channelNames[c].en;
}
