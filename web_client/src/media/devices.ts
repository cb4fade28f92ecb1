/**
 * Cameras and microphones: listing them (labels appear once a permission is granted),
 * opening them with a chosen device, and a microphone level from a WebAudio AnalyserNode.
 */

export interface DeviceChoice {
  cameraId: string | null;
  microphoneId: string | null;
}

export interface DeviceLists {
  cameras: MediaDeviceInfo[];
  microphones: MediaDeviceInfo[];
}

const STORAGE_KEY = 'consultd.media.devices';

/** Video that stays sharp enough for a face without flooding a hospital uplink. */
const CAMERA_CONSTRAINTS: MediaTrackConstraints = { width: { ideal: 1280 }, height: { ideal: 720 }, frameRate: { ideal: 24, max: 30 } };
const MIC_CONSTRAINTS: MediaTrackConstraints = { echoCancellation: true, noiseSuppression: true, autoGainControl: true };

export function mediaSupported(): boolean {
  return typeof RTCPeerConnection !== 'undefined' && !!navigator.mediaDevices?.getUserMedia;
}

export function screenShareSupported(): boolean {
  return !!navigator.mediaDevices && 'getDisplayMedia' in navigator.mediaDevices;
}

export async function listDevices(): Promise<DeviceLists> {
  const all = await navigator.mediaDevices.enumerateDevices();
  return {
    cameras: all.filter((d) => d.kind === 'videoinput' && d.deviceId !== ''),
    microphones: all.filter((d) => d.kind === 'audioinput' && d.deviceId !== ''),
  };
}

export function loadChoice(): DeviceChoice {
  try {
    const raw = JSON.parse(localStorage.getItem(STORAGE_KEY) ?? '{}') as Partial<DeviceChoice>;
    return { cameraId: raw.cameraId ?? null, microphoneId: raw.microphoneId ?? null };
  } catch {
    return { cameraId: null, microphoneId: null };
  }
}

export function saveChoice(choice: DeviceChoice): void {
  try {
    localStorage.setItem(STORAGE_KEY, JSON.stringify(choice));
  } catch {
    // private mode: the choice lasts for this page only
  }
}

function withDevice(base: MediaTrackConstraints, id: string | null): MediaTrackConstraints {
  return id ? { ...base, deviceId: { ideal: id } } : base;
}

export async function openCamera(id: string | null): Promise<MediaStreamTrack> {
  const stream = await navigator.mediaDevices.getUserMedia({ video: withDevice(CAMERA_CONSTRAINTS, id) });
  const track = stream.getVideoTracks()[0];
  if (!track) throw new DOMException('no video track', 'NotFoundError');
  return track;
}

export async function openMicrophone(id: string | null): Promise<MediaStreamTrack> {
  const stream = await navigator.mediaDevices.getUserMedia({ audio: withDevice(MIC_CONSTRAINTS, id) });
  const track = stream.getAudioTracks()[0];
  if (!track) throw new DOMException('no audio track', 'NotFoundError');
  return track;
}

/** A screen, window or tab, tuned for legible text (`contentHint = "detail"`). */
export async function openScreen(): Promise<MediaStreamTrack> {
  const stream = await navigator.mediaDevices.getDisplayMedia({ video: { frameRate: { max: 15 } }, audio: false });
  const track = stream.getVideoTracks()[0];
  if (!track) throw new DOMException('no screen track', 'NotFoundError');
  track.contentHint = 'detail';
  return track;
}

/** The message key suffix for a getUserMedia / getDisplayMedia failure. */
export function deviceErrorCode(err: unknown): 'denied' | 'not_found' | 'in_use' | 'failed' {
  const name = err instanceof DOMException ? err.name : '';
  if (name === 'NotAllowedError' || name === 'SecurityError') return 'denied';
  if (name === 'NotFoundError' || name === 'OverconstrainedError') return 'not_found';
  if (name === 'NotReadableError' || name === 'AbortError') return 'in_use';
  return 'failed';
}

/**
 * The loudness of an audio track, 0..1 (RMS of the time-domain signal, scaled so that
 * speech at a normal distance reads about half way), sampled once per animation frame.
 */
export class LevelMeter {
  private readonly ctx: AudioContext;
  private readonly analyser: AnalyserNode;
  private readonly source: MediaStreamAudioSourceNode;
  private readonly buf: Float32Array<ArrayBuffer>;
  private raf = 0;

  constructor(track: MediaStreamTrack, onLevel: (level: number) => void) {
    this.ctx = new AudioContext();
    this.analyser = this.ctx.createAnalyser();
    this.analyser.fftSize = 1024;
    this.buf = new Float32Array(this.analyser.fftSize);
    this.source = this.ctx.createMediaStreamSource(new MediaStream([track]));
    this.source.connect(this.analyser);
    const tick = (): void => {
      this.analyser.getFloatTimeDomainData(this.buf);
      let sum = 0;
      for (const v of this.buf) sum += v * v;
      const rms = Math.sqrt(sum / this.buf.length);
      onLevel(Math.min(1, rms * 4));
      this.raf = requestAnimationFrame(tick);
    };
    void this.ctx.resume().catch(() => undefined);
    tick();
  }

  close(): void {
    cancelAnimationFrame(this.raf);
    this.source.disconnect();
    void this.ctx.close().catch(() => undefined);
  }
}
