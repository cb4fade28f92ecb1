/** The header's account box: who is signed in, and sign out. */
import { h } from '../dom';
import { api } from '../net/api';
import type { User } from '../net/protocol';

export function accountBox(me: User | null): HTMLElement {
  if (!me) return h('span', { class: 'account-empty' });
  const out: HTMLButtonElement = h('button', {
    class: 'small',
    testid: 'logout-button',
    i18n: 'account.sign_out',
    attrs: { type: 'button' },
    on: {
      click: () => {
        out.disabled = true;
        void api
          .logout()
          .catch(() => undefined)
          .finally(() => location.assign('/'));
      },
    },
  });
  return h(
    'span',
    { class: 'account-box' },
    h('span', { class: 'account-name', i18n: ['account.signed_in_as', { name: me.name }] }),
    out,
  );
}
