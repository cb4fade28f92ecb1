/** Share codes of one room (host only): create, show once, list, revoke. */
import { clearStatus, copyText, field, h, replace, say, sayError, statusLine } from '../dom';
import { bindDateTime, t, type MsgKey } from '../i18n';
import { api } from '../net/api';
import { CODE_MAX_USES_MAX, type CodeRole, type ShareCode } from '../net/protocol';

const EXPIRY_OPTIONS: ReadonlyArray<readonly [number, MsgKey]> = [
  [3600, 'codes.expiry_1h'],
  [8 * 3600, 'codes.expiry_8h'],
  [86400, 'codes.expiry_24h'],
  [7 * 86400, 'codes.expiry_7d'],
];

const ROLE_KEYS: Record<CodeRole, MsgKey> = { participant: 'roles.participant', observer: 'roles.observer' };

/** Split a share code into its groups for reading aloud: on dashes, else in fives. */
export function codeGroups(code: string): string[] {
  const clean = code.trim().toUpperCase();
  if (clean.includes('-')) return clean.split('-').filter(Boolean);
  return clean.replace(/\s+/g, '').match(/.{1,5}/g) ?? [];
}

type CodeState = 'active' | 'revoked' | 'locked' | 'expired' | 'used_up';

export function codeState(c: ShareCode, now = Date.now()): CodeState {
  if (c.revoked) return 'revoked';
  if (c.locked) return 'locked';
  if (Date.parse(c.expires_at) <= now) return 'expired';
  if (c.uses >= c.max_uses) return 'used_up';
  return 'active';
}

const STATE_KEYS: Record<CodeState, MsgKey> = {
  active: 'codes.state_active',
  revoked: 'codes.state_revoked',
  locked: 'codes.state_locked',
  expired: 'codes.state_expired',
  used_up: 'codes.state_used_up',
};

export function codeDisplay(code: string): HTMLElement {
  const groups = codeGroups(code);
  const copyStatus = statusLine();
  return h(
    'div',
    { class: 'new-code', testid: 'new-code' },
    h('p', { class: 'hint', i18n: 'codes.shown_once' }),
    h(
      'p',
      {
        class: 'code-display',
        testid: 'new-code-value',
        attrs: { 'aria-label': groups.map((g) => g.split('').join(' ')).join(', '), 'data-code': code },
      },
      ...groups.flatMap((g, i) => [i ? h('span', { class: 'code-sep', attrs: { 'aria-hidden': 'true' } }, '-') : null, h('span', { class: 'code-group' }, g)]),
    ),
    h(
      'div',
      { class: 'actions' },
      h('button', {
        class: 'small',
        i18n: 'codes.copy',
        attrs: { type: 'button' },
        on: {
          click: () => {
            void copyText(code).then((ok) => say(copyStatus, ok ? 'common.copied' : 'common.copy_failed', ok ? 'ok' : 'error'));
          },
        },
      }),
    ),
    copyStatus,
  );
}

export function codesPanel(roomId: string): HTMLElement {
  const role = h(
    'select',
    { attrs: { name: 'role' }, testid: 'code-role' },
    h('option', { i18n: 'roles.participant', attrs: { value: 'participant' } }),
    h('option', { i18n: 'roles.observer', attrs: { value: 'observer' } }),
  );
  const expiry = h(
    'select',
    { attrs: { name: 'expires_in_s' }, testid: 'code-expiry' },
    ...EXPIRY_OPTIONS.map(([s, key]) => h('option', { i18n: key, attrs: { value: s, selected: s === 86400 } })),
  );
  const maxUses = h('input', {
    testid: 'code-max-uses',
    attrs: { name: 'max_uses', type: 'number', min: 1, max: CODE_MAX_USES_MAX, value: 10, required: true, class: 'short' },
  });
  const status = statusLine();
  const newCode = h('div', { class: 'new-code-slot' });
  const list = h('ul', { class: 'code-list', testid: 'code-list' });
  const createButton = h('button', { class: 'primary', testid: 'create-code', i18n: 'codes.create', attrs: { type: 'submit' } });

  const form = h(
    'form',
    {
      class: 'inline-form',
      on: {
        submit: (ev) => {
          ev.preventDefault();
          const uses = Number(maxUses.value);
          if (!Number.isInteger(uses) || uses < 1 || uses > CODE_MAX_USES_MAX) {
            say(status, 'codes.max_uses_invalid', 'error', { max: CODE_MAX_USES_MAX });
            return;
          }
          createButton.disabled = true;
          clearStatus(status);
          api
            .createCode(roomId, { role: role.value as CodeRole, expires_in_s: Number(expiry.value), max_uses: uses })
            .then((c) => {
              if (c.code) replace(newCode, codeDisplay(c.code));
              return refresh();
            })
            .catch((err: unknown) => sayError(status, err))
            .finally(() => {
              createButton.disabled = false;
            });
        },
      },
    },
    field('codes.role', role),
    field('codes.expiry', expiry),
    field('codes.max_uses', maxUses),
    h('div', { class: 'actions' }, createButton),
  );

  async function refresh(): Promise<void> {
    const { codes } = await api.listCodes(roomId);
    codes.sort((a, b) => b.created_at.localeCompare(a.created_at));
    if (!codes.length) {
      replace(list, h('li', { class: 'empty', i18n: 'codes.none' }));
      return;
    }
    replace(list, ...codes.map(renderCode));
  }

  function renderCode(c: ShareCode): HTMLLIElement {
    const state = codeState(c);
    const expires = h('span');
    bindDateTime(expires, c.expires_at);
    const revoke: HTMLButtonElement | null =
      state === 'active'
        ? h('button', {
            class: 'small danger',
            i18n: 'codes.revoke',
            attrs: { type: 'button' },
            on: {
              click: () => {
                if (!confirm(t('codes.confirm_revoke'))) return;
                if (revoke) revoke.disabled = true;
                api
                  .revokeCode(roomId, c.id)
                  .then(refresh)
                  .catch((err: unknown) => sayError(status, err));
              },
            },
          })
        : null;
    return h(
      'li',
      { class: `code-item state-${state}`, attrs: { 'data-code-id': c.id } },
      h('span', { class: 'badge', i18n: ROLE_KEYS[c.role] }),
      h('span', { class: `badge code-${state}`, i18n: STATE_KEYS[state] }),
      h('span', { i18n: ['codes.uses', { uses: c.uses, max: c.max_uses }] }),
      h('span', { class: 'muted' }, h('span', { i18n: 'codes.expires' }), ' ', expires),
      revoke,
    );
  }

  const panel = h(
    'details',
    {
      class: 'sub-panel',
      on: {
        toggle: () => {
          if (panel.open && !panel.dataset['loaded']) {
            panel.dataset['loaded'] = '1';
            refresh().catch((err: unknown) => sayError(status, err));
          }
        },
      },
    },
    h('summary', { i18n: 'codes.title' }),
    form,
    newCode,
    status,
    h('h4', { i18n: 'codes.list_title' }),
    list,
  );
  return panel;
}
