import { useMemo, useState } from "preact/hooks";
import { pick, t, useLang } from "../shared/i18n.js";
import { describeErrorExample, legacyErrors, lookupError, type ErrorCode, type ErrorLookupResult } from "../shared/policy.js";
import { holderCodes } from "../shared/holder-codes.js";
import { isCatalogueCode } from "../shared/problem.js";


function CodeEntry(props: { code: ErrorCode; open?: boolean }) {
  useLang();
  // No error behind it: each parameter reads as an example value (error-examples.ts), never as {name} or an ellipsis.
  const p = describeErrorExample(props.code);
  return (
    <details class="help-entry" id={`code-${props.code}`} open={props.open} data-code={props.code}>
      <summary><code>{props.code}</code> {pick(p.message)}</summary>
      <p><strong>{t("common.whatToDo")}</strong> {pick(p.remedy)}</p>
    </details>
  );
}

function LookupResult(props: { r: ErrorLookupResult }) {
  useLang();
  const r = props.r;
  return (
    <li class="lookup" data-match={r.match}>
      {r.legacy ? (
        <div class="legacy">
          <p><strong>{r.legacy.legacyCode ? <code>{r.legacy.legacyCode}</code> : null} {r.legacy.legacyMessage}</strong></p>
          <p class="hint">{pick({ zh: r.legacy.meaningZh, en: r.legacy.meaningEn })}</p>
        </div>
      ) : null}
      {r.ours.map((o) => <CodeEntry code={o.code} open />)}
    </li>
  );
}

/**
 * Help for every catalogue code and every legacy code of today's systems
 * (0116, 9002, 403.7 ...): a search box that takes a code or a pasted
 * message, and the whole catalogue below it. Works without the agent and
 * without the server (the catalogue is part of the page).
 */
export function HelpPage(props: { code?: string | undefined }) {
  useLang();
  const [q, setQ] = useState(props.code ?? "");
  const results = useMemo(() => (q.trim() ? lookupError(q) : []), [q]);
  const focus = props.code && isCatalogueCode(props.code) ? props.code : undefined;
  return (
    <div class="page" data-page="help">
      <h1>{t("help.title")}</h1>
      <p>{t("help.explain")}</p>
      <form role="search" onSubmit={(e) => e.preventDefault()}>
        <label for="help-q">{t("help.search")}</label>
        <input id="help-q" type="search" value={q} placeholder="0116 · TOKEN_PIN_LOCKED · 证书不存在" onInput={(e) => setQ(e.currentTarget.value)} />
      </form>
      {q.trim() ? (
        results.length ? <ol class="lookup-results" aria-live="polite">{results.slice(0, 20).map((r) => <LookupResult r={r} />)}</ol>
          : <p role="status">{t("help.noMatch")}</p>
      ) : null}
      {focus ? null : (
        <>
          <h2>{t("help.allCodes", { n: holderCodes.length })}</h2>
          <div class="help-list">{holderCodes.map((c) => <CodeEntry code={c} />)}</div>
          <h2>{t("help.legacyCodes", { n: legacyErrors.length })}</h2>
          <table class="legacy-table">
            <thead><tr><th>{t("help.legacyCode")}</th><th>{t("help.legacyMessage")}</th><th>{t("help.ours")}</th></tr></thead>
            <tbody>
              {legacyErrors.map((l) => (
                <tr><td>{l.legacyCode ?? "—"}</td><td>{l.legacyMessage}</td><td>{l.ours.map((c) => <a href={`#/help/${c}`}><code>{c}</code></a>)}</td></tr>
              ))}
            </tbody>
          </table>
        </>
      )}
    </div>
  );
}
