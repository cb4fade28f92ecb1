/**
 * Strings. Every user-visible string goes through `t()`; DOM nodes built with `h()` keep
 * their key in `data-i18n*` attributes, so switching language re-translates the page in
 * place without losing state (a live socket, a half-typed message).
 */
import i18next from 'i18next';
import en from './en.json';
import fr from './fr.json';

export const LANGUAGES = ['en', 'fr'] as const;
export type Lang = (typeof LANGUAGES)[number];
/** Language names in their own language, for the selector. */
export const LANGUAGE_NAMES: Record<Lang, string> = { en: 'English', fr: 'Français' };

const STORAGE_KEY = 'consultd.lang';

// fr.json must have every key of en.json: this assignment fails to compile otherwise.
const frChecked: typeof en = fr;

type PluralSuffix = 'zero' | 'one' | 'two' | 'few' | 'many' | 'other';
type StripPlural<K extends string> = K extends `${infer B}_${PluralSuffix}` ? B : K;
type Leaves<T, P extends string = ''> = {
  [K in keyof T & string]: T[K] extends string ? StripPlural<`${P}${K}`> : Leaves<T[K], `${P}${K}.`>;
}[keyof T & string];

/** Every message key of en.json (plural forms folded into their base key). */
export type MsgKey = Leaves<typeof en>;
export type MsgArgs = Record<string, string | number>;

export function isLang(value: unknown): value is Lang {
  return typeof value === 'string' && (LANGUAGES as readonly string[]).includes(value);
}

/** Pick a language: the stored choice, else the first of `preferred` we have, else English. */
export function negotiate(preferred: readonly string[], stored: string | null): Lang {
  if (isLang(stored)) return stored;
  for (const tag of preferred) {
    const base = tag.toLowerCase().split('-')[0];
    if (isLang(base)) return base;
  }
  return 'en';
}

function readStored(): string | null {
  try {
    return localStorage.getItem(STORAGE_KEY);
  } catch {
    return null;
  }
}

export async function initI18n(): Promise<void> {
  const preferred = navigator.languages?.length ? navigator.languages : [navigator.language];
  const lng = negotiate(preferred, readStored());
  await i18next.init({
    lng,
    fallbackLng: 'en',
    supportedLngs: [...LANGUAGES],
    resources: { en: { translation: en }, fr: { translation: frChecked } },
    interpolation: { escapeValue: false }, // we only ever assign textContent
  });
  document.documentElement.lang = lng;
}

export function t(key: MsgKey, args?: MsgArgs): string {
  return args ? i18next.t(key, args) : i18next.t(key);
}

export function currentLang(): Lang {
  const l = i18next.language;
  return isLang(l) ? l : 'en';
}

const listeners = new Set<(lang: Lang) => void>();

export function onLanguageChanged(cb: (lang: Lang) => void): () => void {
  listeners.add(cb);
  return () => listeners.delete(cb);
}

export async function setLanguage(lang: Lang): Promise<void> {
  try {
    localStorage.setItem(STORAGE_KEY, lang);
  } catch {
    // private mode: the choice lasts for this page only
  }
  await i18next.changeLanguage(lang);
  document.documentElement.lang = lang;
  translateTree(document.body);
  for (const cb of listeners) cb(lang);
}

/** The message key for an error code (HTTP, ack, connect_error or `error` event). */
export function errorKey(err: unknown): MsgKey {
  const code =
    typeof err === 'object' && err !== null && typeof (err as { code?: unknown }).code === 'string'
      ? (err as { code: string }).code
      : 'unknown';
  const key = `errors.${code}`;
  return (code in en.errors ? key : 'errors.unknown') as MsgKey;
}

export function errorText(err: unknown): string {
  return t(errorKey(err));
}

export function formatTime(ms: number): string {
  return new Intl.DateTimeFormat(currentLang(), { hour: '2-digit', minute: '2-digit' }).format(ms);
}

export function formatDateTime(iso: string | number): string {
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return new Intl.DateTimeFormat(currentLang(), { dateStyle: 'medium', timeStyle: 'short' }).format(d);
}

// ---------------------------------------------------------------- DOM bindings

const ATTR_KEY = 'data-i18n';
const ATTR_ARGS = 'data-i18n-args';
const ATTR_ATTRS = 'data-i18n-attrs';
const ATTR_TIME = 'data-time';
const ATTR_DATETIME = 'data-datetime';

/** Bind an element's text to a key (re-translated on language change). */
export function bindText(el: Element, key: MsgKey, args?: MsgArgs): void {
  el.setAttribute(ATTR_KEY, key);
  if (args) el.setAttribute(ATTR_ARGS, JSON.stringify(args));
  else el.removeAttribute(ATTR_ARGS);
  el.textContent = t(key, args);
}

/** Bind attributes (placeholder, aria-label, title) to keys. */
export function bindAttrs(el: Element, attrs: Record<string, MsgKey>): void {
  el.setAttribute(ATTR_ATTRS, JSON.stringify(attrs));
  for (const [name, key] of Object.entries(attrs)) el.setAttribute(name, t(key));
}

/** Show a time of day that follows the language. */
export function bindTime(el: Element, ms: number): void {
  el.setAttribute(ATTR_TIME, String(ms));
  el.textContent = formatTime(ms);
}

export function bindDateTime(el: Element, iso: string): void {
  el.setAttribute(ATTR_DATETIME, iso);
  el.textContent = formatDateTime(iso);
}

export function translateTree(root: ParentNode): void {
  for (const el of root.querySelectorAll(`[${ATTR_KEY}]`)) {
    const key = el.getAttribute(ATTR_KEY) as MsgKey;
    const raw = el.getAttribute(ATTR_ARGS);
    el.textContent = t(key, raw ? (JSON.parse(raw) as MsgArgs) : undefined);
  }
  for (const el of root.querySelectorAll(`[${ATTR_ATTRS}]`)) {
    const attrs = JSON.parse(el.getAttribute(ATTR_ATTRS) ?? '{}') as Record<string, MsgKey>;
    for (const [name, key] of Object.entries(attrs)) el.setAttribute(name, t(key));
  }
  for (const el of root.querySelectorAll(`[${ATTR_TIME}]`)) el.textContent = formatTime(Number(el.getAttribute(ATTR_TIME)));
  for (const el of root.querySelectorAll(`[${ATTR_DATETIME}]`)) {
    el.textContent = formatDateTime(el.getAttribute(ATTR_DATETIME) ?? '');
  }
}
