/**
 * Rows per second averaged over a window of time (30 s by default), from samples of a growing
 * counter (a table's rows copied): the rate status and the progress line show, instead of the speed
 * of the last chunk alone. A counter that goes back (a new run) starts the window again.
 */
export class RateWindow {
  private samples: { at: number; n: number }[] = [];
  constructor(private readonly windowMs = 30_000) {}

  add(at: number, n: number): void {
    const last = this.samples[this.samples.length - 1];
    if (last && n < last.n) this.samples = [];
    this.samples.push({ at, n });
    // Keep one sample at or before the window's start as its baseline.
    while (this.samples.length > 2 && this.samples[1].at <= at - this.windowMs) this.samples.shift();
  }

  /** Rows per second over the window; 0 before two samples a second apart. */
  rate(): number {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || last.at - first.at < 1000) return 0;
    return ((last.n - first.n) * 1000) / (last.at - first.at);
  }

  reset(): void {
    this.samples = [];
  }
}
