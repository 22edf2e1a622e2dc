import { useEffect, useState } from "preact/hooks";
import { en } from "./messages-en.js";
import { zhCN, type MessageKey } from "./messages-zh-CN.js";

/** The two languages of the pages; zh-CN is the default. */
export type Lang = "zh-CN" | "en";
export type { MessageKey };

const tables: Record<Lang, Record<MessageKey, string>> = { "zh-CN": zhCN, en };
const stored = (() => { try { return localStorage.getItem("ukey.lang"); } catch { return null; } })();
let current: Lang = stored === "en" ? "en" : "zh-CN";
const listeners = new Set<() => void>();
document.documentElement.lang = current;

/** The language now shown. */
export function lang(): Lang {
  return current;
}

/** Switches the language of every mounted page and remembers it in this browser. */
export function setLang(l: Lang): void {
  current = l;
  document.documentElement.lang = l;
  try { localStorage.setItem("ukey.lang", l); } catch { /* private mode: the switch still works for this page */ }
  for (const f of listeners) f();
}

/** A message of the current language with `{name}` placeholders filled. */
export function t(key: MessageKey, params: Record<string, string | number> = {}): string {
  return tables[current][key].replace(/\{(\w+)\}/g, (m, k: string) => (k in params ? String(params[k]) : m));
}

/** Picks the current language from a two-language text as the server, the agent or the catalogue gives it. */
export function pick(text: { zh?: string; "zh-CN"?: string; en?: string } | undefined): string {
  if (!text) return "";
  return current === "en" ? text.en ?? text["zh-CN"] ?? text.zh ?? "" : text["zh-CN"] ?? text.zh ?? text.en ?? "";
}

/** Re-renders the calling component when the language changes; returns the language. */
export function useLang(): Lang {
  const [, setTick] = useState(0);
  useEffect(() => {
    const f = () => setTick((n) => n + 1);
    listeners.add(f);
    return () => { listeners.delete(f); };
  }, []);
  return current;
}
