/** The "share code + display name" form for people who are not host or invited. */
import { clearStatus, field, h, say, sayError, statusLine } from '../dom';
import type { MsgKey } from '../i18n';
import { api, ApiError } from '../net/api';
import { DISPLAY_NAME_MAX, type Admission } from '../net/protocol';

export interface RedeemFormOptions {
  roomId: string;
  defaultName?: string;
  /** A notice above the form (e.g. the old access expired). */
  notice?: MsgKey;
  onAdmitted: (a: Admission) => void;
}

export function redeemForm(opts: RedeemFormOptions): HTMLElement {
  const code = h('input', {
    testid: 'code-input',
    attrs: {
      type: 'text',
      name: 'code',
      required: true,
      autocomplete: 'off',
      autocapitalize: 'characters',
      spellcheck: 'false',
      inputmode: 'text',
      maxlength: 64,
      class: 'code-input',
    },
    i18nAttrs: { placeholder: 'join.code_placeholder' },
  });
  const name = h('input', {
    testid: 'name-input',
    attrs: { type: 'text', name: 'display_name', required: true, maxlength: DISPLAY_NAME_MAX, autocomplete: 'name' },
  });
  name.value = opts.defaultName ?? '';
  const button = h('button', { testid: 'redeem-button', class: 'primary', i18n: 'join.submit', attrs: { type: 'submit' } });
  const status = statusLine('join-status');
  if (opts.notice) say(status, opts.notice, 'info');

  const form = h(
    'form',
    {
      class: 'card narrow join-form',
      attrs: { novalidate: true },
      on: {
        submit: (ev) => {
          ev.preventDefault();
          void submit();
        },
      },
    },
    h('h1', { i18n: 'join.title' }),
    h('p', { class: 'lead', i18n: 'join.lead' }),
    field('join.code_label', code, 'join.code_hint'),
    field('join.name_label', name, 'join.name_hint'),
    status,
    h('div', { class: 'actions' }, button),
  );

  async function submit(): Promise<void> {
    const codeValue = code.value.trim();
    const nameValue = name.value.trim();
    if (!codeValue) {
      say(status, 'join.code_required', 'error');
      code.focus();
      return;
    }
    if (!nameValue) {
      say(status, 'join.name_required', 'error');
      name.focus();
      return;
    }
    button.disabled = true;
    clearStatus(status);
    try {
      const admission = await api.redeem(opts.roomId, { code: codeValue, display_name: nameValue });
      opts.onAdmitted(admission);
    } catch (err) {
      sayError(status, err);
      if (err instanceof ApiError && (err.code === 'gone' || err.code === 'locked' || err.code === 'not_found')) code.select();
    } finally {
      button.disabled = false;
    }
  }

  queueMicrotask(() => code.focus());
  return form;
}
