/**
 * The chat panel: history on join, optimistic send with a client id, retry with the same
 * id until acked (the server stores a retried id once), dedupe by id, order by seq.
 */
import { h, replace } from '../dom';
import { bindText, bindTime, errorKey } from '../i18n';
import { AckError } from '../net/socket';
import { CHAT_MAX_CHARS, type ChatMessage, type JoinedPayload } from '../net/protocol';
import { ChatStore, newMessageId, type ChatEntry } from './store';

export interface ChatDeps {
  /** Emit `chat` and resolve with the stored message from the ack; throws AckError. */
  send: (id: string, text: string) => Promise<ChatMessage>;
  /** Whether the room is live (socket connected and `joined` received). */
  isLive: () => boolean;
  self: () => { id: string; name: string };
}

/** Errors after which the same message may go through later. */
const TRANSIENT = new Set(['offline', 'timeout', 'rate_limited']);
const RETRY_MS = 3000;

export class ChatPanel {
  readonly el: HTMLElement;
  private readonly store = new ChatStore();
  private readonly log: HTMLOListElement;
  private readonly form: HTMLFormElement;
  private readonly input: HTMLTextAreaElement;
  private readonly readOnlyNote: HTMLElement;
  private readonly gapNote: HTMLElement;
  private readonly items = new Map<string, HTMLLIElement>();
  private readonly inFlight = new Set<string>();
  private readonly retryTimers = new Map<string, ReturnType<typeof setTimeout>>();
  private canPost = false;

  constructor(private readonly deps: ChatDeps) {
    this.log = h('ol', {
      class: 'chat-log',
      testid: 'chat-log',
      attrs: { 'aria-live': 'polite', 'aria-relevant': 'additions', tabindex: 0 },
      i18nAttrs: { 'aria-label': 'chat.log_label' },
    });
    this.gapNote = h('p', { class: 'chat-gap', i18n: 'chat.history_incomplete', attrs: { hidden: true } });
    this.input = h('textarea', {
      testid: 'chat-input',
      attrs: { rows: 2, maxlength: CHAT_MAX_CHARS, required: true, autocomplete: 'off' },
      i18nAttrs: { placeholder: 'chat.placeholder', 'aria-label': 'chat.input_label' },
      on: {
        keydown: (ev) => {
          if (ev.key === 'Enter' && !ev.shiftKey && !ev.isComposing) {
            ev.preventDefault();
            this.form.requestSubmit();
          }
        },
      },
    });
    this.form = h(
      'form',
      {
        class: 'chat-form',
        on: {
          submit: (ev) => {
            ev.preventDefault();
            this.submit();
          },
        },
      },
      this.input,
      h('button', { testid: 'chat-send', class: 'primary', i18n: 'chat.send', attrs: { type: 'submit' } }),
    );
    this.readOnlyNote = h('p', { class: 'chat-readonly', i18n: 'chat.observer_note' });
    this.el = h(
      'section',
      { class: 'chat panel', attrs: { 'aria-labelledby': 'chat-heading' } },
      h('h2', { i18n: 'chat.title', attrs: { id: 'chat-heading' } }),
      this.gapNote,
      this.log,
      this.form,
      this.readOnlyNote,
    );
    this.setCanPost(false);
  }

  /** Highest seq seen, for `since` on reconnect. */
  get lastSeq(): number | null {
    return this.store.lastSeq;
  }

  setCanPost(canPost: boolean): void {
    this.canPost = canPost;
    this.form.hidden = !canPost;
    this.readOnlyNote.hidden = canPost;
  }

  focus(): void {
    if (this.canPost) this.input.focus();
  }

  /** `joined`: merge the history (all of it, or what came after `since`), then resend what is unacked. */
  onJoined(p: JoinedPayload): void {
    this.store.putAll(p.history);
    this.store.noteSeq(p.last_seq);
    this.gapNote.hidden = p.history_complete;
    this.render();
    this.retryPending();
  }

  onMessage(msg: ChatMessage): void {
    this.store.put(msg);
    this.render();
  }

  retryPending(): void {
    if (!this.deps.isLive()) return;
    for (const e of this.store.pending()) void this.attempt(e.id);
  }

  private submit(): void {
    const text = this.input.value.trim();
    if (!text || !this.canPost) return;
    const self = this.deps.self();
    const entry = this.store.addPending(newMessageId(), text.slice(0, CHAT_MAX_CHARS), self.id, self.name);
    this.input.value = '';
    this.render();
    if (this.deps.isLive()) void this.attempt(entry.id);
  }

  private async attempt(id: string): Promise<void> {
    const entry = this.store.get(id);
    if (!entry || entry.seq !== null || this.inFlight.has(id)) return;
    const timer = this.retryTimers.get(id);
    if (timer !== undefined) clearTimeout(timer);
    this.retryTimers.delete(id);
    this.inFlight.add(id);
    try {
      const msg = await this.deps.send(id, entry.text);
      this.store.put(msg);
    } catch (err) {
      const code = err instanceof AckError ? err.code : 'unknown';
      if (TRANSIENT.has(code)) {
        // Stays pending: resent on the next `joined`, or shortly if we are still live.
        this.retryTimers.set(
          id,
          setTimeout(() => {
            this.retryTimers.delete(id);
            if (this.deps.isLive()) void this.attempt(id);
          }, RETRY_MS),
        );
      } else {
        this.store.markFailed(id, code);
      }
    } finally {
      this.inFlight.delete(id);
      this.render();
    }
  }

  private retryOne(id: string): void {
    this.store.markPending(id);
    this.render();
    if (this.deps.isLive()) void this.attempt(id);
  }

  private render(): void {
    const nearBottom = this.log.scrollHeight - this.log.scrollTop - this.log.clientHeight < 48;
    const selfId = this.deps.self().id;
    const lis = this.store.ordered().map((e) => this.renderEntry(e, e.authorId === selfId));
    replace(this.log, ...lis);
    if (nearBottom || lis.at(-1)?.dataset['mine'] === 'true') this.log.scrollTop = this.log.scrollHeight;
  }

  private renderEntry(e: ChatEntry, mine: boolean): HTMLLIElement {
    let li = this.items.get(e.id);
    const key = `${e.seq ?? ''}|${e.status}|${e.error ?? ''}|${e.authorName}|${mine}`;
    if (li && li.dataset['key'] === key) return li;

    const time = h('time', { attrs: { datetime: new Date(e.ts).toISOString() } });
    bindTime(time, e.ts);
    const state = h('span', { class: 'msg-state' });
    if (e.status === 'pending') bindText(state, 'chat.sending');
    if (e.status === 'failed') bindText(state, 'chat.not_sent');
    const retry =
      e.status === 'failed'
        ? h('button', {
            class: 'link',
            i18n: 'chat.retry',
            attrs: { type: 'button' },
            on: { click: () => this.retryOne(e.id) },
          })
        : null;
    const reason = e.status === 'failed' && e.error ? h('span', { class: 'msg-error' }) : null;
    if (reason) bindText(reason, errorKey({ code: e.error }));

    const fresh = h(
      'li',
      {
        class: `msg${mine ? ' mine' : ''}`,
        testid: 'chat-message',
        attrs: { 'data-id': e.id, 'data-seq': e.seq ?? '', 'data-status': e.status, 'data-mine': String(mine) },
      },
      h('div', { class: 'msg-meta' }, h('span', { class: 'msg-author' }, e.authorName), ' ', time, ' ', state, reason, retry),
      h('p', { class: 'msg-text' }, e.text),
    );
    fresh.dataset['key'] = key;
    li = fresh;
    this.items.set(e.id, li);
    return li;
  }
}
