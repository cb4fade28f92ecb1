/**
 * The grid of video tiles: one per participant (camera and microphone together), one more
 * per screen share, each with the name, a muted icon and the speaking indicator. Remote
 * audio plays from hidden <audio> elements, one per producer, so a tile's <video> can stay
 * muted (muted video may autoplay without a gesture).
 */
import { h, replace } from '../dom';
import { bindText } from '../i18n';
import type { MediaTrack } from '../net/protocol';
import type { RemoteTrack } from './session';

export interface TileModel {
  key: string;
  participantId: string;
  name: string;
  screen: boolean;
  self: boolean;
  video: MediaStreamTrack | null;
  /** The camera is off (or we receive no video): show the name instead. */
  videoOff: boolean;
  /** The microphone is muted, or there is none. */
  micMuted: boolean;
}

export interface GridInput {
  selfId: string;
  selfName: string;
  /** Our own preview (null: camera off), our microphone state, whether we publish at all. */
  selfVideo: MediaStreamTrack | null;
  selfScreen: MediaStreamTrack | null;
  selfMicMuted: boolean;
  selfPublishes: boolean;
  tracks: MediaTrack[];
  remote: ReadonlyMap<string, RemoteTrack>;
}

/** Tiles from the room's tracks and what we receive: pure, for the grid to render. */
export function tileModels(input: GridInput): TileModel[] {
  const tiles: TileModel[] = [];
  if (input.selfPublishes) {
    tiles.push({
      key: `${input.selfId}:camera`,
      participantId: input.selfId,
      name: input.selfName,
      screen: false,
      self: true,
      video: input.selfVideo,
      videoOff: input.selfVideo === null,
      micMuted: input.selfMicMuted,
    });
    if (input.selfScreen) {
      tiles.push({
        key: `${input.selfId}:screen`,
        participantId: input.selfId,
        name: input.selfName,
        screen: true,
        self: true,
        video: input.selfScreen,
        videoOff: false,
        micMuted: true,
      });
    }
  }
  const byKey = new Map<string, TileModel>();
  for (const t of input.tracks) {
    if (t.participant_id === input.selfId) continue;
    const screen = t.source === 'screen';
    const key = `${t.participant_id}:${screen ? 'screen' : 'camera'}`;
    let tile = byKey.get(key);
    if (!tile) {
      tile = {
        key,
        participantId: t.participant_id,
        name: t.name,
        screen,
        self: false,
        video: null,
        videoOff: true,
        micMuted: true,
      };
      byKey.set(key, tile);
    }
    const remote = input.remote.get(t.producer_id);
    if (t.kind === 'video') {
      tile.video = remote?.track ?? null;
      tile.videoOff = t.muted || !remote;
    } else {
      tile.micMuted = t.muted;
    }
  }
  // A screen share without its camera tile still shows who shares.
  return tiles.concat([...byKey.values()]);
}

function initials(name: string): string {
  const parts = name.replace(/^(dr\.?|pr\.?|prof\.?)\s+/i, '').split(/\s+/).filter(Boolean);
  return parts
    .slice(0, 2)
    .map((p) => p[0]?.toUpperCase() ?? '')
    .join('');
}

class Tile {
  readonly el: HTMLElement;
  private readonly video: HTMLVideoElement;
  private readonly avatar: HTMLElement;
  private readonly nameEl: HTMLElement;
  private readonly tag: HTMLElement;
  private readonly mutedIcon: HTMLElement;
  private track: MediaStreamTrack | null = null;

  constructor(m: TileModel) {
    this.video = h('video', { attrs: { autoplay: true, playsinline: true, muted: true } });
    this.video.muted = true;
    this.avatar = h('div', { class: 'tile-avatar', attrs: { 'aria-hidden': 'true' } });
    this.nameEl = h('span', { class: 'tile-name', testid: 'media-tile-name' });
    this.tag = h('span', { class: 'tile-tag' });
    this.mutedIcon = h('span', {
      class: 'tile-muted',
      testid: 'media-tile-muted',
      attrs: { role: 'img' },
      i18nAttrs: { 'aria-label': 'media.mic_off', title: 'media.mic_off' },
    });
    this.el = h(
      'figure',
      {
        class: 'media-tile',
        testid: 'media-tile',
        attrs: { 'data-participant': m.participantId, 'data-source': m.screen ? 'screen' : 'camera' },
      },
      this.video,
      this.avatar,
      h('figcaption', { class: 'tile-caption' }, this.mutedIcon, this.nameEl, this.tag),
      h('span', { class: 'tile-speaking', attrs: { 'aria-hidden': 'true' } }),
    );
    if (m.self) this.el.dataset['self'] = 'true';
  }

  update(m: TileModel, speaking: boolean): void {
    this.nameEl.textContent = m.name;
    if (m.screen) bindText(this.tag, 'media.screen_tag');
    else if (m.self) bindText(this.tag, 'media.you');
    else this.tag.textContent = '';
    this.avatar.textContent = initials(m.name);
    const showVideo = m.video !== null && !m.videoOff;
    this.el.dataset['videoOff'] = String(!showVideo);
    this.el.dataset['muted'] = String(m.micMuted && !m.screen);
    this.el.dataset['speaking'] = String(speaking && !m.screen);
    this.mutedIcon.hidden = !m.micMuted || m.screen;
    if (m.video !== this.track) {
      this.track = m.video;
      this.video.srcObject = m.video ? new MediaStream([m.video]) : null;
      if (m.video) void this.video.play().catch(() => undefined);
    }
    this.el.classList.toggle('mirrored', m.self && !m.screen);
  }
}

export class TileGrid {
  readonly el: HTMLElement;
  private readonly audioBox: HTMLElement;
  private readonly tiles = new Map<string, Tile>();
  private readonly audios = new Map<string, HTMLAudioElement>();
  private blockedCb: ((blocked: boolean) => void) | null = null;

  constructor() {
    this.audioBox = h('div', { class: 'media-audio', attrs: { hidden: true } });
    this.el = h('div', {
      class: 'media-grid',
      testid: 'media-grid',
      attrs: { role: 'list' },
      i18nAttrs: { 'aria-label': 'media.grid_label' },
    });
  }

  get audioEl(): HTMLElement {
    return this.audioBox;
  }

  /** Told when the browser refuses to play sound until the user interacts. */
  onAudioBlocked(cb: (blocked: boolean) => void): void {
    this.blockedCb = cb;
  }

  render(models: TileModel[], speakerId: string | null): void {
    const keep = new Set(models.map((m) => m.key));
    for (const [key, tile] of this.tiles) {
      if (!keep.has(key)) {
        tile.el.remove();
        this.tiles.delete(key);
      }
    }
    const els: HTMLElement[] = [];
    for (const m of models) {
      let tile = this.tiles.get(m.key);
      if (!tile) {
        tile = new Tile(m);
        tile.el.setAttribute('role', 'listitem');
        this.tiles.set(m.key, tile);
      }
      tile.update(m, m.participantId === speakerId);
      els.push(tile.el);
    }
    // Re-append in order only when it changed (moving a playing <video> can pause it).
    const current = [...this.el.children];
    if (current.length !== els.length || current.some((el, i) => el !== els[i])) replace(this.el, ...els);
    this.el.dataset['count'] = String(els.length);
  }

  /** Play every remote audio track we receive (never our own). */
  setAudio(tracks: MediaStreamTrack[]): void {
    const keep = new Set(tracks.map((t) => t.id));
    for (const [id, el] of this.audios) {
      if (!keep.has(id)) {
        el.srcObject = null;
        el.remove();
        this.audios.delete(id);
      }
    }
    for (const track of tracks) {
      if (this.audios.has(track.id)) continue;
      const el = h('audio', { attrs: { autoplay: true } });
      el.srcObject = new MediaStream([track]);
      this.audioBox.appendChild(el);
      this.audios.set(track.id, el);
      this.play(el);
    }
  }

  /** Retry after a click (autoplay policies want a gesture for sound). */
  resumeAudio(): void {
    for (const el of this.audios.values()) this.play(el);
  }

  clear(): void {
    this.render([], null);
    this.setAudio([]);
  }

  private play(el: HTMLAudioElement): void {
    el.play().then(
      () => this.blockedCb?.(false),
      (err: unknown) => {
        if (err instanceof DOMException && err.name === 'NotAllowedError') this.blockedCb?.(true);
      },
    );
  }
}
