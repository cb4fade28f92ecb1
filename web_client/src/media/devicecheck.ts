/**
 * The device check before entering the call: camera preview, microphone level, and the
 * choice of camera and microphone. The tracks opened here are handed to the call on "Join"
 * (so the camera light does not blink between the two).
 */
import { clearStatus, field, h, replace, say, statusLine } from '../dom';
import { bindText, type MsgKey } from '../i18n';
import {
  LevelMeter,
  deviceErrorCode,
  listDevices,
  loadChoice,
  openCamera,
  openMicrophone,
  saveChoice,
  type DeviceChoice,
} from './devices';

export interface CheckedDevices {
  camera: MediaStreamTrack | null;
  microphone: MediaStreamTrack | null;
  choice: DeviceChoice;
}

export interface DeviceCheckDeps {
  onJoin: (devices: CheckedDevices) => void;
  onCancel: () => void;
}

export class DeviceCheck {
  readonly el: HTMLElement;
  private readonly preview: HTMLVideoElement;
  private readonly meter: HTMLMeterElement;
  private readonly cameraSelect: HTMLSelectElement;
  private readonly micSelect: HTMLSelectElement;
  private readonly status: HTMLParagraphElement;
  private readonly joinButton: HTMLButtonElement;
  private camera: MediaStreamTrack | null = null;
  private microphone: MediaStreamTrack | null = null;
  private level: LevelMeter | null = null;
  private choice: DeviceChoice = loadChoice();
  private closed = false;

  constructor(private readonly deps: DeviceCheckDeps) {
    this.preview = h('video', {
      class: 'check-preview mirrored',
      testid: 'media-preview',
      attrs: { autoplay: true, playsinline: true, muted: true },
      i18nAttrs: { 'aria-label': 'media.preview_label' },
    });
    this.preview.muted = true;
    this.meter = h('meter', {
      class: 'check-level',
      testid: 'media-level',
      attrs: { min: 0, max: 1, low: 0.05, high: 0.8, optimum: 0.5, value: 0 },
      i18nAttrs: { 'aria-label': 'media.level_label' },
    });
    this.cameraSelect = h('select', {
      testid: 'media-camera-select',
      on: { change: () => void this.switchCamera(this.cameraSelect.value || null) },
    });
    this.micSelect = h('select', {
      testid: 'media-mic-select',
      on: { change: () => void this.switchMicrophone(this.micSelect.value || null) },
    });
    this.status = statusLine('media-check-status');
    this.joinButton = h('button', {
      class: 'primary',
      testid: 'media-join',
      i18n: 'media.join',
      attrs: { type: 'button' },
      on: { click: () => this.join() },
    });
    this.el = h(
      'div',
      { class: 'device-check', testid: 'media-device-check' },
      h('h3', { i18n: 'media.check_title' }),
      h(
        'div',
        { class: 'check-body' },
        h('div', { class: 'check-video' }, this.preview),
        h(
          'div',
          { class: 'check-controls' },
          field('media.camera', this.cameraSelect),
          field('media.microphone', this.micSelect),
          h('div', { class: 'field' }, h('span', { class: 'label', i18n: 'media.level_label' }), this.meter),
          h('p', { class: 'hint', i18n: 'media.check_hint' }),
        ),
      ),
      this.status,
      h(
        'div',
        { class: 'actions' },
        this.joinButton,
        h('button', { i18n: 'media.cancel', attrs: { type: 'button' }, on: { click: () => this.cancel() } }),
      ),
    );
  }

  /** Open the chosen (or default) devices and list the others. */
  async open(): Promise<void> {
    this.joinButton.disabled = true;
    await Promise.all([this.switchCamera(this.choice.cameraId), this.switchMicrophone(this.choice.microphoneId)]);
    await this.fillLists();
    if (!this.closed) this.joinButton.disabled = false;
    this.joinButton.focus();
  }

  /** Stop everything this check opened (cancel, or leaving the page). */
  close(): void {
    this.closed = true;
    this.level?.close();
    this.level = null;
    this.camera?.stop();
    this.microphone?.stop();
    this.camera = this.microphone = null;
    this.preview.srcObject = null;
  }

  private join(): void {
    const devices: CheckedDevices = { camera: this.camera, microphone: this.microphone, choice: this.choice };
    // The call owns the tracks now.
    this.camera = this.microphone = null;
    this.close();
    saveChoice(devices.choice);
    this.deps.onJoin(devices);
  }

  private cancel(): void {
    this.close();
    this.deps.onCancel();
  }

  private async switchCamera(id: string | null): Promise<void> {
    this.camera?.stop();
    this.camera = null;
    try {
      const track = await openCamera(id);
      if (this.closed) return track.stop();
      this.camera = track;
      this.choice.cameraId = track.getSettings().deviceId ?? id;
      this.preview.srcObject = new MediaStream([track]);
      void this.preview.play().catch(() => undefined);
      clearStatus(this.status);
    } catch (err) {
      this.preview.srcObject = null;
      this.fail('camera', err);
    }
  }

  private async switchMicrophone(id: string | null): Promise<void> {
    this.level?.close();
    this.level = null;
    this.microphone?.stop();
    this.microphone = null;
    try {
      const track = await openMicrophone(id);
      if (this.closed) return track.stop();
      this.microphone = track;
      this.choice.microphoneId = track.getSettings().deviceId ?? id;
      this.level = new LevelMeter(track, (v) => {
        this.meter.value = v;
      });
    } catch (err) {
      this.meter.value = 0;
      this.fail('microphone', err);
    }
  }

  private fail(device: 'camera' | 'microphone', err: unknown): void {
    const key = `media.${device}_${deviceErrorCode(err)}` as MsgKey;
    say(this.status, key, 'error');
  }

  private async fillLists(): Promise<void> {
    const lists = await listDevices().catch(() => null);
    if (!lists || this.closed) return;
    const fill = (select: HTMLSelectElement, devices: MediaDeviceInfo[], current: string | null, none: MsgKey): void => {
      const options = devices.map((d, i) =>
        h('option', { attrs: { value: d.deviceId, selected: d.deviceId === current } }, d.label || `${i + 1}`),
      );
      if (!options.length) {
        const empty = h('option', { attrs: { value: '' } });
        bindText(empty, none);
        options.push(empty);
      }
      replace(select, ...options);
      select.disabled = devices.length < 1;
    };
    fill(this.cameraSelect, lists.cameras, this.choice.cameraId, 'media.no_camera');
    fill(this.micSelect, lists.microphones, this.choice.microphoneId, 'media.no_microphone');
  }
}
