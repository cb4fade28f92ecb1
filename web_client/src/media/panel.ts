/**
 * The room's call: a device check, then the grid of tiles and the controls (mute, camera,
 * screen sharing, audio only, leave). Observers join to watch and listen, with no publish
 * controls. The session (session.ts) owns the peer connection; this panel owns the devices.
 */
import { clearStatus, h, replace, say, statusLine } from '../dom';
import { bindText, errorKey, type MsgKey } from '../i18n';
import type { JoinedPayload, MediaClosedReason, MediaSource, MediaTrack, Role } from '../net/protocol';
import { AckError, type RoomSocket } from '../net/socket';
import { DeviceCheck, type CheckedDevices } from './devicecheck';
import {
  deviceErrorCode,
  loadChoice,
  mediaSupported,
  openCamera,
  openMicrophone,
  openScreen,
  screenShareSupported,
  type DeviceChoice,
} from './devices';
import { MediaSession, type SessionState } from './session';
import { TileGrid, tileModels } from './tiles';

const STATE_KEYS: Record<SessionState, MsgKey> = {
  idle: 'media.state_idle',
  joining: 'media.state_connecting',
  connecting: 'media.state_connecting',
  connected: 'media.state_connected',
  reconnecting: 'media.state_reconnecting',
  closed: 'media.state_idle',
};

const CLOSED_KEYS: Record<MediaClosedReason, MsgKey> = {
  left: 'media.closed_left',
  removed: 'media.closed_removed',
  ended: 'media.closed_ended',
  demoted: 'media.closed_demoted',
};

interface TestHooks {
  pc(): RTCPeerConnection | null;
  state(): Record<string, unknown>;
}

declare global {
  interface Window {
    __consultdTestHooks?: boolean;
    __consultdMedia?: TestHooks;
  }
}

type Toggle = 'mute' | 'camera' | 'screen' | 'audioOnly';

export class MediaPanel {
  readonly el: HTMLElement;
  private readonly session: MediaSession;
  private readonly grid = new TileGrid();
  private readonly body: HTMLElement;
  private readonly stateEl: HTMLElement;
  private readonly status: HTMLParagraphElement;
  private readonly intro: HTMLElement;
  private readonly call: HTMLElement;
  private readonly controls: HTMLElement;
  private readonly buttons: Record<Toggle, HTMLButtonElement>;
  private readonly soundButton: HTMLButtonElement;
  private readonly startButton: HTMLButtonElement;
  private check: DeviceCheck | null = null;
  private role: Role | null = null;
  private selfId = '';
  private selfName = '';
  private tracks: MediaTrack[] = [];
  private speaker: string | null = null;
  private choice: DeviceChoice = loadChoice();
  private micMuted = false;
  private cameraOff = false;
  private audioOnly = false;
  private busy = false;
  /** Error codes the session reported (for the tests). */
  private readonly errors: string[] = [];

  constructor(socket: RoomSocket) {
    this.session = new MediaSession(socket, {
      selfId: () => this.selfId,
      state: (s) => this.onState(s),
      tracks: (t) => {
        this.tracks = t;
        this.render();
      },
      remote: () => this.render(),
      speaker: (id) => {
        this.speaker = id;
        this.render();
      },
      closed: (reason) => this.onClosed(reason),
      error: (err) => {
        this.errors.push(err instanceof AckError ? `${err.code}: ${err.message}` : String(err));
        say(this.status, errorKey(err), 'error');
      },
    });
    this.stateEl = h('span', { class: 'media-state', testid: 'media-state', attrs: { 'data-state': 'idle' } });
    bindText(this.stateEl, 'media.state_idle');
    this.status = statusLine('media-status');
    this.startButton = h('button', {
      class: 'primary',
      testid: 'media-start',
      attrs: { type: 'button' },
      on: { click: () => void this.begin() },
    });
    this.intro = h(
      'div',
      { class: 'media-intro' },
      h('p', { class: 'hint', testid: 'media-intro-text' }),
      h('div', { class: 'actions' }, this.startButton),
    );
    this.buttons = {
      mute: this.toggle('mute', 'media.mute', () => this.toggleMute()),
      camera: this.toggle('camera', 'media.camera_off', () => this.toggleCamera()),
      screen: this.toggle('screen', 'media.share_screen', () => this.toggleScreen()),
      audioOnly: this.toggle('audio-only', 'media.audio_only', () => this.toggleAudioOnly()),
    };
    this.buttons.audioOnly.setAttribute('aria-describedby', 'media-audio-only-hint');
    this.soundButton = h('button', {
      testid: 'media-sound',
      i18n: 'media.enable_sound',
      attrs: { type: 'button', hidden: true },
      on: { click: () => this.grid.resumeAudio() },
    });
    this.grid.onAudioBlocked((blocked) => {
      this.soundButton.hidden = !blocked;
    });
    const leave = h('button', {
      class: 'danger',
      testid: 'media-leave',
      i18n: 'media.leave',
      attrs: { type: 'button' },
      on: { click: () => void this.leave() },
    });
    this.controls = h(
      'div',
      { class: 'media-controls', attrs: { role: 'toolbar' }, i18nAttrs: { 'aria-label': 'media.controls_label' } },
      this.buttons.mute,
      this.buttons.camera,
      this.buttons.screen,
      this.buttons.audioOnly,
      this.soundButton,
      leave,
    );
    this.call = h(
      'div',
      { class: 'media-call' },
      this.grid.el,
      this.controls,
      h('p', { class: 'hint', i18n: 'media.audio_only_hint', attrs: { id: 'media-audio-only-hint' } }),
      this.grid.audioEl,
    );
    this.body = h('div', { class: 'media-body' });
    this.el = h(
      'section',
      { class: 'media panel', testid: 'media-panel', attrs: { 'aria-labelledby': 'media-heading' } },
      h('div', { class: 'media-head' }, h('h2', { i18n: 'media.title', attrs: { id: 'media-heading' } }), this.stateEl),
      this.body,
      this.status,
    );
    this.showIntro();
    if (window.__consultdTestHooks === true) {
      window.__consultdMedia = {
        pc: () => this.session.pc,
        state: () => ({
          self: this.selfId,
          state: this.session.state,
          canPublish: this.session.canPublish,
          tracks: this.tracks,
          remote: [...this.session.remote.keys()],
          speaker: this.speaker,
          micMuted: this.micMuted,
          cameraOff: this.cameraOff,
          audioOnly: this.audioOnly,
          sharing: this.session.localTrack('screen') !== null,
          serverRestartsIce: this.session.iceRestarts,
          errors: this.errors,
        }),
      };
    }
  }

  /** `joined`: first, or after the room's socket came back with the call in progress. */
  onJoined(p: JoinedPayload): void {
    this.selfId = p.self.id;
    this.selfName = p.self.name;
    this.setRole(p.self.role);
    this.session.resume();
  }

  setRole(role: Role): void {
    const was = this.role;
    this.role = role;
    const publishes = role !== 'observer';
    this.controls.classList.toggle('observer', !publishes);
    for (const b of [this.buttons.mute, this.buttons.camera, this.buttons.screen]) b.hidden = !publishes;
    this.buttons.screen.hidden ||= !screenShareSupported();
    if (was === role) return;
    if (this.session.active) {
      if (was === 'observer' && publishes) {
        // Promoted during the call: a new transport may publish; the buttons open the
        // microphone and camera when pressed.
        this.micMuted = this.cameraOff = true;
        this.syncButtons();
        this.session.rebuild();
      }
      this.render();
      return;
    }
    if (this.check && !publishes) {
      this.check.close();
      this.check = null;
    }
    if (!this.check) this.showIntro();
  }

  /** The room is over for us (ended, removed, left): stop every device. */
  close(): void {
    this.session.close();
    this.check?.close();
    this.check = null;
    this.stopLocal();
    this.grid.clear();
  }

  // ------------------------------------------------------------ screens

  private showIntro(): void {
    const observer = this.role === 'observer';
    const text = this.intro.querySelector('p');
    if (!mediaSupported()) {
      if (text) bindText(text, 'media.unsupported');
      this.startButton.hidden = true;
    } else {
      if (text) bindText(text, observer ? 'media.observer_intro' : 'media.intro');
      bindText(this.startButton, observer ? 'media.join_listen' : 'media.check_devices');
      this.startButton.hidden = false;
    }
    this.startButton.disabled = false;
    if (this.body.firstElementChild !== this.intro) replace(this.body, this.intro);
  }

  private async begin(): Promise<void> {
    if (this.startButton.disabled) return;
    this.startButton.disabled = true; // until the intro shows again
    clearStatus(this.status);
    if (this.role === 'observer') {
      await this.enter(null);
      return;
    }
    this.check?.close();
    const check = new DeviceCheck({
      onJoin: (d) => {
        this.check = null;
        void this.enter(d);
      },
      onCancel: () => {
        this.check = null;
        this.showIntro();
      },
    });
    this.check = check;
    replace(this.body, check.el);
    await check.open();
  }

  private async enter(devices: CheckedDevices | null): Promise<void> {
    if (devices) this.choice = devices.choice;
    // A device that could not be opened counts as off: its button opens it again.
    this.micMuted = !devices?.microphone;
    this.cameraOff = !devices?.camera;
    this.audioOnly = false;
    await this.session.setAudioOnly(false);
    await this.session.setTrack('microphone', devices?.microphone ?? null);
    await this.session.setTrack('camera', devices?.camera ?? null);
    replace(this.body, this.call);
    this.syncButtons();
    this.render();
    try {
      await this.session.start();
    } catch (err) {
      say(this.status, errorKey(err), 'error');
      this.stopLocal();
      this.session.close();
      this.showIntro();
    }
  }

  private async leave(): Promise<void> {
    await this.session.leave();
    this.stopLocal();
    this.grid.clear();
    this.tracks = [];
    this.speaker = null;
    this.showIntro();
  }

  private onState(s: SessionState): void {
    this.stateEl.dataset['state'] = s;
    bindText(this.stateEl, STATE_KEYS[s]);
    if (s === 'connected' && this.status.dataset['kind'] !== 'error') clearStatus(this.status);
  }

  private onClosed(reason: MediaClosedReason): void {
    say(this.status, CLOSED_KEYS[reason], 'info');
    if (reason === 'demoted') {
      this.stopLocal();
      this.setRole('observer');
      return;
    }
    this.stopLocal();
    this.grid.clear();
    this.tracks = [];
    this.speaker = null;
    this.showIntro();
  }

  // ------------------------------------------------------------ controls

  private toggle(id: string, key: MsgKey, run: () => Promise<void>): HTMLButtonElement {
    const b: HTMLButtonElement = h('button', {
      class: 'toggle',
      testid: `media-${id}`,
      i18n: key,
      attrs: { type: 'button', 'aria-pressed': 'false' },
      on: {
        click: () => {
          if (this.busy) return;
          this.busy = true;
          clearStatus(this.status);
          run()
            .catch((err: unknown) => say(this.status, errorKey(err), 'error'))
            .finally(() => {
              this.busy = false;
              this.syncButtons();
              this.render();
            });
        },
      },
    });
    return b;
  }

  private async toggleMute(): Promise<void> {
    const muted = !this.micMuted;
    let track = this.session.localTrack('microphone');
    if (!muted && !track) {
      track = await this.open('microphone', () => openMicrophone(this.choice.microphoneId));
      if (!track) return;
      await this.session.setTrack('microphone', track);
    }
    if (track) track.enabled = !muted;
    this.micMuted = muted;
    await this.session.mute('microphone', muted);
  }

  private async toggleCamera(): Promise<void> {
    const off = !this.cameraOff;
    if (off) {
      this.session.localTrack('camera')?.stop();
      await this.session.setTrack('camera', null);
    } else if (!this.audioOnly) {
      const track = await this.open('camera', () => openCamera(this.choice.cameraId));
      if (!track) return;
      await this.session.setTrack('camera', track);
    }
    this.cameraOff = off;
    await this.session.mute('camera', off);
  }

  private async toggleScreen(): Promise<void> {
    const current = this.session.localTrack('screen');
    if (current) {
      current.stop();
      await this.session.setTrack('screen', null);
      return;
    }
    const track = await this.open('screen', openScreen);
    if (!track) return;
    // The browser's own "Stop sharing" ends the track.
    track.addEventListener('ended', () => {
      if (this.session.localTrack('screen') !== track) return;
      void this.session.setTrack('screen', null).finally(() => {
        this.syncButtons();
        this.render();
      });
    });
    await this.session.setTrack('screen', track);
  }

  private async toggleAudioOnly(): Promise<void> {
    const on = !this.audioOnly;
    this.audioOnly = on;
    if (on) {
      await this.session.setAudioOnly(true);
      this.session.localTrack('camera')?.stop();
      await this.session.setTrack('camera', null);
    } else {
      if (!this.cameraOff && this.role !== 'observer') {
        const track = await this.open('camera', () => openCamera(this.choice.cameraId));
        if (track) await this.session.setTrack('camera', track);
        else this.cameraOff = true;
      }
      await this.session.setAudioOnly(false);
    }
  }

  /** Open a device; a refusal is explained in the status line and gives null. */
  private async open(kind: 'camera' | 'microphone' | 'screen', fn: () => Promise<MediaStreamTrack>): Promise<MediaStreamTrack | null> {
    try {
      return await fn();
    } catch (err) {
      const code = deviceErrorCode(err);
      // Cancelling the screen picker is not an error worth a message.
      if (kind === 'screen' && code === 'denied') return null;
      say(this.status, `media.${kind}_${code}` as MsgKey, 'error');
      return null;
    }
  }

  private stopLocal(): void {
    for (const source of ['microphone', 'camera', 'screen'] as MediaSource[]) {
      this.session.localTrack(source)?.stop();
      void this.session.setTrack(source, null);
    }
  }

  private syncButtons(): void {
    const pressed: Record<Toggle, boolean> = {
      mute: this.micMuted,
      camera: this.cameraOff,
      screen: this.session.localTrack('screen') !== null,
      audioOnly: this.audioOnly,
    };
    for (const [name, b] of Object.entries(this.buttons) as [Toggle, HTMLButtonElement][]) {
      b.setAttribute('aria-pressed', String(pressed[name]));
    }
    // Audio only keeps the camera off; its own button would say otherwise.
    this.buttons.camera.disabled = this.audioOnly;
  }

  private render(): void {
    if (!this.session.active) return;
    const remote = this.session.remote;
    const publishes = this.session.canPublish || (this.session.state === 'joining' && this.role !== 'observer');
    this.grid.render(
      tileModels({
        selfId: this.selfId,
        selfName: this.selfName,
        selfVideo: this.cameraOff || this.audioOnly ? null : this.session.localTrack('camera'),
        selfScreen: this.session.localTrack('screen'),
        selfMicMuted: this.micMuted || this.session.localTrack('microphone') === null,
        selfPublishes: publishes,
        tracks: this.tracks,
        remote,
      }),
      this.speaker,
    );
    const audio: MediaStreamTrack[] = [];
    for (const t of this.tracks) {
      const r = t.kind === 'audio' && t.participant_id !== this.selfId ? remote.get(t.producer_id) : undefined;
      if (r) audio.push(r.track);
    }
    this.grid.setAudio(audio);
  }
}
