/**
 * At most one call per interval, the last request wins: `request()` runs `fn` now when the
 * interval has passed since the last run, else once when it has (trailing call).
 */
export class Throttle {
  private last = -Infinity;
  private timer: ReturnType<typeof setTimeout> | null = null;

  constructor(
    private readonly intervalMs: number,
    private readonly fn: () => void,
  ) {}

  request(): void {
    if (this.timer !== null) return;
    const wait = this.last + this.intervalMs - performance.now();
    if (wait <= 0) this.run();
    else this.timer = setTimeout(() => this.run(), wait);
  }

  /** Run a pending call now. */
  flush(): void {
    if (this.timer === null) return;
    this.run();
  }

  /** Drop a pending call. */
  cancel(): void {
    if (this.timer !== null) clearTimeout(this.timer);
    this.timer = null;
  }

  private run(): void {
    this.cancel();
    this.last = performance.now();
    this.fn();
  }
}
