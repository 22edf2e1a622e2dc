import { day } from "../shared/format.js";
import { t, useLang } from "../shared/i18n.js";
import type { Expiries } from "./admin-client.js";
import { orderStates } from "./admin-client.js";

/**
 * Upcoming expiries as bars: the overdue ones first (red), then one bar per
 * week for the next 52 weeks, with month labels; the numbers are also in a
 * table for screen readers and for copying.
 */
export function ExpiryChart(props: { data: Expiries }) {
  useLang();
  const d = props.data;
  const bars = [{ label: t("dash.overdue"), count: d.overdue, start: 0, overdue: true }, ...d.weeks.map((w) => ({ label: day(w.start), count: w.count, start: w.start, overdue: false }))];
  const max = Math.max(1, ...bars.map((b) => b.count));
  const W = 960, H = 240, left = 40, bottom = 40, top = 16;
  const bw = (W - left - 10) / bars.length;
  const y = (n: number) => top + (H - top - bottom) * (1 - n / max);
  let lastMonth = "";
  return (
    <figure class="chart" data-chart="expiries">
      <svg viewBox={`0 0 ${W} ${H}`} role="img" aria-label={t("dash.expiriesAria", { total: d.total, overdue: d.overdue })}>
        <line x1={left} x2={W - 10} y1={H - bottom} y2={H - bottom} class="axis" />
        <text x={left - 6} y={y(max) + 4} class="tick" text-anchor="end">{max}</text>
        <text x={left - 6} y={H - bottom + 4} class="tick" text-anchor="end">0</text>
        {bars.map((b, i) => {
          const x = left + i * bw;
          const month = b.overdue ? "" : day(b.start).slice(0, 7);
          const showMonth = month !== lastMonth && !b.overdue;
          lastMonth = month || lastMonth;
          return (
            <g data-count={b.count}>
              <rect x={x + 1} y={y(b.count)} width={Math.max(1, bw - 2)} height={H - bottom - y(b.count)} class={b.overdue ? "bar overdue" : "bar"}>
                <title>{`${b.label}: ${b.count}`}</title>
              </rect>
              {b.overdue ? <text x={x + bw / 2} y={H - bottom + 14} class="tick" text-anchor="middle">{t("dash.overdueShort")}</text> : null}
              {showMonth ? <text x={x} y={H - bottom + 28} class="tick">{month.slice(2)}</text> : null}
            </g>
          );
        })}
      </svg>
      <figcaption>{t("dash.expiriesCaption", { total: d.total, overdue: d.overdue, days: d.overdueSinceDays })}</figcaption>
      <details>
        <summary>{t("dash.asTable")}</summary>
        <table><thead><tr><th>{t("dash.weekFrom")}</th><th>{t("dash.count")}</th></tr></thead>
          <tbody>{bars.map((b) => <tr><td>{b.label}</td><td>{b.count}</td></tr>)}</tbody></table>
      </details>
    </figure>
  );
}

/** The renewal funnel: orders by state, the path to completion first, then the ends that did not complete. */
export function Funnel(props: { byState: Record<string, number> }) {
  useLang();
  const rows = orderStates.map((s) => ({ s, n: props.byState[s] ?? 0 }));
  const max = Math.max(1, ...rows.map((r) => r.n));
  return (
    <table class="funnel" data-chart="funnel">
      <caption>{t("dash.funnel")}</caption>
      <tbody>
        {rows.map((r) => (
          <tr data-state={r.s}>
            <th scope="row">{t(`order.${r.s}`)}</th>
            <td class="n">{r.n}</td>
            <td class="barcell"><meter min={0} max={max} value={r.n} aria-label={`${t(`order.${r.s}`)}: ${r.n}`} /></td>
          </tr>
        ))}
      </tbody>
    </table>
  );
}
