/** One room in "my rooms": open, copy link, and for its host share codes, invites and end. */
import { clearStatus, copyText, field, h, say, sayError, statusLine } from '../dom';
import { bindDateTime, t } from '../i18n';
import { api, ApiError } from '../net/api';
import type { Room, User } from '../net/protocol';
import { codesPanel } from './codes';

export function roomLink(room: Room): string {
  return new URL(room.link || `/r/${room.id}`, location.origin).toString();
}

function inviteForm(room: Room): HTMLElement {
  const email = h('input', { testid: 'invite-email', attrs: { type: 'email', name: 'email', required: true, autocomplete: 'off' } });
  const status = statusLine();
  const button = h('button', { class: 'primary', i18n: 'invite.send', attrs: { type: 'submit' } });
  return h(
    'details',
    { class: 'sub-panel' },
    h('summary', { i18n: 'invite.title' }),
    h(
      'form',
      {
        class: 'inline-form',
        on: {
          submit: (ev) => {
            ev.preventDefault();
            const value = email.value.trim();
            if (!value) return;
            button.disabled = true;
            clearStatus(status);
            api
              .invite(room.id, value)
              .then((inv) => {
                say(status, 'invite.done', 'ok', { email: inv.email });
                email.value = '';
              })
              .catch((err: unknown) => {
                if (err instanceof ApiError && err.code === 'not_found') say(status, 'invite.no_such_physician', 'error');
                else sayError(status, err);
              })
              .finally(() => {
                button.disabled = false;
              });
          },
        },
      },
      field('fields.email', email, 'invite.hint'),
      h('div', { class: 'actions' }, button),
    ),
    status,
  );
}

export function roomCard(room: Room, me: User, onChanged: () => void): HTMLElement {
  const isHost = room.host_user_id === me.id;
  const open = room.status === 'open';
  const status = statusLine();
  const created = h('span');
  bindDateTime(created, room.created_at);

  const copy = h('button', {
    class: 'small',
    testid: 'copy-link',
    i18n: 'rooms.copy_link',
    attrs: { type: 'button' },
    on: {
      click: () => {
        void copyText(roomLink(room)).then((ok) => say(status, ok ? 'common.copied' : 'common.copy_failed', ok ? 'ok' : 'error'));
      },
    },
  });
  const end: HTMLButtonElement | null =
    isHost && open
      ? h('button', {
          class: 'small danger',
          i18n: 'rooms.end',
          attrs: { type: 'button' },
          on: {
            click: () => {
              if (!confirm(t('room.confirm_end'))) return;
              if (end) end.disabled = true;
              api
                .endRoom(room.id)
                .then(onChanged)
                .catch((err: unknown) => {
                  if (end) end.disabled = false;
                  sayError(status, err);
                });
            },
          },
        })
      : null;

  return h(
    'article',
    { class: `card room-card status-${room.status}`, testid: `room-${room.id}`, attrs: { 'data-room-id': room.id } },
    h(
      'header',
      { class: 'room-card-head' },
      h('h3', {}, room.title),
      h('span', { class: `badge room-${room.status}`, i18n: open ? 'rooms.status_open' : 'rooms.status_ended' }),
      h('span', { class: 'badge', i18n: isHost ? 'rooms.you_host' : 'rooms.you_invited' }),
      room.lobby ? h('span', { class: 'badge', i18n: 'rooms.lobby_on' }) : null,
    ),
    room.summary ? h('p', { class: 'summary-text' }, room.summary) : null,
    h('p', { class: 'muted' }, h('span', { i18n: 'rooms.created' }), ' ', created),
    h(
      'div',
      { class: 'actions' },
      open ? h('a', { class: 'button primary', i18n: 'rooms.open', attrs: { href: room.link || `/r/${room.id}` } }) : null,
      open ? copy : null,
      end,
    ),
    status,
    isHost && open ? codesPanel(room.id) : null,
    isHost && open ? inviteForm(room) : null,
  );
}
