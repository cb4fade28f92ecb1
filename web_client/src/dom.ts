/** A tiny typed DOM builder. User data goes in as text nodes, never as HTML. */
import { bindAttrs, bindText, errorKey, type MsgArgs, type MsgKey } from './i18n';

export type Child = Node | string | number | null | undefined | false;

type Handlers = { [E in keyof HTMLElementEventMap]?: (ev: HTMLElementEventMap[E]) => void };

export interface Props {
  class?: string;
  /** data-testid */
  testid?: string;
  /** A translated text: a key, or a key and its arguments. */
  i18n?: MsgKey | readonly [MsgKey, MsgArgs];
  /** Translated attributes, e.g. `{ 'aria-label': 'chat.input_label' }`. */
  i18nAttrs?: Record<string, MsgKey>;
  /** Plain attributes; `false`, null and undefined leave the attribute out, `true` sets it empty. */
  attrs?: Record<string, string | number | boolean | null | undefined>;
  on?: Handlers;
}

export function h<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  props: Props = {},
  ...children: Child[]
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  if (props.class) el.className = props.class;
  if (props.testid) el.dataset['testid'] = props.testid;
  if (props.attrs) {
    for (const [name, value] of Object.entries(props.attrs)) {
      if (value === false || value === null || value === undefined) continue;
      el.setAttribute(name, value === true ? '' : String(value));
    }
  }
  if (props.i18n) {
    if (typeof props.i18n === 'string') bindText(el, props.i18n as MsgKey);
    else {
      const [key, args] = props.i18n as readonly [MsgKey, MsgArgs];
      bindText(el, key, args);
    }
  }
  if (props.i18nAttrs) bindAttrs(el, props.i18nAttrs);
  if (props.on) {
    for (const [type, fn] of Object.entries(props.on)) {
      if (fn) el.addEventListener(type, fn as EventListener);
    }
  }
  append(el, ...children);
  return el;
}

export function append(parent: Node, ...children: Child[]): void {
  for (const c of children) {
    if (c === null || c === undefined || c === false) continue;
    parent.appendChild(typeof c === 'string' || typeof c === 'number' ? document.createTextNode(String(c)) : c);
  }
}

/** Replace all children of `parent`. */
export function replace(parent: Element, ...children: Child[]): void {
  parent.replaceChildren();
  append(parent, ...children);
}

/** A labelled form field; the label text is translated. */
export function field(labelKey: MsgKey, control: HTMLElement, hintKey?: MsgKey): HTMLElement {
  const id = control.id || `f-${Math.random().toString(36).slice(2, 10)}`;
  control.id = id;
  const hint = hintKey ? h('small', { class: 'hint', i18n: hintKey, attrs: { id: `${id}-hint` } }) : null;
  if (hint) control.setAttribute('aria-describedby', `${id}-hint`);
  return h('div', { class: 'field' }, h('label', { i18n: labelKey, attrs: { for: id } }), control, hint);
}

/** A live region for form errors and notices. */
export function statusLine(testid?: string): HTMLParagraphElement {
  return h('p', { class: 'form-status', attrs: { role: 'status', 'aria-live': 'polite' }, ...(testid ? { testid } : {}) });
}

/** Show a translated message in a status line; `kind` styles it. */
export function say(el: HTMLElement, key: MsgKey, kind: 'error' | 'ok' | 'info' = 'info', args?: MsgArgs): void {
  bindText(el, key, args);
  el.dataset['kind'] = kind;
}

/** Show the message for an error's code in a status line. */
export function sayError(el: HTMLElement, err: unknown): void {
  if (!(err instanceof Error) || !('code' in err)) console.error(err);
  say(el, errorKey(err), 'error');
}

export function clearStatus(el: HTMLElement): void {
  el.textContent = '';
  el.removeAttribute('data-i18n');
  el.removeAttribute('data-i18n-args');
  delete el.dataset['kind'];
}

export async function copyText(text: string): Promise<boolean> {
  try {
    await navigator.clipboard.writeText(text);
    return true;
  } catch {
    return false;
  }
}
