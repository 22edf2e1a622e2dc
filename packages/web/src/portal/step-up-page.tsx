import { useEffect, useState } from "preact/hooks";
import { t, useLang } from "../shared/i18n.js";
import { fetchJson } from "../shared/http.js";
import { asProblem, type Problem } from "../shared/problem.js";
import { ProblemView } from "../shared/ui.js";

/**
 * The second device's page of a step-up link (/step-up/{link}, shown as a
 * QR code by the renewal wizard): the holder confirms with the ID number on
 * record; the wizard on the first device then goes on. Needs no agent.
 */
export function StepUpApprovalPage(props: { link: string }) {
  useLang();
  const [idType, setIdType] = useState("resident-id");
  const [idNumber, setIdNumber] = useState("");
  const [problem, setProblem] = useState<Problem | null>(null);
  const [done, setDone] = useState(false);
  const [busy, setBusy] = useState(false);
  if (done) {
    return (
      <div class="page narrow" data-page="step-up-approval">
        <section class="result ok" role="status" data-result="step-up"><h2>{t("stepUp.approved")}</h2><p>{t("stepUp.goBack")}</p></section>
      </div>
    );
  }
  return (
    <div class="page narrow" data-page="step-up-approval">
      <h1>{t("verify.stepUpTitle")}</h1>
      <p>{t("stepUp.explain")}</p>
      {problem ? <ProblemView problem={problem} helpHref={`/#/help/${problem.code}`} /> : null}
      <form class="card" onSubmit={async (e) => {
        e.preventDefault(); setBusy(true); setProblem(null);
        try {
          await fetchJson(`/api/v1/step-up/${encodeURIComponent(props.link)}`, { method: "POST", json: { idType, idNumber: idNumber.trim() } });
          setDone(true);
        } catch (x) { setProblem(asProblem(x)); } finally { setBusy(false); }
      }}>
        <label for="su-type">{t("con.idType")}</label>
        <select id="su-type" value={idType} onChange={(e) => setIdType(e.currentTarget.value)}>
          <option value="resident-id">{t("verify.residentId")}</option>
          <option value="passport">{t("stepUp.passport")}</option>
          <option value="unified-social-credit-code">{t("stepUp.uscc")}</option>
        </select>
        <label for="su-number">{t("con.idNumber")}</label>
        <input id="su-number" autoComplete="off" required minLength={4} maxLength={40} value={idNumber} onInput={(e) => setIdNumber(e.currentTarget.value)} />
        <button type="submit" class="primary" disabled={busy}>{t("stepUp.approve")}</button>
      </form>
    </div>
  );
}

/** The step-up link as a QR code, for the phone's camera (the QR library loads only here). */
export function QrCode(props: { text: string; label: string }) {
  const [src, setSrc] = useState<string | null>(null);
  useEffect(() => {
    let live = true;
    void import("qrcode").then((q) => q.toDataURL(props.text, { margin: 1, width: 220, errorCorrectionLevel: "M" })).then((u) => { if (live) setSrc(u); }, () => undefined);
    return () => { live = false; };
  }, [props.text]);
  return src ? <img class="qr" src={src} alt={props.label} width={220} height={220} data-qr="step-up" /> : null;
}
