import { useEffect, useState } from "preact/hooks";
import { day } from "../shared/format.js";
import { t, useLang } from "../shared/i18n.js";
import { fetchJson } from "../shared/http.js";
import { asProblem, type Problem } from "../shared/problem.js";
import { Busy, ProblemView } from "../shared/ui.js";

/** One certificate of the signed-in holder's organisation, as the holder API lists it. */
export interface OrgCertificate {
  serial: string;
  subjectDn: string;
  holderId?: string;
  holderName?: string;
  notAfter: number | string;
  status: string;
  daysLeft?: number;
  expiring?: boolean;
}

/** The holder API of the reminders (issue 7): sessions and the bell live there. */
export const HOLDER_API = "/api/v1/holder";

/** How many certificates the bell rings for (0 when not signed in or not available). */
export function useBell(): { count: number; items: OrgCertificate[] } {
  const [bell, setBell] = useState<{ count: number; items: OrgCertificate[] }>({ count: 0, items: [] });
  useEffect(() => {
    fetchJson<{ count?: number; items?: OrgCertificate[]; certificates?: OrgCertificate[] }>(`${HOLDER_API}/bell`, { credentials: "same-origin" })
      .then((b) => { const items = b.items ?? b.certificates ?? []; setBell({ count: b.count ?? items.length, items }); }, () => undefined);
  }, []);
  return bell;
}

const DAY = 86_400_000;

/**
 * Seed 003's organisations: every certificate of the organisation, the
 * expiring ones first and marked, as the holder API gives them to a
 * signed-in holder. Not signed in: the catalogue's page for that.
 */
export function OrganisationPage(props: { bell: { count: number; items: OrgCertificate[] } }) {
  useLang();
  const [certs, setCerts] = useState<OrgCertificate[] | null>(null);
  const [problem, setProblem] = useState<Problem | null>(null);
  useEffect(() => {
    fetchJson<{ certificates: OrgCertificate[] }>(`${HOLDER_API}/certificates`, { credentials: "same-origin" })
      .then((r) => setCerts(r.certificates), (e: unknown) => setProblem(asProblem(e)));
  }, []);
  const now = Date.now();
  const left = (c: OrgCertificate) => c.daysLeft ?? Math.floor(((typeof c.notAfter === "string" ? Date.parse(c.notAfter) : c.notAfter) - now) / DAY);
  return (
    <div class="page" data-page="org">
      <h1>{t("org.title")}</h1>
      {props.bell.count > 0 ? <p class="warn" role="alert">{t("org.expiringNow", { n: props.bell.count })}</p> : null}
      {problem ? <ProblemView problem={problem} helpHref={`#/help/${problem.code}`} /> : null}
      {!certs && !problem ? <Busy /> : null}
      {certs ? (
        <table class="org-table">
          <thead><tr><th>{t("cert.subject")}</th><th>{t("org.holder")}</th><th>{t("cert.serial")}</th><th>{t("org.expires")}</th><th>{t("org.state")}</th></tr></thead>
          <tbody>
            {[...certs].sort((a, b) => left(a) - left(b)).map((c) => {
              const d = left(c);
              const cls = d < 0 ? "bad" : c.expiring || d <= 30 ? "warn" : "ok";
              return (
                <tr class={cls} data-serial={c.serial}>
                  <td>{c.subjectDn}</td><td>{c.holderName ?? c.holderId ?? ""}</td><td><code>{c.serial}</code></td><td>{day(c.notAfter)}</td>
                  <td>{d < 0 ? t("cert.expired", { n: -d }) : cls === "warn" ? t("cert.expiring", { n: d }) : t("cert.valid", { n: d })}</td>
                </tr>
              );
            })}
          </tbody>
        </table>
      ) : null}
    </div>
  );
}
