import type { ComponentChildren } from "preact";
import { pick, setLang, t, useLang } from "./i18n.js";
import type { Problem } from "./problem.js";

/** The language switch: zh-CN by default, English on demand. */
export function LangSwitch() {
  const l = useLang();
  return (
    <button type="button" class="link lang" lang={l === "en" ? "zh-CN" : "en"} onClick={() => setLang(l === "en" ? "zh-CN" : "en")}>
      {l === "en" ? "中文" : "English"}
    </button>
  );
}

/**
 * What happened and what to do, for any error: the catalogue code, the
 * message and the remedy in the current language, and a link to its help.
 */
export function ProblemView(props: { problem: Problem; helpHref?: string; children?: ComponentChildren }) {
  useLang();
  const p = props.problem;
  return (
    <section class="problem" role="alert" aria-live="assertive" data-code={p.code}>
      <h2>{pick(p.message)}</h2>
      <p class="remedy"><strong>{t("common.whatToDo")}</strong> {pick(p.remedy)}</p>
      <p class="code">
        {t("common.errorCode")} <code>{p.code}</code>
        {props.helpHref ? <> · <a href={props.helpHref}>{t("common.moreHelp")}</a></> : null}
      </p>
      {p.detail ? <details><summary>{t("common.details")}</summary><pre>{p.detail}</pre></details> : null}
      {props.children}
    </section>
  );
}

/** A small busy line for screen readers and eyes. */
export function Busy(props: { label?: string }) {
  useLang();
  return <p class="busy" role="status" aria-live="polite"><span class="spinner" aria-hidden="true" /> {props.label ?? t("common.loading")}</p>;
}

/** The current hash route as path segments and query, re-rendering on navigation. */
export function parseHash(hash: string): { path: string[]; query: URLSearchParams } {
  const h = hash.replace(/^#\/?/, "");
  const [p = "", q = ""] = h.split("?");
  return { path: p.split("/").filter(Boolean).map(decodeURIComponent), query: new URLSearchParams(q) };
}
